import QTaleCore

/// A linear layer's weight on an engine: packed low-bit codes (what inference runs) or dense float32
/// (a float model before quantization, e.g. a Hugging Face checkpoint or a LoRA-merged model, which
/// calibration runs as it is).
public enum LinearWeight: Sendable {
    /// `[rows × columns]` in the packed layout, run by `.matmul`.
    case quantized(QuantizedMatrix)
    /// `[rows × columns]` float32, run by `.linear`.
    case dense(TensorView)

    /// Output channels (N).
    public var rows: Int {
        switch self {
        case let .quantized(m): m.rows
        case let .dense(v): v.rows
        }
    }

    /// Input channels (K).
    public var columns: Int {
        switch self {
        case let .quantized(m): m.columns
        case let .dense(v): v.columns
        }
    }

    /// Bytes one pass over the weight reads.
    public var byteCount: Int {
        switch self {
        case let .quantized(m): m.byteCount
        case let .dense(v): 4 * v.rows * v.columns
        }
    }

    /// The op computing `output = input · weightᵀ`.
    public func apply(to input: TensorView, output: TensorView) -> Op {
        switch self {
        case let .quantized(m): .matmul(input: input, weight: m, output: output)
        case let .dense(v): .linear(input: input, weight: v, bias: nil, output: output)
        }
    }
}

extension LinearWeight {
    /// The op copying rows `tokens` of this matrix (seen as an embedding table) into `output`.
    public func lookup(tokens: TensorView, output: TensorView) -> Op {
        switch self {
        case let .quantized(m): .embed(table: m, tokens: tokens, output: output)
        case let .dense(v): .gatherRows(source: v, indices: tokens, output: output)
        }
    }
}
