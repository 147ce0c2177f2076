/// The ops router training adds to ``Op``: two training forms of forward ops, and the backward pass of
/// every op in a decoder block and in a router (method.md §1).
///
/// They live in their own enum so that inference engines (OpenCL, Vulkan) never switch over them; only
/// engines that train conform to ``TrainingEngine`` (the float64 reference, the specification, and the
/// CPU engine). A training step mixes both kinds: forward passes use ``Op`` (matmul, rmsNorm, rope, ...)
/// plus the two training forwards here, and the backward pass uses the rest.
///
/// **Gradient conventions.** Every `…Gradient` operand is the derivative of one scalar loss `L` with
/// respect to the named tensor, same shape as that tensor.
/// - *Activation gradients* (of inputs, queries, keys, values, gate/up) are **overwritten**, except where a
///   case takes `accumulate: true`, which adds into the existing values instead (`dX += …`): a residual
///   stream or an input shared by several linears (q, k and v read one normed input) sums its gradients
///   without an extra buffer.
/// - *Parameter gradients* (RMSNorm weight, dense weight and bias) and *gate gradients* (the router
///   decision `w`, which both ``gatedResidualBackward`` and ``gatedAttentionBackward`` differentiate) are
///   always **accumulated** (`+=`), so contributions of several ops, sequences and micro-batches sum.
///   Zero them with ``fill(_:value:)`` when a step starts.
/// - Frozen weights (the quantized base linears) get no gradient.
///
/// **Aliasing.** Outputs never overlap inputs or each other, except where a case says an output may
/// *be* a given input (the identical view; partial overlaps are never allowed). ``TrainingOpValidation``
/// checks this.
///
/// Shapes follow ``Op``: rows are tokens, `[T × C]` holds `T` tokens of `C` channels; all tensors are
/// float32 except positions (int32).
public enum TrainingOp: Sendable, CustomStringConvertible {
    // MARK: Forward ops of training

    /// `output = value` everywhere in the view (zeroes gradient buffers). float32.
    case fill(TensorView, value: Float)

    /// The routed block output `output[t] = gate[t]·block[t] + (1 − gate[t])·residual[t]`
    /// (`y = w·block(x) + (1 − w)·x`, method.md §1). `block`, `residual`, `output`: `[T × C]`;
    /// `gate`: `[1 × T]`, one decision per token (hard 0/1 in training, any real value allowed).
    /// `output` may be `block` or `residual`.
    case gatedResidual(block: TensorView, residual: TensorView, gate: TensorView, output: TensorView)

    /// Causal grouped-query attention with a gate on every key: the eviction mask of training.
    ///
    /// Shapes and visibility as ``Op/attention(query:keys:values:queryPositions:keyPositions:heads:kvHeads:headDim:output:)``
    /// with key positions `0 ..< S`: key `s` is visible to query `t` iff `s <= queryPositions[t]`.
    /// `keyGate`: `[1 × S]`, the decision `w[s]` of the token that wrote key `s` (1 = executed the block).
    /// With `a[s] = q·k[s] / sqrt(headDim)` over visible keys, per query row and head:
    ///
    ///     P[s] = softmax(a)[s],  P̃[s] = P[s]·w[s] / Σ_j P[j]·w[j],  output = Σ_s P̃[s]·v[s]
    ///
    /// The softmax normaliser cancels, so `P̃[s] = w[s]·exp(a[s] − λ)` with `λ = log Σ_j w[j]·exp(a[j])`:
    /// for 0/1 gates this is masking before the softmax, and it is differentiable in `w`.
    /// `logNormalizers`: `[T × heads]`, receives `λ` per query row and head, which the backward reuses; a row
    /// with no visible key of nonzero gate stores `+∞` and outputs zeros. `output`: like `query`.
    case gatedAttention(query: TensorView, keys: TensorView, values: TensorView, keyGate: TensorView,
                        queryPositions: TensorView, heads: Int, kvHeads: Int, headDim: Int,
                        output: TensorView, logNormalizers: TensorView)

    // MARK: Backward ops

    /// Backward of ``Op/rmsNorm(input:weight:epsilon:output:)``, `y = x·r·g`, `r = 1/sqrt(mean(x²) + ε)`:
    ///
    ///     dX[t][c] (+)= r_t·g[c]·dY[t][c] − x[t][c]·r_t³/C · Σ_j g[j]·dY[t][j]·x[t][j]
    ///     dG[c]     += Σ_t dY[t][c]·x[t][c]·r_t
    ///
    /// `input`, `outputGradient`, `inputGradient`: `[T × C]`; `weight`, `weightGradient`: `[1 × C]`.
    /// `inputGradient` is overwritten, or added to with `accumulate`; `weightGradient` (the router's
    /// trainable norm; `nil` for the frozen block norms) is accumulated.
    case rmsNormBackward(input: TensorView, weight: TensorView, epsilon: Float, outputGradient: TensorView,
                         inputGradient: TensorView, accumulate: Bool, weightGradient: TensorView?)

    /// Backward of ``Op/matmul(input:weight:output:)`` through a frozen quantized weight:
    /// `dX (+)= dY · dequantize(W)`, `[M × N] · [N × K] → [M × K]`.
    /// `inputGradient` is overwritten, or added to with `accumulate`.
    case matmulBackward(outputGradient: TensorView, weight: QuantizedMatrix, inputGradient: TensorView, accumulate: Bool)

    /// Backward of ``Op/linear(input:weight:bias:output:)``, `Y = X·Wᵀ + b` with dense float32 `W` (routers, LoRA):
    ///
    ///     dX (+)= dY · W     dW += dYᵀ · X     db += Σ_t dY[t]
    ///
    /// `input`: `[T × K]`; `weight`, `weightGradient`: `[N × K]`; `outputGradient`: `[T × N]`;
    /// `inputGradient`: `[T × K]`; `biasGradient`: `[1 × N]`. Each gradient is optional (`nil`: not wanted,
    /// e.g. a frozen weight). `inputGradient` is overwritten, or added to with `accumulate`; the weight
    /// and bias gradients are accumulated.
    case linearBackward(input: TensorView, weight: TensorView, outputGradient: TensorView,
                        inputGradient: TensorView?, accumulate: Bool,
                        weightGradient: TensorView?, biasGradient: TensorView?)

    /// Backward of ``Op/rope(data:positions:headDim:ropeDims:base:)`` in place: the transposed rotation,
    /// i.e. the rotation by the negated angle, turns `dY` into `dX`. Shapes and layout as the forward.
    case ropeBackward(gradient: TensorView, positions: TensorView, headDim: Int, ropeDims: Int, base: Float)

    /// Backward of ``gatedAttention(query:keys:values:keyGate:queryPositions:heads:kvHeads:headDim:output:logNormalizers:)``.
    ///
    /// `output` and `logNormalizers` are what the forward wrote for these inputs (engines may reuse them
    /// instead of recomputing). With `p[s] = exp(a[s] − λ)` (so `P̃[s] = w[s]·p[s]`), `g[s] = dO·v[s]` and
    /// `D = dO·output = Σ_s P̃[s]·g[s]`, per query row and head:
    ///
    ///     dq    = Σ_s w[s]·p[s]·(g[s] − D)·k[s] / sqrt(headDim)
    ///     dk[s] = Σ_{t,h} w[s]·p[s]·(g[s] − D)·q / sqrt(headDim)      (over the heads that read key head s)
    ///     dv[s] = Σ_{t,h} w[s]·p[s]·dO
    ///     dw[s] += Σ_{t,h} p[s]·(g[s] − D)                              (the straight-through signal to the router)
    ///
    /// `dw[s]` is nonzero for gated-off keys too: it says how including key `s` would change the loss.
    /// Rows whose `λ` is `+∞` contribute nothing. `queryGradient`: like `query`; `keyGradient`,
    /// `valueGradient`: like `keys` (all three overwritten); `keyGateGradient`: `[1 × S]`, accumulated.
    case gatedAttentionBackward(query: TensorView, keys: TensorView, values: TensorView, keyGate: TensorView,
                                queryPositions: TensorView, heads: Int, kvHeads: Int, headDim: Int,
                                output: TensorView, logNormalizers: TensorView, outputGradient: TensorView,
                                queryGradient: TensorView, keyGradient: TensorView, valueGradient: TensorView,
                                keyGateGradient: TensorView)

    /// Backward of ``Op/swiGLU(gate:up:output:)``, `y = silu(g)·u`:
    /// `dG = dY·u·silu′(g)`, `dU = dY·silu(g)`, with `silu′(g) = σ(g)·(1 + g·(1 − σ(g)))`.
    /// All `[T × C]`, overwritten. `gateGradient` may be `gate` and `upGradient` may be `up`.
    case swiGLUBackward(gate: TensorView, up: TensorView, outputGradient: TensorView,
                        gateGradient: TensorView, upGradient: TensorView)

    /// Backward of ``Op/silu(input:output:)``: `dX = dY·silu′(x)`, overwritten.
    /// `inputGradient` may be `input` or `outputGradient`.
    case siluBackward(input: TensorView, outputGradient: TensorView, inputGradient: TensorView)

    /// Backward of ``gatedResidual(block:residual:gate:output:)``:
    ///
    ///     dBlock[t] = w[t]·dY[t]     dResidual[t] = (1 − w[t])·dY[t]     dw[t] += Σ_c dY[t][c]·(block[t][c] − residual[t][c])
    ///
    /// `blockGradient` and `residualGradient` (`[T × C]`) are overwritten; `gateGradient` (`[1 × T]`) is
    /// accumulated. `blockGradient` may be `outputGradient` (or `block`); `residualGradient` may be `residual`.
    case gatedResidualBackward(block: TensorView, residual: TensorView, gate: TensorView, outputGradient: TensorView,
                               blockGradient: TensorView, residualGradient: TensorView, gateGradient: TensorView)

    /// The op's name in kernel naming (snake_case).
    public var name: String {
        switch self {
        case .fill: "fill"
        case .gatedResidual: "gated_residual"
        case .gatedAttention: "gated_attention"
        case .rmsNormBackward: "rms_norm_backward"
        case .matmulBackward: "matmul_backward"
        case .linearBackward: "linear_backward"
        case .ropeBackward: "rope_backward"
        case .gatedAttentionBackward: "gated_attention_backward"
        case .swiGLUBackward: "swiglu_backward"
        case .siluBackward: "silu_backward"
        case .gatedResidualBackward: "gated_residual_backward"
        }
    }

    public var description: String {
        switch self {
        case let .fill(view, value): "fill(\(view.rows)×\(view.columns), \(value))"
        case let .gatedResidual(block, _, _, _): "gated_residual(\(block.rows)×\(block.columns))"
        case let .gatedAttention(query, keys, _, _, _, heads, kvHeads, headDim, _, _):
            "gated_attention(T=\(query.rows), S=\(keys.rows), heads \(heads)/\(kvHeads), dim \(headDim))"
        case let .rmsNormBackward(input, _, _, _, _, accumulate, weightGradient):
            "rms_norm_backward(\(input.rows)×\(input.columns)\(accumulate ? ", accumulate" : "")\(weightGradient == nil ? "" : ", dG"))"
        case let .matmulBackward(outputGradient, weight, _, accumulate):
            "matmul_backward(\(outputGradient.rows)×\(outputGradient.columns) · \(weight)\(accumulate ? ", accumulate" : ""))"
        case let .linearBackward(input, weight, _, inputGradient, accumulate, weightGradient, biasGradient):
            "linear_backward(\(input.rows)×\(input.columns) · \(weight.rows)×\(weight.columns)ᵀ"
                + (inputGradient == nil ? "" : accumulate ? ", dX+" : ", dX")
                + (weightGradient == nil ? "" : ", dW") + (biasGradient == nil ? "" : ", db") + ")"
        case let .ropeBackward(gradient, _, headDim, ropeDims, _):
            "rope_backward(\(gradient.rows)×\(gradient.columns), head \(headDim), dims \(ropeDims))"
        case let .gatedAttentionBackward(query, keys, _, _, _, heads, kvHeads, headDim, _, _, _, _, _, _, _):
            "gated_attention_backward(T=\(query.rows), S=\(keys.rows), heads \(heads)/\(kvHeads), dim \(headDim))"
        case let .swiGLUBackward(gate, _, _, _, _): "swiglu_backward(\(gate.rows)×\(gate.columns))"
        case let .siluBackward(input, _, _): "silu_backward(\(input.rows)×\(input.columns))"
        case let .gatedResidualBackward(block, _, _, _, _, _, _): "gated_residual_backward(\(block.rows)×\(block.columns))"
        }
    }
}

extension TrainingOp: TensorAccessing {
    /// Calls `body` with every view the op reads, except outputs it also accumulates into (those are
    /// writes). Frozen quantized weights are read-only and not listed.
    @inlinable public func forEachRead(_ body: (TensorView) -> Void) {
        switch self {
        case .fill: break
        case let .gatedResidual(block, residual, gate, _): body(block); body(residual); body(gate)
        case let .gatedAttention(query, keys, values, keyGate, queryPositions, _, _, _, _, _):
            body(query); body(keys); body(values); body(keyGate); body(queryPositions)
        case let .rmsNormBackward(input, weight, _, outputGradient, _, _, _):
            body(input); body(weight); body(outputGradient)
        case let .matmulBackward(outputGradient, _, _, _): body(outputGradient)
        case let .linearBackward(input, weight, outputGradient, _, _, _, _):
            body(input); body(weight); body(outputGradient)
        case let .ropeBackward(gradient, positions, _, _, _): body(gradient); body(positions)
        case let .gatedAttentionBackward(query, keys, values, keyGate, queryPositions, _, _, _, output, logNormalizers,
                                         outputGradient, _, _, _, _):
            body(query); body(keys); body(values); body(keyGate); body(queryPositions)
            body(output); body(logNormalizers); body(outputGradient)
        case let .swiGLUBackward(gate, up, outputGradient, _, _): body(gate); body(up); body(outputGradient)
        case let .siluBackward(input, outputGradient, _): body(input); body(outputGradient)
        case let .gatedResidualBackward(block, residual, gate, outputGradient, _, _, _):
            body(block); body(residual); body(gate); body(outputGradient)
        }
    }

    /// Calls `body` with every view the op writes (overwritten or accumulated).
    @inlinable public func forEachWrite(_ body: (TensorView) -> Void) {
        switch self {
        case let .fill(view, _): body(view)
        case let .gatedResidual(_, _, _, output): body(output)
        case let .gatedAttention(_, _, _, _, _, _, _, _, output, logNormalizers): body(output); body(logNormalizers)
        case let .rmsNormBackward(_, _, _, _, inputGradient, _, weightGradient):
            body(inputGradient)
            if let weightGradient { body(weightGradient) }
        case let .matmulBackward(_, _, inputGradient, _): body(inputGradient)
        case let .linearBackward(_, _, _, inputGradient, _, weightGradient, biasGradient):
            if let inputGradient { body(inputGradient) }
            if let weightGradient { body(weightGradient) }
            if let biasGradient { body(biasGradient) }
        case let .ropeBackward(gradient, _, _, _, _): body(gradient)
        case let .gatedAttentionBackward(_, _, _, _, _, _, _, _, _, _, _, queryGradient, keyGradient, valueGradient, keyGateGradient):
            body(queryGradient); body(keyGradient); body(valueGradient); body(keyGateGradient)
        case let .swiGLUBackward(_, _, _, gateGradient, upGradient): body(gateGradient); body(upGradient)
        case let .siluBackward(_, _, inputGradient): body(inputGradient)
        case let .gatedResidualBackward(_, _, _, _, blockGradient, residualGradient, gateGradient):
            body(blockGradient); body(residualGradient); body(gateGradient)
        }
    }
}

/// An engine that can train: it runs ``TrainingOp``s as well as ``Op``s, recorded into the same in-order
/// queue (``ComputeEngine``'s synchronisation rules apply to both). Implemented by the reference engine
/// (float64, the specification) and the CPU engine; inference-only engines need not implement it.
public protocol TrainingEngine: ComputeEngine {
    /// Records `op`. Operands must be valid (``TrainingOpValidation`` checks them); engines may assume so.
    func encode(_ op: TrainingOp) throws
}

extension TrainingEngine {
    /// Validates `op`, then encodes it.
    public func run(_ op: TrainingOp) throws {
        try TrainingOpValidation.check(op)
        try encode(op)
    }
}
