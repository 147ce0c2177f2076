import Dispatch
import QTaleCore

/// The CPU engine: Swift SIMD kernels, parallel over output rows with `DispatchQueue.concurrentPerform`.
///
/// Ops run eagerly inside ``encode(_:)``, so ``synchronize()`` has nothing to wait for. Scratch memory
/// (padded inputs, dequantized tiles) is owned by the engine and only grows, so the token loop does not
/// allocate once the first token has run.
public final class CPUEngine: ComputeEngine {
    public let store = HostBufferStore()
    /// Worker threads for parallel kernels.
    public let threads: Int
    let scratch: CPUScratch

    public init(threads: Int) throws {
        guard threads >= 1 && threads <= 256 else {
            throw QTaleError.invalidArgument("--threads must be between 1 and 256, got \(threads)")
        }
        self.threads = threads
        scratch = CPUScratch(workers: threads)
    }

    public var name: String { "cpu" }
    public var deviceDescription: String { "CPU, \(threads) thread\(threads == 1 ? "" : "s"), SIMD\(SIMDWidth.lanes) float32" }

    public func allocate(byteCount: Int) throws -> DeviceBuffer {
        DeviceBuffer(handle: try store.allocate(byteCount: byteCount), byteCount: byteCount, engine: self)
    }
    public func release(_ handle: BufferHandle) { store.release(handle) }
    public func write(_ bytes: UnsafeRawBufferPointer, to buffer: BufferHandle, byteOffset: Int) throws {
        store.write(bytes, to: buffer, byteOffset: byteOffset)
    }
    public func read(_ buffer: BufferHandle, byteOffset: Int, into bytes: UnsafeMutableRawBufferPointer) throws {
        store.read(buffer, byteOffset: byteOffset, into: bytes)
    }
    public func synchronize() throws {}

    public func encode(_ op: Op) throws {
        switch op {
        case let .embed(table, tokens, output):
            embed(table: table, tokens: tokens, output: output)
        case let .rmsNorm(input, weight, epsilon, output):
            rmsNorm(input: input, weight: weight, epsilon: epsilon, output: output)
        case let .matmul(input, weight, output):
            matmul(input: input, weight: weight, output: output)
        case let .rope(data, positions, headDim, ropeDims, base):
            rope(data: data, positions: positions, headDim: headDim, ropeDims: ropeDims, base: base)
        case let .attention(query, keys, values, queryPositions, keyPositions, heads, kvHeads, headDim, output):
            attention(query: query, keys: keys, values: values, queryPositions: queryPositions,
                      keyPositions: keyPositions, heads: heads, kvHeads: kvHeads, headDim: headDim, output: output)
        case let .swiGLU(gate, up, output):
            swiGLU(gate: gate, up: up, output: output)
        case let .add(a, b, output):
            add(a, b, output: output)
        case let .copy(source, destination):
            copy(source: source, destination: destination)
        }
    }

    /// Runs `body(worker, range)` over `0..<count` split into contiguous chunks, one per worker.
    /// Work smaller than `minimumPerWorker` per worker stays on the calling thread.
    @inline(__always)
    func parallelFor(_ count: Int, minimumPerWorker: Int = 1, _ body: (Int, Range<Int>) -> Void) {
        let workers = min(threads, max(1, count / max(1, minimumPerWorker)))
        if workers == 1 {
            body(0, 0..<count)
            return
        }
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let start = count * worker / workers, end = count * (worker + 1) / workers
            body(worker, start..<end)
        }
    }
}

/// Per-worker scratch space that grows on demand and is reused across calls.
final class CPUScratch {
    private var buffers: [UnsafeMutablePointer<Float>]
    private var capacities: [Int]
    /// Shared (not per-worker) scratch: padded inputs and group sums.
    private(set) var shared: UnsafeMutablePointer<Float>
    private var sharedCapacity = 0

    init(workers: Int) {
        buffers = (0..<workers).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: 16) }
        capacities = Array(repeating: 16, count: workers)
        shared = UnsafeMutablePointer<Float>.allocate(capacity: 16)
        sharedCapacity = 16
    }

    deinit {
        buffers.forEach { $0.deallocate() }
        shared.deallocate()
    }

    /// Worker `worker`'s buffer of at least `count` floats (contents undefined).
    func worker(_ worker: Int, count: Int) -> UnsafeMutablePointer<Float> {
        if capacities[worker] < count {
            buffers[worker].deallocate()
            buffers[worker] = .allocate(capacity: count)
            capacities[worker] = count
        }
        return buffers[worker]
    }

    /// Ensures every worker buffer holds `count` floats; call before a parallel region.
    func reserveWorkers(count: Int) {
        for w in 0..<buffers.count { _ = worker(w, count: count) }
    }

    /// The shared buffer of at least `count` floats (contents undefined).
    func shared(count: Int) -> UnsafeMutablePointer<Float> {
        if sharedCapacity < count {
            shared.deallocate()
            shared = .allocate(capacity: count)
            sharedCapacity = count
        }
        return shared
    }
}
