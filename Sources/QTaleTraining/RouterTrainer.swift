import Foundation
import QTaleCore
import QTaleModel

/// The loss weights of one training step and the counts its means divide by.
///
/// Gradients of several sequences accumulate into one step, so each mean's denominator is the step's
/// total, known before any sequence runs (``TrainingExample`` fixes its scored and routed counts).
public struct LossScale: Sendable, Equatable {
    /// Scored (response) tokens of the step: the CE mean's denominator.
    public var scoredTokens: Int
    /// Tokens whose execution ratio counts (positions from the always-on ones on): `L_rate`'s denominator.
    public var routedTokens: Int
    /// `routedTokens ×` routed blocks: `L_entropy`'s denominator.
    public var routedDecisions: Int
    /// λ1 at this step (after the sine ramp) and λ2.
    public var lambdaRate: Double
    public var lambdaEntropy: Double
    /// Ω.
    public var targetRatio: Double

    public init(scoredTokens: Int, routedTokens: Int, routedDecisions: Int, lambdaRate: Double, lambdaEntropy: Double, targetRatio: Double) {
        self.scoredTokens = scoredTokens
        self.routedTokens = routedTokens
        self.routedDecisions = routedDecisions
        self.lambdaRate = lambdaRate
        self.lambdaEntropy = lambdaEntropy
        self.targetRatio = targetRatio
    }
}

/// What one sequence contributed: loss sums (divide by the ``LossScale`` counts for the means) and
/// routing statistics for the progress line and the diagnostics.
public struct SequenceStatistics: Sendable {
    /// Σ −log p(target) over scored tokens.
    public var crossEntropySum = 0.0
    /// Σ_t |r_t − Ω| over routed tokens.
    public var rateSum = 0.0
    /// Σ H(softmax(logits)) over routed decisions.
    public var entropySum = 0.0
    /// Σ_t r_t over routed tokens (the execution ratio, always-on blocks included).
    public var ratioSum = 0.0
    public var routedTokens = 0
    public var scoredTokens = 0
    /// Per block: decisions made and blocks executed (routed positions only).
    public var decisions: [Int]
    public var executed: [Int]
    /// Decisions whose Gumbel noise changed the noiseless argmax.
    public var flips = 0
    /// |logit_exec − logit_skip| of every routed decision, per block (diagnostics; empty unless asked).
    public var logitGaps: [[Float]]

    init(layers: Int) {
        decisions = [Int](repeating: 0, count: layers)
        executed = [Int](repeating: 0, count: layers)
        logitGaps = [[Float]](repeating: [], count: layers)
    }

    /// The total loss this sequence adds under `scale`.
    public func loss(_ scale: LossScale) -> Double {
        crossEntropySum / Double(max(1, scale.scoredTokens)) + scale.lambdaRate * rateSum / Double(max(1, scale.routedTokens))
            - scale.lambdaEntropy * entropySum / Double(max(1, scale.routedDecisions))
    }

    public mutating func add(_ other: SequenceStatistics) {
        crossEntropySum += other.crossEntropySum
        rateSum += other.rateSum
        entropySum += other.entropySum
        ratioSum += other.ratioSum
        routedTokens += other.routedTokens
        scoredTokens += other.scoredTokens
        for l in decisions.indices {
            decisions[l] += other.decisions[l]
            executed[l] += other.executed[l]
            logitGaps[l] += other.logitGaps[l]
        }
        flips += other.flips
    }
}

/// How router decisions are drawn in the forward pass.
public enum GateMode: Sendable, Equatable {
    /// Hard Gumbel-Softmax, straight-through: forward `w ∈ {0, 1}` (argmax of noisy logits), backward
    /// the derivative of the soft probability (method.md §1). Training.
    case hardGumbel
    /// The soft relaxation: `w = softmax((logits + g)/τ)[exec]` forward and backward (a smooth function of
    /// the router parameters; for gradient checks).
    case softGumbel
    /// No noise: `w = 1` iff `p_exec > threshold` (evaluation of the training graph).
    case deterministic(threshold: Float)
}

/// Gumbel noise for one sequence: `g[l][2t + c]`, class `c` (0 = skip, 1 = execute), drawn from a seeded
/// generator, so a run is reproducible from its seed and step alone.
public struct GumbelNoise: Sendable {
    public var values: [[Double]]

    public init(layers: Int, tokens: Int, seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        values = (0..<layers).map { _ in
            (0 ..< 2 * tokens).map { _ in
                let u = max(Double(rng.next() >> 11) / Double(1 << 53), 1e-300)
                return -log(-log(u) + 0)  // standard Gumbel
            }
        }
    }

    public static func zeros(layers: Int, tokens: Int) -> GumbelNoise {
        var n = GumbelNoise(layers: 0, tokens: 0, seed: 0)
        n.values = [[Double]](repeating: [Double](repeating: 0, count: 2 * tokens), count: layers)
        return n
    }
}

/// Router training on a frozen model, one sequence at a time, on a ``TrainingEngine``.
///
/// The forward pass runs every block for every token (as D-LLM trains) and blends with the router
/// decision `w`: `y = w·block(x) + (1 − w)·x` (``TrainingOp/gatedResidual(block:residual:gate:output:)``),
/// with the block's attention keys gated by the same `w` (the eviction mask,
/// ``TrainingOp/gatedAttention(query:keys:values:keyGate:queryPositions:heads:kvHeads:headDim:output:logNormalizers:)``).
/// Router logits come back to the host after each block's router, where the Gumbel decisions are drawn.
/// The backward pass runs through every block in reverse with the backward ops: the base weights get no
/// gradient; the router parameters' gradients accumulate on the engine until ``readGradients()``.
/// With LoRA (``LoRASet``), q, k and v of every block add `B·(A·x̃)` before RoPE (`x̃` = the normed input
/// times a dropout mask with α/r folded in), and `A`, `B` get gradients too (``readLoRAGradients()``).
///
/// Loss per step (means over the step's tokens, ``LossScale``):
/// `CE(response tokens) + λ1·mean_t |r_t − Ω| − λ2·mean_{t,l} H(softmax(logits_{t,l}))`, with
/// `r_t = (1/L)·Σ_l w_{t,l}` over all `L` blocks (always-on ones count 1). Tokens at the always-on
/// positions are left out of both router terms (their `r_t` is 1 whatever the routers do).
/// The straight-through gradient: `∂L/∂logit_exec = −∂L/∂logit_skip = ∂L/∂w · s(1 − s)/τ`,
/// `s = softmax((logits + g)/τ)[exec]`.
public final class RouterTrainer {
    public let engine: any TrainingEngine
    public let weights: LlamaWeights
    public let configuration: LlamaConfiguration
    public let routerConfiguration: RouterConfiguration
    public let maxTokens: Int
    public var temperature = 1.0
    /// Collect per-decision logit gaps in the statistics (diagnostics).
    public var collectsLogitGaps = false
    /// Keep the output logits of the scored rows of the last ``run(_:noise:mode:scale:backward:dropoutSeed:)``
    /// in ``capturedLogits`` (tests).
    public var capturesLogits = false
    /// `[scored rows × vocab]`: the logits predicting each scored token, in order (when ``capturesLogits``).
    public private(set) var capturedLogits: [Float] = []

    /// Host copy of the parameters, per routed block: `[w1, b1, norm, w2, b2]` flattened.
    public private(set) var parameters: RouterSet
    /// Host copy of the LoRA adapters on q, k, v (`nil`: routers only).
    public private(set) var lora: LoRASet?
    private let store: Buffers
    private let routed: [Int]

    /// Trainable tensors of one block on the engine, and their gradients.
    struct RouterTensors {
        let w1, b1, norm, w2, b2: TensorView
        let dw1, db1, dnorm, dw2, db2: TensorView
        var all: [TensorView] { [w1, b1, norm, w2, b2] }
        var gradients: [TensorView] { [dw1, db1, dnorm, dw2, db2] }
    }

    /// One LoRA adapter on the engine, its gradients, and what its backward needs: the adapter's input
    /// `x̃ = m ⊙ x` (the dropout mask and the scale α/r folded into `m`) and `u = A·x̃`.
    struct LoRATensors {
        let a, b, da, db: TensorView
        let input, u: TensorView
    }

    /// Activations of one block kept for the backward pass.
    struct BlockActivations {
        let q, k, v, attended, lse, hmid, gate, up, out, w: TensorView
        let h1, h2, logits: TensorView
    }

    final class Buffers {
        let engine: any ComputeEngine
        var buffers: [DeviceBuffer] = []
        init(engine: any ComputeEngine) { self.engine = engine }
        func make(_ rows: Int, _ columns: Int, _ type: ScalarType = .float32) throws -> TensorView {
            let b = try engine.allocate(byteCount: max(1, rows * columns) * type.byteSize)
            buffers.append(b)
            return b.view(type, rows: rows, columns: columns)
        }
    }

    private var routerTensors: [RouterTensors?] = []
    /// `[block][target]` (q, k, v); empty without LoRA.
    private var loraTensors: [[LoRATensors]] = []
    /// LoRA scratch: `B·u` for q and for k/v, `∂L/∂u`, `∂L/∂x̃`.
    private var loraOutQ, loraOutKV, loraDU, loraDX: TensorView?
    /// The multipliers `m` of the current sequence per block and target (`nil`: identity, `x̃ = x`).
    private var loraMultipliers: [[[Float]?]] = []
    private var loraDropoutSeed: UInt64?
    private var blocks: [BlockActivations] = []
    /// Residual stream entering block `l` (`xs[L]` is the final one).
    private var xs: [TensorView] = []
    private let tokens, positions, indices: TensorView
    private let normed, tmp, hidden: TensorView
    private let dA, dB, dN, dAtt, dq, dk, dv, dHidden, dGate, dUp, dw, dz, r3, dr3, dr1: TensorView
    private let gathered, gatheredNormed, dGathered, dGatheredNormed, logitsChunk: TensorView
    static let logitChunkRows = 32

    /// `lora`: adapters on q, k and v trained with the routers (`nil`: routers only).
    public init(weights: LlamaWeights, engine: any TrainingEngine, routers: RouterSet, lora: LoRASet? = nil, maxTokens: Int) throws {
        let c = weights.configuration
        guard routers.dModel == c.dModel, routers.layers == c.nLayers else {
            throw QTaleError.invalidArgument("routers are for \(routers.layers) blocks of d_model \(routers.dModel); the model has \(c.nLayers) of \(c.dModel)")
        }
        guard maxTokens >= 2 && maxTokens <= c.contextLength else {
            throw QTaleError.invalidArgument("the training sequence length must be between 2 and the model's context \(c.contextLength), got \(maxTokens)")
        }
        self.engine = engine
        self.weights = weights
        configuration = c
        routerConfiguration = routers.configuration
        parameters = routers
        self.maxTokens = maxTokens
        routed = (0..<c.nLayers).filter { routers.routers[$0] != nil }
        let s = Buffers(engine: engine)
        store = s
        let T = maxTokens, d = c.dModel, qDim = c.nHeads * c.headDim, kvDim = c.nKVHeads * c.headDim, f = c.ffnDim
        let h = routers.configuration.hidden
        tokens = try s.make(1, T, .int32)
        positions = try s.make(1, T, .int32)
        indices = try s.make(1, T, .int32)
        try engine.write((0..<Int32(T)).map { $0 }, to: positions)
        normed = try s.make(T, d); tmp = try s.make(T, d); hidden = try s.make(T, f)
        dA = try s.make(T, d); dB = try s.make(T, d); dN = try s.make(T, d)
        dAtt = try s.make(T, qDim); dq = try s.make(T, qDim); dk = try s.make(T, kvDim); dv = try s.make(T, kvDim)
        dHidden = try s.make(T, f); dGate = try s.make(T, f); dUp = try s.make(T, f)
        dw = try s.make(1, T); dz = try s.make(T, 2)
        r3 = try s.make(T, h); dr3 = try s.make(T, h); dr1 = try s.make(T, h)
        gathered = try s.make(T, d); gatheredNormed = try s.make(T, d); dGathered = try s.make(T, d); dGatheredNormed = try s.make(T, d)
        logitsChunk = try s.make(min(T, Self.logitChunkRows), c.vocabSize)
        xs = try (0...c.nLayers).map { _ in try s.make(T, d) }
        blocks = try (0..<c.nLayers).map { _ in
            BlockActivations(q: try s.make(T, qDim), k: try s.make(T, kvDim), v: try s.make(T, kvDim), attended: try s.make(T, qDim),
                             lse: try s.make(T, c.nHeads), hmid: try s.make(T, d), gate: try s.make(T, f), up: try s.make(T, f),
                             out: try s.make(T, d), w: try s.make(1, T), h1: try s.make(T, h), h2: try s.make(T, h),
                             logits: try s.make(T, 2))
        }
        routerTensors = try routers.routers.map { r in
            guard r != nil else { return nil }
            return RouterTensors(w1: try s.make(h, d), b1: try s.make(1, h), norm: try s.make(1, h), w2: try s.make(2, h), b2: try s.make(1, 2),
                                 dw1: try s.make(h, d), db1: try s.make(1, h), dnorm: try s.make(1, h), dw2: try s.make(2, h), db2: try s.make(1, 2))
        }
        try setParameters(routers)
        if let lora {
            guard lora.layers == c.nLayers, lora.dModel == c.dModel else {
                throw QTaleError.invalidArgument("LoRA adapters are for \(lora.layers) blocks of d_model \(lora.dModel); the model has \(c.nLayers) of \(c.dModel)")
            }
            let r = lora.configuration.rank
            loraTensors = try (0..<c.nLayers).map { _ in
                try LoRATarget.allCases.map { target in
                    let shape = target.kind.shape(in: c)
                    return LoRATensors(a: try s.make(r, shape.columns), b: try s.make(shape.rows, r),
                                       da: try s.make(r, shape.columns), db: try s.make(shape.rows, r),
                                       input: try s.make(T, shape.columns), u: try s.make(T, r))
                }
            }
            loraOutQ = try s.make(T, qDim); loraOutKV = try s.make(T, kvDim)
            loraDU = try s.make(T, r); loraDX = try s.make(T, d)
            self.lora = lora
            try setLoRA(lora)
        }
    }

    /// Replaces the LoRA adapters (host copy and engine copy); the trainer must have been built with LoRA
    /// of the same rank.
    public func setLoRA(_ set: LoRASet) throws {
        guard let current = lora, current.configuration.rank == set.configuration.rank, current.layers == set.layers,
              current.dModel == set.dModel else {
            throw QTaleError.invalidArgument("LoRA adapters do not match the trainer's layout")
        }
        lora = set
        for l in 0..<set.layers {
            for t in 0 ..< LoRATarget.allCases.count {
                try engine.write(set.adapters[l][t].a, to: loraTensors[l][t].a)
                try engine.write(set.adapters[l][t].b, to: loraTensors[l][t].b)
            }
        }
    }

    /// The accumulated LoRA gradients, as a ``LoRASet`` of the same layout (`nil` without LoRA).
    public func readLoRAGradients() throws -> LoRASet? {
        guard var out = lora else { return nil }
        for l in 0..<out.layers {
            for t in 0 ..< LoRATarget.allCases.count {
                out.adapters[l][t].a = try engine.readFloats(loraTensors[l][t].da)
                out.adapters[l][t].b = try engine.readFloats(loraTensors[l][t].db)
            }
        }
        return out
    }

    /// Blocks that have routers.
    public var routedBlocks: [Int] { routed }

    /// Replaces the parameters (host copy and engine copy).
    public func setParameters(_ set: RouterSet) throws {
        guard set.configuration.hidden == routerConfiguration.hidden, set.routers.map({ $0 == nil }) == parameters.routers.map({ $0 == nil }) else {
            throw QTaleError.invalidArgument("router parameters do not match the trainer's layout")
        }
        parameters = set
        for l in routed {
            let r = set.routers[l]!, t = routerTensors[l]!
            try engine.write(r.w1, to: t.w1); try engine.write(r.b1, to: t.b1); try engine.write(r.norm, to: t.norm)
            try engine.write(r.w2, to: t.w2); try engine.write(r.b2, to: t.b2)
        }
    }

    /// Zeroes the accumulated gradients (call when a step starts).
    public func zeroGradients() throws {
        for l in routed { for g in routerTensors[l]!.gradients { try engine.run(.fill(g, value: 0)) } }
        for block in loraTensors { for t in block { try engine.run(.fill(t.da, value: 0)); try engine.run(.fill(t.db, value: 0)) } }
    }

    /// The accumulated gradients, as a ``RouterSet`` of the same layout.
    public func readGradients() throws -> RouterSet {
        var out = parameters
        for l in routed {
            let t = routerTensors[l]!
            var r = out.routers[l]!
            r.w1 = try engine.readFloats(t.dw1); r.b1 = try engine.readFloats(t.db1); r.norm = try engine.readFloats(t.dnorm)
            r.w2 = try engine.readFloats(t.dw2); r.b2 = try engine.readFloats(t.db2)
            out.routers[l] = r
        }
        return out
    }

    /// The counts of `example` that ``LossScale`` sums over a step.
    public func counts(of example: TrainingExample) -> (scored: Int, routedTokens: Int, routedDecisions: Int) {
        let routedTokens = max(0, example.tokens.count - routerConfiguration.alwaysOnPositions)
        return (example.scoredCount, routedTokens, routedTokens * routed.count)
    }

    /// Forward (and, with `backward`, backward) of one sequence: accumulates the router gradients of
    /// this sequence's share of the step loss under `scale`, and returns its statistics.
    ///
    /// `dropoutSeed`: the seed of this sequence's LoRA dropout masks (`nil`: no dropout, as in evaluation;
    /// without LoRA it is ignored).
    public func run(_ example: TrainingExample, noise: GumbelNoise, mode: GateMode, scale: LossScale,
                    backward: Bool = true, dropoutSeed: UInt64? = nil) throws -> SequenceStatistics {
        let c = configuration, e = engine
        loraDropoutSeed = dropoutSeed
        capturedLogits = []
        let T = example.tokens.count
        guard T >= 2 && T <= maxTokens else {
            throw QTaleError.invalidArgument("\(example.source): \(T) tokens; training sequences hold 2 to \(maxTokens)")
        }
        for id in example.tokens where id < 0 || Int(id) >= c.vocabSize {
            throw QTaleError.invalidArgument("\(example.source): token id \(id) is outside the vocabulary")
        }
        let L = c.nLayers, d = c.dModel
        let alwaysOnPositions = routerConfiguration.alwaysOnPositions
        var stats = SequenceStatistics(layers: L)
        let pos = positions.columns(0..<T)
        try e.write(example.tokens, to: tokens.columns(0..<T))
        try e.run(weights.tokenEmbedding.lookup(tokens: tokens.columns(0..<T), output: xs[0].rows(0..<T)))

        // Host copies for the backward: gates and soft probabilities per block and token, router logits.
        var gates = [[Double]](repeating: [Double](repeating: 1, count: T), count: L)
        var soft = [[Double]](repeating: [Double](repeating: 1, count: T), count: L)
        var logits = [[Float]](repeating: [], count: L)

        for l in 0..<L {
            let x = xs[l].rows(0..<T), a = blocks[l]
            if let r = routerTensors[l] {
                let h1 = a.h1.rows(0..<T), h2 = a.h2.rows(0..<T), z = a.logits.rows(0..<T), h3 = r3.rows(0..<T)
                try e.run(.linear(input: x, weight: r.w1, bias: r.b1, output: h1))
                try e.run(.rmsNorm(input: h1, weight: r.norm, epsilon: c.normEpsilon, output: h2))
                try e.run(.silu(input: h2, output: h3))
                try e.run(.linear(input: h3, weight: r.w2, bias: r.b2, output: z))
                let zl = try e.readFloats(z)
                logits[l] = zl
                for t in alwaysOnPositions ..< T {
                    let z0 = Double(zl[2 * t]), z1 = Double(zl[2 * t + 1])
                    let g0 = noise.values[l][2 * t], g1 = noise.values[l][2 * t + 1]
                    let s = 1 / (1 + exp(-((z1 + g1) - (z0 + g0)) / temperature))
                    soft[l][t] = s
                    let w: Double
                    switch mode {
                    case .hardGumbel: w = (z1 + g1) > (z0 + g0) ? 1 : 0
                    case .softGumbel: w = s
                    case let .deterministic(threshold): w = 1 / (1 + exp(z0 - z1)) > Double(threshold) ? 1 : 0
                    }
                    gates[l][t] = w
                    stats.decisions[l] += 1
                    if w >= 0.5 { stats.executed[l] += 1 }
                    if ((z1 + g1) > (z0 + g0)) != (z1 > z0) { stats.flips += 1 }
                    // Entropy of softmax(z), before noise.
                    let u = z1 - z0, p = 1 / (1 + exp(-u))
                    let entropy = Self.binaryEntropy(p)
                    stats.entropySum += entropy
                    if collectsLogitGaps { stats.logitGaps[l].append(Float(abs(u))) }
                }
            }
            try e.write(gates[l].map { Float($0) }, to: a.w.columns(0..<T))
            try runBlock(l, x: x, positions: pos, count: T)
        }

        // Rate term per token.
        var rateGradient = [Double](repeating: 0, count: T)  // ∂L/∂w_{t,l}, the same for every routed l
        if T > alwaysOnPositions {
            for t in alwaysOnPositions ..< T {
                let r = (0..<L).reduce(0.0) { $0 + gates[$1][t] } / Double(L)
                stats.ratioSum += r
                stats.rateSum += abs(r - scale.targetRatio)
                stats.routedTokens += 1
                let sign: Double = r > scale.targetRatio ? 1 : (r < scale.targetRatio ? -1 : 0)
                rateGradient[t] = scale.lambdaRate * sign / Double(L) / Double(max(1, scale.routedTokens))
            }
        }

        // Cross-entropy on the scored tokens: rows t whose next token is scored.
        let rows = (0 ..< T - 1).filter { example.scored[$0 + 1] }
        stats.scoredTokens = rows.count
        let M = rows.count
        let dTop = dA.rows(0..<T)
        if backward { try e.run(.fill(dTop, value: 0)) }
        if M > 0 {
            let idx = indices.columns(0..<M), g = gathered.rows(0..<M), gn = gatheredNormed.rows(0..<M)
            try e.write(rows.map { Int32($0) }, to: idx)
            try e.run(.gatherRows(source: xs[L].rows(0..<T), indices: idx, output: g))
            try e.run(.rmsNorm(input: g, weight: weights.outputNorm, epsilon: c.normEpsilon, output: gn))
            let V = c.vocabSize
            var first = 0
            while first < M {
                let n = min(M - first, logitsChunk.rows)
                let out = logitsChunk.rows(0..<n)
                try e.run(weights.outputHead.apply(to: gn.rows(first ..< first + n), output: out))
                var values = try e.readFloats(out)
                if capturesLogits { capturedLogits += values }
                for i in 0..<n {
                    let target = Int(example.tokens[rows[first + i] + 1])
                    let base = i * V
                    var maximum = -Double.infinity
                    for j in 0..<V { maximum = max(maximum, Double(values[base + j])) }
                    var sum = 0.0
                    for j in 0..<V { sum += exp(Double(values[base + j]) - maximum) }
                    let logZ = maximum + log(sum)
                    stats.crossEntropySum += logZ - Double(values[base + target])
                    if backward {
                        let inv = 1 / Double(max(1, scale.scoredTokens))
                        for j in 0..<V { values[base + j] = Float(exp(Double(values[base + j]) - logZ) * inv) }
                        values[base + target] -= Float(inv)
                    }
                }
                if backward {
                    try e.write(values, to: out)
                    try linearInputBackward(weights.outputHead, outputGradient: out, inputGradient: dGatheredNormed.rows(first ..< first + n),
                                            accumulate: false, input: gn.rows(first ..< first + n))
                }
                first += n
            }
            if backward {
                try e.run(.rmsNormBackward(input: g, weight: weights.outputNorm, epsilon: c.normEpsilon,
                                           outputGradient: dGatheredNormed.rows(0..<M), inputGradient: dGathered.rows(0..<M),
                                           accumulate: false, weightGradient: nil))
                try e.run(.scatterRows(source: dGathered.rows(0..<M), indices: idx, output: dTop))
            }
        }
        guard backward else { return stats }

        // Backward through the blocks, last first. `dY` holds ∂L/∂(output of block l), `dX` receives ∂L/∂x_l.
        var dY = dA.rows(0..<T), dX = dB.rows(0..<T)
        for l in stride(from: L - 1, through: 0, by: -1) {
            let gateGradient = dw.columns(0..<T)
            try e.run(.fill(gateGradient, value: 0))
            try backwardBlock(l, dY: dY, dX: dX, positions: pos, count: T, gateGradient: gateGradient)
            if let r = routerTensors[l] {
                let dwHost = try e.readFloats(gateGradient)
                var dzHost = [Float](repeating: 0, count: 2 * T)
                let entropyWeight = scale.lambdaEntropy / Double(max(1, scale.routedDecisions))
                for t in alwaysOnPositions ..< T {
                    let s = soft[l][t]
                    let dL_dw = Double(dwHost[t]) + rateGradient[t]
                    var du = dL_dw * s * (1 - s) / temperature
                    // L_entropy = −mean H: ∂(−H)/∂u = u·p(1 − p), u = z1 − z0.
                    let u = Double(logits[l][2 * t + 1]) - Double(logits[l][2 * t])
                    let p = 1 / (1 + exp(-u))
                    du += entropyWeight * u * p * (1 - p)
                    dzHost[2 * t] = Float(-du)
                    dzHost[2 * t + 1] = Float(du)
                }
                let a = blocks[l], x = xs[l].rows(0..<T)
                let dzView = dz.rows(0..<T), h1 = a.h1.rows(0..<T), h2 = a.h2.rows(0..<T), h3 = r3.rows(0..<T)
                try e.write(dzHost, to: dzView)
                try e.run(.silu(input: h2, output: h3))
                try e.run(.linearBackward(input: h3, weight: r.w2, outputGradient: dzView, inputGradient: dr3.rows(0..<T),
                                          accumulate: false, weightGradient: r.dw2, biasGradient: r.db2))
                try e.run(.siluBackward(input: h2, outputGradient: dr3.rows(0..<T), inputGradient: dr3.rows(0..<T)))
                try e.run(.rmsNormBackward(input: h1, weight: r.norm, epsilon: c.normEpsilon, outputGradient: dr3.rows(0..<T),
                                           inputGradient: dr1.rows(0..<T), accumulate: false, weightGradient: r.dnorm))
                try e.run(.linearBackward(input: x, weight: r.w1, outputGradient: dr1.rows(0..<T), inputGradient: dX,
                                          accumulate: true, weightGradient: r.dw1, biasGradient: r.db1))
            }
            swap(&dY, &dX)
        }
        try e.synchronize()
        _ = d
        return stats
    }

    static func binaryEntropy(_ p: Double) -> Double {
        var h = 0.0
        if p > 0 { h -= p * log(p) }
        if p < 1 { h -= (1 - p) * log(1 - p) }
        return h
    }

    /// One decoder block on all `count` tokens with its key gate, keeping what the backward needs;
    /// writes `xs[l + 1] = w·block(x) + (1 − w)·x`.
    private func runBlock(_ l: Int, x: TensorView, positions pos: TensorView, count T: Int) throws {
        let c = configuration, e = engine, a = blocks[l], w = weights.blocks[l]
        let n = normed.rows(0..<T), o = tmp.rows(0..<T)
        let q = a.q.rows(0..<T), k = a.k.rows(0..<T), v = a.v.rows(0..<T), att = a.attended.rows(0..<T)
        let hmid = a.hmid.rows(0..<T), gate = a.gate.rows(0..<T), up = a.up.rows(0..<T), out = a.out.rows(0..<T)
        try e.run(.rmsNorm(input: x, weight: w.attentionNorm, epsilon: c.normEpsilon, output: n))
        try e.run(w.query.apply(to: n, output: q))
        try e.run(w.key.apply(to: n, output: k))
        try e.run(w.value.apply(to: n, output: v))
        if !loraTensors.isEmpty { try loraForward(l, input: n, outputs: [q, k, v], count: T) }
        // RoPE rotates the projections after LoRA's update: the adapters act on the pre-RoPE q and k.
        try e.run(.rope(data: q, positions: pos, headDim: c.headDim, ropeDims: c.ropeDims, base: c.ropeBase))
        try e.run(.rope(data: k, positions: pos, headDim: c.headDim, ropeDims: c.ropeDims, base: c.ropeBase))
        try e.run(.gatedAttention(query: q, keys: k, values: v, keyGate: a.w.columns(0..<T), queryPositions: pos,
                                  heads: c.nHeads, kvHeads: c.nKVHeads, headDim: c.headDim, output: att,
                                  logNormalizers: a.lse.rows(0..<T)))
        try e.run(w.attentionOutput.apply(to: att, output: o))
        try e.run(.add(x, o, output: hmid))
        try e.run(.rmsNorm(input: hmid, weight: w.ffnNorm, epsilon: c.normEpsilon, output: n))
        try e.run(w.gate.apply(to: n, output: gate))
        try e.run(w.up.apply(to: n, output: up))
        let hid = hidden.rows(0..<T)
        try e.run(.swiGLU(gate: gate, up: up, output: hid))
        try e.run(w.down.apply(to: hid, output: o))
        try e.run(.add(hmid, o, output: out))
        try e.run(.gatedResidual(block: out, residual: x, gate: a.w.columns(0..<T), output: xs[l + 1].rows(0..<T)))
    }

    /// Backward of ``runBlock``: `dY` is overwritten (scratch), `dX` receives ∂L/∂x (without the router's
    /// share), `gateGradient` accumulates ∂L/∂w from the blend and from the attention gate.
    private func backwardBlock(_ l: Int, dY: TensorView, dX: TensorView, positions pos: TensorView, count T: Int,
                               gateGradient: TensorView) throws {
        let c = configuration, e = engine, a = blocks[l], w = weights.blocks[l]
        let x = xs[l].rows(0..<T), gateView = a.w.columns(0..<T)
        let dn = dN.rows(0..<T)
        try e.run(.gatedResidualBackward(block: a.out.rows(0..<T), residual: x, gate: gateView, outputGradient: dY,
                                         blockGradient: dY, residualGradient: dX, gateGradient: gateGradient))
        // MLP: out = hmid + down(silu(gate(n2)) ⊙ up(n2)), n2 = rmsNorm(hmid).
        let dh = dHidden.rows(0..<T), dg = dGate.rows(0..<T), du = dUp.rows(0..<T)
        try linearInputBackward(w.down, outputGradient: dY, inputGradient: dh, accumulate: false, input: hidden.rows(0..<T))
        try e.run(.swiGLUBackward(gate: a.gate.rows(0..<T), up: a.up.rows(0..<T), outputGradient: dh, gateGradient: dg, upGradient: du))
        try linearInputBackward(w.gate, outputGradient: dg, inputGradient: dn, accumulate: false, input: normed.rows(0..<T))
        try linearInputBackward(w.up, outputGradient: du, inputGradient: dn, accumulate: true, input: normed.rows(0..<T))
        try e.run(.rmsNormBackward(input: a.hmid.rows(0..<T), weight: w.ffnNorm, epsilon: c.normEpsilon, outputGradient: dn,
                                   inputGradient: dY, accumulate: true, weightGradient: nil))
        // dY now holds ∂L/∂hmid. Attention: hmid = x + o(attention(rope(q(n1)), rope(k(n1)), v(n1))).
        let datt = dAtt.rows(0..<T), dqv = dq.rows(0..<T), dkv = dk.rows(0..<T), dvv = dv.rows(0..<T)
        try linearInputBackward(w.attentionOutput, outputGradient: dY, inputGradient: datt, accumulate: false, input: a.attended.rows(0..<T))
        try e.run(.gatedAttentionBackward(query: a.q.rows(0..<T), keys: a.k.rows(0..<T), values: a.v.rows(0..<T), keyGate: gateView,
                                          queryPositions: pos, heads: c.nHeads, kvHeads: c.nKVHeads, headDim: c.headDim,
                                          output: a.attended.rows(0..<T), logNormalizers: a.lse.rows(0..<T), outputGradient: datt,
                                          queryGradient: dqv, keyGradient: dkv, valueGradient: dvv, keyGateGradient: gateGradient))
        try e.run(.ropeBackward(gradient: dqv, positions: pos, headDim: c.headDim, ropeDims: c.ropeDims, base: c.ropeBase))
        try e.run(.ropeBackward(gradient: dkv, positions: pos, headDim: c.headDim, ropeDims: c.ropeDims, base: c.ropeBase))
        try linearInputBackward(w.query, outputGradient: dqv, inputGradient: dn, accumulate: false, input: normed.rows(0..<T))
        try linearInputBackward(w.key, outputGradient: dkv, inputGradient: dn, accumulate: true, input: normed.rows(0..<T))
        try linearInputBackward(w.value, outputGradient: dvv, inputGradient: dn, accumulate: true, input: normed.rows(0..<T))
        if !loraTensors.isEmpty { try loraBackward(l, outputGradients: [dqv, dkv, dvv], inputGradient: dn, count: T) }
        try e.run(.rmsNormBackward(input: x, weight: w.attentionNorm, epsilon: c.normEpsilon, outputGradient: dn,
                                   inputGradient: dX, accumulate: true, weightGradient: nil))
        try e.run(.add(dX, dY, output: dX))
    }

    /// The multiplier `m` of adapter `target` of block `l` for `T` tokens: `x̃ = m ⊙ x` is inverted
    /// dropout times the scale, `m = keep·(α/r)/(1 − p)`, drawn from the sequence's dropout seed; `nil`
    /// when it is the identity (no dropout and α/r = 1).
    private func loraMultiplier(_ l: Int, _ target: Int, count T: Int, columns: Int) -> [Float]? {
        let cfg = lora!.configuration
        if let seed = loraDropoutSeed, cfg.dropout > 0 {
            var rng = SeededGenerator(seed: seed ^ (UInt64(l * 3 + target + 1) &* 0x9E37_79B9_7F4A_7C15))
            let keep = Float(cfg.scale / (1 - cfg.dropout)), p = cfg.dropout
            return (0 ..< T * columns).map { _ in Double(rng.next() >> 11) / Double(1 << 53) >= p ? keep : 0 }
        }
        if cfg.scale != 1 { return [Float](repeating: Float(cfg.scale), count: T * columns) }
        return nil
    }

    /// Adds `B·(A·x̃)` to each of q, k, v (pre-RoPE), keeping `x̃` and `u = A·x̃` for the backward.
    /// The masked input is formed on the host (one read of `x`, one write per adapter).
    private func loraForward(_ l: Int, input x: TensorView, outputs: [TensorView], count T: Int) throws {
        let e = engine
        if loraMultipliers.count != configuration.nLayers { loraMultipliers = [[[Float]?]](repeating: [nil, nil, nil], count: configuration.nLayers) }
        var host: [Float]?
        for (i, out) in outputs.enumerated() {
            let t = loraTensors[l][i], xin = t.input.rows(0..<T), u = t.u.rows(0..<T)
            let m = loraMultiplier(l, i, count: T, columns: x.columns)
            loraMultipliers[l][i] = m
            if let m {
                if host == nil { host = try e.readFloats(x) }
                try e.write(zip(host!, m).map { $0 * $1 }, to: xin)
            } else {
                try e.run(.copy(source: x, destination: xin))
            }
            try e.run(.linear(input: xin, weight: t.a, bias: nil, output: u))
            let delta = (i == 0 ? loraOutQ! : loraOutKV!).rows(0..<T)
            try e.run(.linear(input: u, weight: t.b, bias: nil, output: delta))
            try e.run(.add(out, delta, output: out))
        }
    }

    /// Backward of ``loraForward``: `dB += dYᵀ·u`, `dA += dUᵀ·x̃` with `dU = dY·B`, and `∂L/∂x += m ⊙ (dU·A)`
    /// into `inputGradient` (which already holds the frozen path's share).
    private func loraBackward(_ l: Int, outputGradients: [TensorView], inputGradient dn: TensorView, count T: Int) throws {
        let e = engine, dU = loraDU!.rows(0..<T)
        for (i, dY) in outputGradients.enumerated() {
            let t = loraTensors[l][i]
            try e.run(.linearBackward(input: t.u.rows(0..<T), weight: t.b, outputGradient: dY, inputGradient: dU,
                                      accumulate: false, weightGradient: t.db, biasGradient: nil))
            if let m = loraMultipliers[l][i] {
                let dX = loraDX!.rows(0..<T)
                try e.run(.linearBackward(input: t.input.rows(0..<T), weight: t.a, outputGradient: dU, inputGradient: dX,
                                          accumulate: false, weightGradient: t.da, biasGradient: nil))
                let g = try e.readFloats(dX)
                try e.write(zip(g, m).map { $0 * $1 }, to: dX)
                try e.run(.add(dn, dX, output: dn))
            } else {
                try e.run(.linearBackward(input: t.input.rows(0..<T), weight: t.a, outputGradient: dU, inputGradient: dn,
                                          accumulate: true, weightGradient: t.da, biasGradient: nil))
            }
        }
    }

    /// `dX (+)= dY · W` through a frozen linear (quantized: matmul backward; dense: linear backward without
    /// weight gradients). `input` is any view of the input's shape (dense validation wants one; it is not read for dX).
    private func linearInputBackward(_ weight: LinearWeight, outputGradient: TensorView, inputGradient: TensorView,
                                     accumulate: Bool, input: TensorView) throws {
        switch weight {
        case let .quantized(m):
            try engine.run(.matmulBackward(outputGradient: outputGradient, weight: m, inputGradient: inputGradient, accumulate: accumulate))
        case let .dense(v):
            try engine.run(.linearBackward(input: input, weight: v, outputGradient: outputGradient, inputGradient: inputGradient,
                                           accumulate: accumulate, weightGradient: nil, biasGradient: nil))
        }
    }
}
