/// The explicit op set: every computation the model asks of an engine.
///
/// Each case is one kernel contract. Operands are ``TensorView``s (float32 unless stated) and
/// ``QuantizedMatrix`` values; the float64 reference engine defines the semantics, and the
/// conformance suite checks every engine against it case by case.
///
/// Rows are tokens: an activation `[T × C]` holds `T` tokens of `C` channels.
/// Outputs may alias inputs only where a case says so.
public enum Op: Sendable, CustomStringConvertible {
    /// `output[t] = dequantize(table)[tokens[t]]`. `tokens`: int32 `[1 × T]`; `output`: `[T × table.columns]`.
    case embed(table: QuantizedMatrix, tokens: TensorView, output: TensorView)

    /// `output[t] = input[t] / sqrt(mean(input[t]²) + epsilon) * weight`. `weight`: `[1 × C]`.
    /// May run in place.
    case rmsNorm(input: TensorView, weight: TensorView, epsilon: Float, output: TensorView)

    /// `output[t][n] = Σ_k input[t][k] * dequantize(weight)[n][k]`: `[T × K] · [N × K]ᵀ → [T × N]`;
    /// with `accumulate`, `output[t][n] +=` that sum (a residual connection in the same launch).
    /// Engines pick matrix-vector kernels for `T = 1` (decode) and matrix-matrix kernels for prefill.
    case matmul(input: TensorView, weight: QuantizedMatrix, output: TensorView, accumulate: Bool = false)

    /// Rotary position embedding in place, GGUF LLaMA layout ("normal" mode): in each head of
    /// `headDim` channels, pairs `(2i, 2i+1)` for `2i < ropeDims` rotate by `positions[t] * base^(-2i/ropeDims)`.
    /// `data`: `[T × heads*headDim]`; `positions`: int32 `[1 × T]`.
    case rope(data: TensorView, positions: TensorView, headDim: Int, ropeDims: Int, base: Float)

    /// Causal grouped-query attention of `T` queries over `S` cached keys.
    ///
    /// `query`: `[T × heads*headDim]`; `keys`, `values`: `[S × kvHeads*headDim]`; `output`: like `query`.
    /// Key `s` is visible to query `t` iff `keyPositions[s] <= queryPositions[t]`, where
    /// `keyPositions` is int32 `[1 × S]` or, when `nil`, `keyPositions[s] = s`. Query head `h` reads
    /// key head `h / (heads / kvHeads)`. Scores are scaled by `1/sqrt(headDim)`; softmax in float32 or better.
    /// A query that sees no key outputs zeros.
    case attention(query: TensorView, keys: TensorView, values: TensorView,
                   queryPositions: TensorView, keyPositions: TensorView?,
                   heads: Int, kvHeads: Int, headDim: Int, output: TensorView)

    /// `output = silu(gate) * up`, elementwise. May run in place over `gate`.
    case swiGLU(gate: TensorView, up: TensorView, output: TensorView)

    /// `output = a + b`, elementwise. May run in place over `a`.
    case add(TensorView, TensorView, output: TensorView)

    /// `destination = source`, same shape; views may be strided (writes K/V rows into the cache).
    case copy(source: TensorView, destination: TensorView)

    /// `output[t] = weight · input[t] + bias`: a dense float32 linear layer (the routers).
    /// `weight`: `[N × K]`; `bias`: `[1 × N]` or `nil`; `input`: `[T × K]`; `output`: `[T × N]`.
    case linear(input: TensorView, weight: TensorView, bias: TensorView?, output: TensorView)

    /// `output = silu(input) = input / (1 + e^-input)`, elementwise. May run in place.
    case silu(input: TensorView, output: TensorView)

    /// `output[m] = source[indices[m]]`: compacts the rows that execute a block. 32-bit elements (float or int).
    /// `indices`: int32 `[1 × M]`, each in `0 ..< source.rows`; `output`: `[M × source.columns]`.
    case gatherRows(source: TensorView, indices: TensorView, output: TensorView)

    /// `output[indices[m]] = source[m]`; rows of `output` not named by `indices` are left untouched.
    /// `indices`: int32 `[1 × M]`, distinct; `source`: `[M × C]`.
    case scatterRows(source: TensorView, indices: TensorView, output: TensorView)

    /// Layer-skip decisions from router logits: `decisions[t] = 1` iff `p_exec > threshold`, else `0`, where
    /// `p_exec = softmax(logits[t])[1]`. `logits`: `[T × 2]` (skip, execute); `decisions`: int32 `[1 × T]`.
    /// Engines compare the logit difference with ``RouterDecisionRule/margin(threshold:)``, so every engine
    /// and the host decide alike without an exponential.
    case routerDecision(logits: TensorView, threshold: Float, decisions: TensorView)

    /// The op's name in kernel naming (snake_case), used by logs, benchmarks and the conformance suite.
    public var name: String {
        switch self {
        case .embed: "embed"
        case .rmsNorm: "rms_norm"
        case .matmul: "matmul"
        case .rope: "rope"
        case .attention: "attention"
        case .swiGLU: "swiglu"
        case .add: "add"
        case .copy: "copy"
        case .linear: "linear"
        case .silu: "silu"
        case .gatherRows: "gather_rows"
        case .scatterRows: "scatter_rows"
        case .routerDecision: "router_decision"
        }
    }

    public var description: String {
        switch self {
        case let .embed(table, tokens, _): "embed(\(table), tokens: \(tokens.columns))"
        case let .rmsNorm(input, _, _, _): "rms_norm(\(input.rows)×\(input.columns))"
        case let .matmul(input, weight, _, accumulate): "matmul(\(input.rows)×\(input.columns) · \(weight)\(accumulate ? ", accumulate" : ""))"
        case let .rope(data, _, headDim, ropeDims, _): "rope(\(data.rows)×\(data.columns), head \(headDim), dims \(ropeDims))"
        case let .attention(query, keys, _, _, _, heads, kvHeads, headDim, _):
            "attention(T=\(query.rows), S=\(keys.rows), heads \(heads)/\(kvHeads), dim \(headDim))"
        case let .swiGLU(gate, _, _): "swiglu(\(gate.rows)×\(gate.columns))"
        case let .add(a, _, _): "add(\(a.rows)×\(a.columns))"
        case let .copy(source, _): "copy(\(source.rows)×\(source.columns))"
        case let .linear(input, weight, _, _): "linear(\(input.rows)×\(input.columns) · \(weight.rows)×\(weight.columns)ᵀ)"
        case let .silu(input, _): "silu(\(input.rows)×\(input.columns))"
        case let .gatherRows(source, indices, _): "gather_rows(\(indices.columns) of \(source.rows)×\(source.columns))"
        case let .scatterRows(source, _, output): "scatter_rows(\(source.rows) into \(output.rows)×\(output.columns))"
        case let .routerDecision(logits, threshold, _): "router_decision(T=\(logits.rows), θ \(threshold))"
        }
    }
}

extension Op {
    /// Calls `body` with every activation view the op reads (weights are read-only and not listed).
    @inlinable public func forEachRead(_ body: (TensorView) -> Void) {
        switch self {
        case let .embed(_, tokens, _): body(tokens)
        case let .rmsNorm(input, weight, _, _): body(input); body(weight)
        case let .matmul(input, _, output, accumulate):
            body(input)
            if accumulate { body(output) }
        case let .rope(data, positions, _, _, _): body(data); body(positions)
        case let .attention(query, keys, values, queryPositions, keyPositions, _, _, _, _):
            body(query); body(keys); body(values); body(queryPositions)
            if let keyPositions { body(keyPositions) }
        case let .swiGLU(gate, up, _): body(gate); body(up)
        case let .add(a, b, _): body(a); body(b)
        case let .copy(source, _): body(source)
        case let .linear(input, weight, bias, _):
            body(input); body(weight)
            if let bias { body(bias) }
        case let .silu(input, _): body(input)
        case let .gatherRows(source, indices, _): body(source); body(indices)
        case let .scatterRows(source, indices, _): body(source); body(indices)
        case let .routerDecision(logits, _, _): body(logits)
        }
    }

    /// Calls `body` with every view the op writes.
    @inlinable public func forEachWrite(_ body: (TensorView) -> Void) {
        switch self {
        case let .embed(_, _, output), let .rmsNorm(_, _, _, output), let .matmul(_, _, output, _),
             let .attention(_, _, _, _, _, _, _, _, output), let .swiGLU(_, _, output), let .add(_, _, output),
             let .linear(_, _, _, output), let .silu(_, output), let .gatherRows(_, _, output), let .scatterRows(_, _, output):
            body(output)
        case let .rope(data, _, _, _, _): body(data)
        case let .copy(_, destination): body(destination)
        case let .routerDecision(_, _, decisions): body(decisions)
        }
    }
}

extension TensorView {
    /// Whether the byte spans of two views in the same buffer intersect.
    @inlinable public func overlaps(_ other: TensorView) -> Bool {
        buffer == other.buffer && byteOffset < other.byteOffset + other.byteSpan && other.byteOffset < byteOffset + byteSpan
    }
}
