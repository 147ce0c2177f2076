/// The one packed layout for group-wise quantized weight matrices, shared by every engine, the GGUF
/// converter, the quantizers and the kernels in `Kernels/quant_layout.h` (which mirrors these constants).
///
/// A matrix has `rows` output channels (N) and `columns` input channels (K), row-major.
/// Every weight is `w[r][k] = scale[r][g] * code[r][k] + offset[r][g]` with `g = k / groupSize`,
/// codes unsigned in `0 ..< 2^bits`, scale and offset stored as IEEE binary16.
///
/// - One form, two conventions: GGUF Q4_1 stores `offset = min`; AWQ/GPTQ integer zero points store
///   `offset = -zero * scale`; GGUF Q8_0/Q4_0 (symmetric) use `offset = -2^(bits-1) * scale`.
///
/// **Packs.** Codes are stored in *packs* of 32 consecutive codes of one row (``codesPerPack``).
/// A row holds `ceil(K / 32)` packs; codes past `K` in the last pack are zero and never contribute,
/// because kernels stop at `K`. Inside a pack of 32 codes `c[0..<32]`:
///
/// | bits | bytes | byte `j` holds |
/// |---|---|---|
/// | 8 | 32 | `c[j]` |
/// | 4 | 16 | `c[j]` in bits 0-3 and `c[j + 16]` in bits 4-7 (as ggml's Q4 blocks) |
/// | 3 | 12 | bytes 0-7: `c[j]`, `c[j+8]`, `c[j+16]`, `c[j+24]`, low two bits each, in bits 0-1, 2-3, 4-5, 6-7; bytes 8-11: a little-endian UInt32 whose bit `i` is bit 2 of `c[i]` |
///
/// Every split is by contiguous halves or quarters of the pack, so a SIMD unpack is shifts and masks.
///
/// **Groups.** `groupSize` is a multiple of 32. A row has `ceil(K / groupSize)` groups; when `K` is
/// not a multiple of the group size the last group is shorter (e.g. K = 576, group 128: four groups of
/// 128 and one of 64). Scales and offsets are `[rows][groupsPerRow]` binary16 arrays.
public struct QuantizationFormat: Hashable, Sendable, CustomStringConvertible {
    /// Bits per code: 3, 4 or 8.
    public let bits: Int
    /// Codes per scale/offset pair; a multiple of ``codesPerPack``.
    public let groupSize: Int

    public static let codesPerPack = 32
    public static let supportedBits: Set<Int> = [3, 4, 8]

    public init(bits: Int, groupSize: Int) throws {
        guard Self.supportedBits.contains(bits) else {
            throw QTaleError.invalidArgument("quantization to \(bits) bits is not supported (use 3, 4 or 8)")
        }
        guard groupSize >= Self.codesPerPack, groupSize % Self.codesPerPack == 0, groupSize <= 1 << 16 else {
            throw QTaleError.invalidArgument("group size \(groupSize) must be a positive multiple of \(Self.codesPerPack)")
        }
        self.bits = bits
        self.groupSize = groupSize
    }

    /// Bytes of one pack of 32 codes.
    @inlinable public var bytesPerPack: Int { bits * Self.codesPerPack / 8 }

    /// The largest code, `2^bits - 1`.
    @inlinable public var maxCode: Int { (1 << bits) - 1 }

    @inlinable public func packsPerRow(columns: Int) -> Int { (columns + Self.codesPerPack - 1) / Self.codesPerPack }
    @inlinable public func groupsPerRow(columns: Int) -> Int { (columns + groupSize - 1) / groupSize }
    @inlinable public func codeBytesPerRow(columns: Int) -> Int { packsPerRow(columns: columns) * bytesPerPack }

    public var description: String { "w\(bits)g\(groupSize)" }
}

/// A quantized matrix held by an engine: three buffers in the ``QuantizationFormat`` layout, or a range
/// of their rows (``rows(_:)``: matrices stacked in one set of buffers, as fused projections are).
/// A plain value, so ops that reference it cost no reference counting.
public struct QuantizedMatrix: Hashable, Sendable, CustomStringConvertible {
    public var format: QuantizationFormat
    /// Output channels (N).
    public var rows: Int
    /// Input channels (K).
    public var columns: Int
    /// `[firstRow + rows][packsPerRow][bytesPerPack]` bytes (at least).
    public var codes: BufferHandle
    /// `[firstRow + rows][groupsPerRow]` binary16.
    public var scales: BufferHandle
    /// `[firstRow + rows][groupsPerRow]` binary16.
    public var offsets: BufferHandle
    /// The buffers' row that is this matrix's row 0.
    public var firstRow: Int

    public init(format: QuantizationFormat, rows: Int, columns: Int,
                codes: BufferHandle, scales: BufferHandle, offsets: BufferHandle, firstRow: Int = 0) {
        self.format = format
        self.rows = rows
        self.columns = columns
        self.codes = codes
        self.scales = scales
        self.offsets = offsets
        self.firstRow = firstRow
    }

    /// Rows `range` of this matrix, in the same buffers.
    public func rows(_ range: Range<Int>) -> QuantizedMatrix {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows && !range.isEmpty, "rows \(range) of a \(rows)-row matrix")
        var slice = self
        slice.firstRow = firstRow + range.lowerBound
        slice.rows = range.count
        return slice
    }

    /// Bytes a full pass over the matrix reads (codes, scales and offsets).
    public var byteCount: Int {
        rows * (format.codeBytesPerRow(columns: columns) + 4 * format.groupsPerRow(columns: columns))
    }

    public var description: String { "\(format)[\(rows)×\(columns)]" + (firstRow == 0 ? "" : " from row \(firstRow)") }
}
