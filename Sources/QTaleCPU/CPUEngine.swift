import Dispatch
import QTaleCore
import QTaleKernels

/// The CPU engine: Swift SIMD kernels on Dispatch threads.
///
/// **Execution.** ``encode(_:)`` records ops; ``synchronize()``, ``read(_:byteOffset:into:)`` and
/// ``write(_:to:byteOffset:)`` run the recorded list in one `DispatchQueue.concurrentPerform` region
/// (see ``SliceScheduler``). Waking threads once per token instead of once per op is what makes two
/// threads faster than one for a model this small.
///
/// **Memory.** Scratch (padded inputs, dequantized tiles, attention scores) belongs to the engine and
/// only grows, so the token loop does not allocate once the first token has run.
public final class CPUEngine: ComputeEngine {
    public let store = HostBufferStore()
    /// Worker threads for parallel kernels.
    public let threads: Int
    let scratch: CPUScratch
    /// Recorded work: ``Op``s, and ``TrainingOp``s (`CPUTraining.swift`), in one in-order stream.
    var pending: [CPUWork] = []
    /// For each pending op: whether it must wait for all earlier ops (it depends on one since the last wait).
    private var waits: [Bool] = []
    private let scheduler = SliceScheduler()
    private var dependencies = WorkDependencyTracker<CPUWork>()

    /// How 4-bit decode matmuls treat the input vector (see ``DecodeActivations``).
    public let decodeActivations: DecodeActivations

    public init(threads: Int, decodeActivations: DecodeActivations = .preferred) throws {
        guard threads >= 1 && threads <= 256 else {
            throw QTaleError.invalidArgument("--threads must be between 1 and 256, got \(threads)")
        }
        guard decodeActivations == .float32 || Self.int8DecodeAvailable else {
            throw QTaleError.engine("int8 decode needs a CPU with AVX-512 VNNI, and a build on it (QTALE_TARGET_CPU=native)")
        }
        self.threads = threads
        self.decodeActivations = decodeActivations
        scratch = CPUScratch(workers: threads)
        pending.reserveCapacity(1024)
        waits.reserveCapacity(1024)
    }

    /// `cpu` for what this build runs by default; `cpu-f32` and `cpu-int8` name the other decode modes.
    public var name: String {
        switch decodeActivations {
        case .int8: "cpu-int8"
        case .float32 where DecodeActivations.preferred != .float32: "cpu-f32"
        default: "cpu"
        }
    }
    public var deviceDescription: String {
        let decode = switch decodeActivations {
        case .float32: "float32 activations"
        case .splitInt8: "activations split into three int8 terms (AVX-512 VNNI)"
        case .int8: "int8 activations (AVX-512 VNNI)"
        }
        return "CPU, \(threads) thread\(threads == 1 ? "" : "s"), SIMD\(SIMDWidth.lanes) float32; 4-bit decode: \(decode)"
    }

    public func allocate(byteCount: Int) throws -> DeviceBuffer {
        DeviceBuffer(handle: try store.allocate(byteCount: byteCount), byteCount: byteCount, engine: self)
    }
    public func release(_ handle: BufferHandle) { store.release(handle) }

    public func write(_ bytes: UnsafeRawBufferPointer, to buffer: BufferHandle, byteOffset: Int) throws {
        flush()
        store.write(bytes, to: buffer, byteOffset: byteOffset)
    }

    public func read(_ buffer: BufferHandle, byteOffset: Int, into bytes: UnsafeMutableRawBufferPointer) throws {
        flush()
        store.read(buffer, byteOffset: byteOffset, into: bytes)
    }

    public func encode(_ op: Op) throws { pending.append(.op(op)) }

    public func synchronize() throws { flush() }

    /// Runs every recorded op, in order, each split into slices that the workers share.
    private func flush() {
        guard !pending.isEmpty else { return }
        defer { pending.removeAll(keepingCapacity: true) }
        scratch.prepare(for: pending)
        if threads == 1 {
            for op in pending {
                let slices = sliceCount(op)
                for s in 0..<slices { execute(op, WorkSlice(index: s, count: slices, worker: 0)) }
            }
            return
        }
        markWaits()
        scheduler.reset()
        pending.withUnsafeBufferPointer { ops in
            waits.withUnsafeBufferPointer { waits in
                DispatchQueue.concurrentPerform(iterations: threads) { worker in
                    scheduler.run(ops: ops, waits: waits, worker: worker, sliceCount: sliceCount, execute: execute)
                }
            }
        }
    }

    /// Places a wait before an op only when it depends on an op since the previous wait, so independent
    /// neighbours (q/k/v projections, gate/up, the two RoPEs, the two cache writes) share one phase.
    private func markWaits() {
        waits.removeAll(keepingCapacity: true)
        dependencies.reset()
        for op in pending { waits.append(dependencies.needsBarrier(before: op)) }
    }

    /// How many slices an op is split into: enough to use every thread when the work pays for it.
    func sliceCount(_ op: Op) -> Int {
        let work: Int
        switch op {
        case let .matmul(input, weight, _, _):
            // Decode: rows; few tokens: 4-row blocks, over-split so faster workers take more; many tokens:
            // chunks of dequantized rows for the GEMM, two per thread.
            if input.rows == 1 { return min(threads, max(1, weight.rows / 64)) }
            if Self.usesPackedLinear(tokens: input.rows, outputs: weight.rows) {
                return min(2 * threads, max(1, (weight.rows + Self.dequantizedChunkRows - 1) / Self.dequantizedChunkRows))
            }
            return min(4 * threads, max(1, weight.rows / 4))
        case let .attention(query, keys, _, _, _, heads, _, _, _):
            return min(threads, query.rows * heads, max(1, query.rows * heads * keys.rows / 128))
        case let .rmsNorm(input, _, _, _): work = input.rows * input.columns
        case let .swiGLU(gate, _, _): work = gate.rows * gate.columns
        case let .add(a, _, _): work = a.rows * a.columns
        case let .embed(_, tokens, _): work = tokens.columns * 512
        case let .rope(data, _, _, _, _): work = data.rows * data.columns
        case let .copy(source, _): work = source.rows * source.columns
        case let .linear(input, weight, _, _):
            // Work in multiply-adds / 16. The packed GEMM (calibration-sized products, seconds long) is
            // over-split two per thread in whole 64-column steps, so a worker whose core is shared with
            // another process does not hold the rest up; each extra slice re-packs the inputs (~1%).
            work = input.rows * weight.rows * weight.columns / 16
            if Self.usesPackedLinear(tokens: input.rows, outputs: weight.rows) {
                return min(2 * threads, max(1, weight.rows / 64), max(1, work / 16384))
            }
        case let .silu(input, _): work = input.rows * input.columns
        case let .gatherRows(source, indices, _), let .scatterRows(source, indices, _): work = indices.columns * source.columns
        case .routerDecision: return 1
        }
        return min(threads, max(1, work / 16384))
    }

    func execute(_ op: Op, _ slice: WorkSlice) {
        switch op {
        case let .embed(table, tokens, output):
            embed(table: table, tokens: tokens, output: output, slice: slice)
        case let .rmsNorm(input, weight, epsilon, output):
            rmsNorm(input: input, weight: weight, epsilon: epsilon, output: output, slice: slice)
        case let .matmul(input, weight, output, accumulate):
            matmul(input: input, weight: weight, output: output, accumulate: accumulate, slice: slice)
        case let .rope(data, positions, headDim, ropeDims, base):
            rope(data: data, positions: positions, headDim: headDim, ropeDims: ropeDims, base: base, slice: slice)
        case let .attention(query, keys, values, queryPositions, keyPositions, heads, kvHeads, headDim, output):
            attention(query: query, keys: keys, values: values, queryPositions: queryPositions, keyPositions: keyPositions,
                      heads: heads, kvHeads: kvHeads, headDim: headDim, output: output, slice: slice)
        case let .swiGLU(gate, up, output):
            swiGLU(gate: gate, up: up, output: output, slice: slice)
        case let .add(a, b, output):
            add(a, b, output: output, slice: slice)
        case let .copy(source, destination):
            copy(source: source, destination: destination, slice: slice)
        case let .linear(input, weight, bias, output):
            linear(input: input, weight: weight, bias: bias, output: output, slice: slice)
        case let .silu(input, output):
            silu(input: input, output: output, slice: slice)
        case let .gatherRows(source, indices, output):
            moveRows(source: source, indices: indices, output: output, gather: true, slice: slice)
        case let .scatterRows(source, indices, output):
            moveRows(source: source, indices: indices, output: output, gather: false, slice: slice)
        case let .routerDecision(logits, threshold, decisions):
            routerDecision(logits: logits, threshold: threshold, decisions: decisions, slice: slice)
        }
    }
}

/// Slice `index` of `count` of an op, run by worker `worker` (which selects the scratch space).
struct WorkSlice {
    let index: Int
    let count: Int
    let worker: Int

    /// This slice's contiguous share of `0..<total`.
    @inline(__always) func range(of total: Int) -> Range<Int> {
        (total * index / count) ..< (total * (index + 1) / count)
    }
}
