#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Buffer bookkeeping for engines whose memory is host memory (the CPU and reference engines):
/// 64-byte aligned, zero-filled allocations addressed by ``BufferHandle``.
public final class HostBufferStore {
    @usableFromInline var pointers: [UnsafeMutableRawPointer?] = []
    private var freeIDs: [Int] = []

    public init() {}

    deinit { for p in pointers { free(p) } }

    public func allocate(byteCount: Int) throws -> BufferHandle {
        guard byteCount >= 0, byteCount <= 1 << 40 else {
            throw QTaleError.invalidArgument("cannot allocate \(byteCount) bytes")
        }
        var raw: UnsafeMutableRawPointer?
        let rounded = (max(byteCount, 1) + 63) & ~63
        guard posix_memalign(&raw, 64, rounded) == 0, let raw else {
            throw QTaleError.engine("out of memory allocating \(byteCount) bytes")
        }
        memset(raw, 0, rounded)
        if let id = freeIDs.popLast() {
            pointers[id] = raw
            return BufferHandle(id: id)
        }
        pointers.append(raw)
        return BufferHandle(id: pointers.count - 1)
    }

    public func release(_ handle: BufferHandle) {
        free(pointers[handle.id])
        pointers[handle.id] = nil
        freeIDs.append(handle.id)
    }

    /// The base address of a live buffer.
    @inlinable @inline(__always)
    public func pointer(_ handle: BufferHandle) -> UnsafeMutableRawPointer {
        pointers[handle.id].unsafelyUnwrapped
    }

    /// The first element of `view`, typed.
    @inlinable @inline(__always)
    public func pointer<T>(_ view: TensorView, as type: T.Type) -> UnsafeMutablePointer<T> {
        (pointer(view.buffer) + view.byteOffset).assumingMemoryBound(to: T.self)
    }

    public func write(_ bytes: UnsafeRawBufferPointer, to handle: BufferHandle, byteOffset: Int) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        (pointer(handle) + byteOffset).copyMemory(from: base, byteCount: bytes.count)
    }

    public func read(_ handle: BufferHandle, byteOffset: Int, into bytes: UnsafeMutableRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        base.copyMemory(from: pointer(handle) + byteOffset, byteCount: bytes.count)
    }
}

/// Typed pointers to the three parts of a ``QuantizedMatrix`` in host memory.
public struct HostQuantizedMatrix {
    public let matrix: QuantizedMatrix
    public let codes: UnsafePointer<UInt8>
    public let scales: UnsafePointer<Float16>
    public let offsets: UnsafePointer<Float16>
    public let codeBytesPerRow: Int
    public let groupsPerRow: Int

    public init(_ matrix: QuantizedMatrix, in store: HostBufferStore) {
        self.matrix = matrix
        codeBytesPerRow = matrix.format.codeBytesPerRow(columns: matrix.columns)
        groupsPerRow = matrix.format.groupsPerRow(columns: matrix.columns)
        // Row 0 of the matrix is row `firstRow` of its buffers.
        codes = UnsafePointer(store.pointer(matrix.codes).assumingMemoryBound(to: UInt8.self)) + matrix.firstRow * codeBytesPerRow
        scales = UnsafePointer(store.pointer(matrix.scales).assumingMemoryBound(to: Float16.self)) + matrix.firstRow * groupsPerRow
        offsets = UnsafePointer(store.pointer(matrix.offsets).assumingMemoryBound(to: Float16.self)) + matrix.firstRow * groupsPerRow
    }

    /// The dequantized weight (`row`, `column`) computed as the layout defines it (float32 scale × code + offset).
    public func weight(row: Int, column: Int) -> Float {
        let format = matrix.format
        let pack = codes + row * codeBytesPerRow + (column / QuantizationFormat.codesPerPack) * format.bytesPerPack
        let code = PackedMatrix.code(in: pack, index: column % QuantizationFormat.codesPerPack, bits: format.bits)
        let g = row * groupsPerRow + column / format.groupSize
        return Float(scales[g]) * Float(code) + Float(offsets[g])
    }
}
