import QTaleCore

/// The specification: every op as plain scalar Swift with float64 accumulation, written for clarity,
/// not speed. Other engines are correct when they agree with it within the conformance tolerances.
///
/// It is a full ``ComputeEngine``, so it can also run the whole model (slowly) as an end-to-end oracle.
public final class ReferenceEngine: ComputeEngine {
    public let store = HostBufferStore()

    public init() {}

    public var name: String { "reference" }
    public var deviceDescription: String { "float64 scalar reference" }

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
        case let .matmul(input, weight, output, accumulate):
            matmul(input: input, weight: weight, output: output, accumulate: accumulate)
        case let .rope(data, positions, headDim, ropeDims, base):
            rope(data: data, positions: positions, headDim: headDim, ropeDims: ropeDims, base: base)
        case let .attention(query, keys, values, queryPositions, keyPositions, heads, kvHeads, headDim, output):
            attention(query: query, keys: keys, values: values, queryPositions: queryPositions,
                      keyPositions: keyPositions, heads: heads, kvHeads: kvHeads, headDim: headDim, output: output)
        case let .swiGLU(gate, up, output):
            elementwise(gate, up, output) { g, u in g / (1 + _exp(-g)) * u }
        case let .add(a, b, output):
            elementwise(a, b, output) { $0 + $1 }
        case let .copy(source, destination):
            copy(source: source, destination: destination)
        case let .linear(input, weight, bias, output):
            linear(input: input, weight: weight, bias: bias, output: output)
        case let .silu(input, output):
            elementwise(input, input, output) { x, _ in x / (1 + _exp(-x)) }
        case let .gatherRows(source, indices, output):
            for m in 0..<indices.columns { copyRow(from: source, int(indices, m), to: output, m) }
        case let .scatterRows(source, indices, output):
            for m in 0..<indices.columns { copyRow(from: source, m, to: output, int(indices, m)) }
        case let .routerDecision(logits, threshold, decisions):
            // The rule as written in method.md, with the exponential: p_exec = softmax(skip, execute)[1].
            let d = store.pointer(decisions, as: Int32.self)
            for t in 0..<logits.rows {
                let pExecute = 1 / (1 + _exp(get(logits, t, 0) - get(logits, t, 1)))
                d[t] = pExecute > Double(threshold) ? 1 : 0
            }
        }
    }

    // MARK: Element access

    /// Element (`row`, `column`) of a float32 view, widened.
    func get(_ view: TensorView, _ row: Int, _ column: Int) -> Double {
        Double(store.pointer(view, as: Float.self)[row * view.rowStride + column])
    }

    /// Stores `value` rounded to float32.
    func set(_ view: TensorView, _ row: Int, _ column: Int, _ value: Double) {
        store.pointer(view, as: Float.self)[row * view.rowStride + column] = Float(value)
    }

    func int(_ view: TensorView, _ index: Int) -> Int {
        Int(store.pointer(view, as: Int32.self)[index])
    }

    /// Reads a whole view first, so that in-place ops see their inputs unchanged.
    func matrix(_ view: TensorView) -> [[Double]] {
        (0..<view.rows).map { r in (0..<view.columns).map { c in get(view, r, c) } }
    }
}

@inline(__always) func _exp(_ x: Double) -> Double {
    #if canImport(Glibc)
    return Glibc.exp(x)
    #else
    return Darwin.exp(x)
    #endif
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
