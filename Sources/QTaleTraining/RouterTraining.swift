import Foundation
import QTaleCore
import QTaleModel
import QTaleSafetensors

/// The hyper-parameters of a router training run (method.md §1–2; defaults follow D-LLM's recipe where
/// it applies to a small model).
public struct RouterTrainingSettings: Sendable, Equatable, Codable {
    /// Ω, the target execution ratio over all blocks (always-on ones included).
    public var targetRatio = 0.5
    /// λ1's final value (the sine ramp reaches it at the end of the run).
    public var lambdaRate = 5.0
    /// λ2 (QTALE's entropy weight; 0 is plain D-LLM).
    public var lambdaEntropy = 0.1
    public var epochs = 1
    /// Peak learning rate of AdamW.
    public var learningRate = 1e-3
    /// Tokens per optimizer step (sequences are packed whole until the next would exceed it; at least one).
    public var batchTokens = 1024
    /// Longest training sequence (longer pairs lose prompt tokens from the left).
    public var maxLength = 256
    public var seed: UInt64 = 0
    /// Share of the steps spent in linear warm-up (D-LLM: 2 of 10 epochs), then a half-cycle cosine to 0.
    public var warmupFraction = 0.2
    public var beta1 = 0.9
    public var beta2 = 0.95
    public var weightDecay = 0.02
    public var adamEpsilon = 1e-8
    /// Gumbel-Softmax temperature τ.
    public var temperature = 1.0
    /// Router shape and the always-on blocks and positions.
    public var routerHidden = 512
    public var alwaysOnBlocks = 2
    public var alwaysOnPositions = 2
    /// LoRA on q, k, v (D-LLM: rank 8, α = r, dropout 0.05); rank 0 trains routers only.
    public var loraRank = 0
    /// α (`nil`: α = r, scale 1).
    public var loraAlpha: Double?
    public var loraDropout = 0.05

    public init() {}

    /// The LoRA configuration these settings ask for (`nil` at rank 0).
    public var lora: LoRAConfiguration? {
        loraRank > 0 ? LoRAConfiguration(rank: loraRank, alpha: loraAlpha, dropout: loraDropout) : nil
    }

    /// Rejects settings that cannot train, naming the flag.
    public func validate(layers: Int) throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw QTaleError.invalidArgument(message) } }
        let floor = Double(min(alwaysOnBlocks, layers)) / Double(max(1, layers))
        try check(targetRatio.isFinite && targetRatio > 0 && targetRatio <= 1, "--target-ratio must be in (0, 1], got \(targetRatio)")
        try check(targetRatio >= floor, "--target-ratio \(targetRatio) is below \(floor), the share of the \(alwaysOnBlocks) always-on blocks of \(layers)")
        try check(lambdaRate.isFinite && lambdaRate >= 0, "--lambda-rate must be ≥ 0, got \(lambdaRate)")
        try check(lambdaEntropy.isFinite && lambdaEntropy >= 0, "--lambda-entropy must be ≥ 0, got \(lambdaEntropy)")
        try check(epochs >= 1 && epochs <= 10_000, "--epochs must be between 1 and 10000, got \(epochs)")
        try check(learningRate.isFinite && learningRate > 0 && learningRate < 1, "--lr must be in (0, 1), got \(learningRate)")
        try check(batchTokens >= 2, "--batch-tokens must be at least 2, got \(batchTokens)")
        try check(maxLength >= 2, "--max-length must be at least 2, got \(maxLength)")
        try check(warmupFraction >= 0 && warmupFraction < 1, "--warmup must be in [0, 1), got \(warmupFraction)")
        try check(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "Adam betas must be in [0, 1)")
        try check(weightDecay >= 0 && weightDecay.isFinite, "--weight-decay must be ≥ 0")
        try check(temperature > 0 && temperature.isFinite, "--temperature must be > 0")
        try check(routerHidden >= 1 && routerHidden <= 65536, "--router-hidden must be between 1 and 65536")
        try check(alwaysOnBlocks >= 0 && alwaysOnBlocks < layers, "--always-on-blocks must leave at least one routed block of \(layers)")
        try check(alwaysOnPositions >= 0 && alwaysOnPositions < maxLength, "--always-on-positions must be below --max-length")
        try check(loraRank >= 0 && loraRank <= 4096, "--lora-rank must be between 0 and 4096, got \(loraRank)")
        if let lora { try lora.validate() }
    }

    /// The settings as the checkpoint compares them: the LoRA keys are left out at rank 0, so checkpoints
    /// of routers-only runs written before LoRA existed still resume.
    var fingerprintJSON: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let text = String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
        guard loraRank == 0 else { return text }
        return text.replacingOccurrences(of: #""lora[A-Za-z]+":[^,}]*,?"#, with: "", options: .regularExpression)
            .replacingOccurrences(of: ",}", with: "}")
    }

    /// λ1 after the sine ramp at `step` (0-based) of `totalSteps`: `λ_max·sin(π/2·e/E)` with the epoch
    /// progress `e/E = (step + 1)/totalSteps` (D-LLM ramps per epoch; per step, a one-epoch run ramps too).
    public func lambdaRate(step: Int, totalSteps: Int) -> Double {
        lambdaRate * sin(Double.pi / 2 * min(1, Double(step + 1) / Double(max(1, totalSteps))))
    }

    /// The learning rate at `step`: linear warm-up over the first `warmupFraction` of the steps, then a
    /// half-cycle cosine from the peak to 0.
    public func learningRate(step: Int, totalSteps: Int) -> Double {
        let warmup = Int((warmupFraction * Double(totalSteps)).rounded())
        if step < warmup { return learningRate * Double(step + 1) / Double(warmup) }
        let span = max(1, totalSteps - warmup)
        let progress = Double(step - warmup) / Double(span)
        return learningRate * 0.5 * (1 + cos(Double.pi * progress))
    }
}

/// Router parameters ↔ one flat vector, block by block in the order `w1, b1, norm, w2, b2`.
public enum RouterVector {
    public static func flatten(_ set: RouterSet) -> [Float] {
        var out: [Float] = []
        for r in set.routers { if let r { out += r.w1; out += r.b1; out += r.norm; out += r.w2; out += r.b2 } }
        return out
    }

    public static func unflatten(_ values: [Float], like set: RouterSet) -> RouterSet {
        var out = set
        var i = 0
        func take(_ n: Int) -> [Float] { defer { i += n }; return Array(values[i ..< i + n]) }
        for l in out.routers.indices where out.routers[l] != nil {
            var r = out.routers[l]!
            r.w1 = take(r.w1.count); r.b1 = take(r.b1.count); r.norm = take(r.norm.count)
            r.w2 = take(r.w2.count); r.b2 = take(r.b2.count)
            out.routers[l] = r
        }
        precondition(i == values.count, "router vector length mismatch")
        return out
    }
}

/// AdamW (decoupled weight decay) on a flat float32 vector, as PyTorch's `torch.optim.AdamW`.
public struct AdamW: Sendable, Equatable {
    public var m: [Float]
    public var v: [Float]
    /// Updates taken so far.
    public var t: Int

    public init(count: Int) {
        m = [Float](repeating: 0, count: count)
        v = m
        t = 0
    }

    public mutating func update(_ parameters: inout [Float], gradient: [Float], learningRate lr: Double, settings s: RouterTrainingSettings) {
        t += 1
        let b1 = Float(s.beta1), b2 = Float(s.beta2)
        let correction1 = Float(1 - pow(s.beta1, Double(t))), correction2 = Float(1 - pow(s.beta2, Double(t)))
        let lrF = Float(lr), decay = Float(1 - lr * s.weightDecay), eps = Float(s.adamEpsilon)
        for i in parameters.indices {
            let g = gradient[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            let mHat = m[i] / correction1, vHat = v[i] / correction2
            parameters[i] = parameters[i] * decay - lrF * mHat / (vHat.squareRoot() + eps)
        }
    }
}

/// One optimizer step's outcome.
public struct StepReport: Sendable {
    public var step: Int
    public var epoch: Int
    public var loss: Double
    public var crossEntropy: Double
    public var rateLoss: Double
    /// Mean router entropy H (the loss term is −λ2·H).
    public var entropy: Double
    /// Mean execution ratio r_t of the step's routed tokens.
    public var executionRatio: Double
    public var flipRate: Double
    public var lambdaRate: Double
    public var learningRate: Double
    public var tokens: Int
    public var seconds: Double
    public var statistics: SequenceStatistics
}

/// A whole training run: the data plan (shuffled per epoch and packed into steps), the optimizer state,
/// checkpoints and resume. Everything random derives from the seed and the step, so a run resumed
/// from a checkpoint repeats the uninterrupted run bit for bit.
public final class RouterTrainingRun {
    public let trainer: RouterTrainer
    public let examples: [TrainingExample]
    public let settings: RouterTrainingSettings
    /// Per step: its epoch and the example indices it trains on.
    public let plan: [(epoch: Int, examples: [Int])]
    public private(set) var step = 0
    public private(set) var optimizer: AdamW
    private var vector: [Float]
    /// Free-form provenance merged into the routers' provenance JSON.
    public var provenance: [String: String] = [:]

    public var totalSteps: Int { plan.count }
    public var isFinished: Bool { step >= plan.count }

    public init(trainer: RouterTrainer, examples: [TrainingExample], settings: RouterTrainingSettings) throws {
        try settings.validate(layers: trainer.configuration.nLayers)
        guard !examples.isEmpty else { throw QTaleError.invalidArgument("no training examples") }
        if let bad = examples.first(where: { $0.tokens.count < 2 || $0.tokens.count > trainer.maxTokens }) {
            throw QTaleError.invalidArgument("\(bad.source): \(bad.tokens.count) tokens; sequences must hold 2 to \(trainer.maxTokens)")
        }
        guard examples.contains(where: { $0.scoredCount > 0 }) else {
            throw QTaleError.invalidArgument("no example has a scored (response) token")
        }
        self.trainer = trainer
        self.examples = examples
        self.settings = settings
        guard trainer.lora?.configuration == settings.lora else {
            throw QTaleError.invalidArgument("the trainer's LoRA (\(trainer.lora.map { "rank \($0.configuration.rank)" } ?? "none")) does not match the settings' (rank \(settings.loraRank))")
        }
        plan = Self.makePlan(lengths: examples.map(\.tokens.count), settings: settings)
        vector = RouterVector.flatten(trainer.parameters) + (trainer.lora?.flatten() ?? [])
        optimizer = AdamW(count: vector.count)
    }

    /// Shuffles the examples per epoch (seeded) and packs them into steps of at most `batchTokens` tokens.
    static func makePlan(lengths: [Int], settings: RouterTrainingSettings) -> [(epoch: Int, examples: [Int])] {
        var plan: [(Int, [Int])] = []
        for epoch in 0..<settings.epochs {
            var rng = SeededGenerator(seed: settings.seed &+ 0x5EED_0000 &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)
            var order = Array(lengths.indices)
            for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            var current: [Int] = [], tokens = 0
            for i in order {
                if !current.isEmpty && tokens + lengths[i] > settings.batchTokens {
                    plan.append((epoch, current))
                    current = []; tokens = 0
                }
                current.append(i); tokens += lengths[i]
            }
            if !current.isEmpty { plan.append((epoch, current)) }
        }
        return plan
    }

    /// The Gumbel seed of sequence `index` of step `step`.
    func noiseSeed(step: Int, index: Int) -> UInt64 {
        var g = SeededGenerator(seed: settings.seed ^ (UInt64(step) &* 0xD1B5_4A32_D192_ED03) ^ (UInt64(index) &* 0xC2B2_AE3D_27D4_EB4F))
        return g.next()
    }

    /// The LoRA dropout seed of sequence `index` of step `step`.
    func dropoutSeed(step: Int, index: Int) -> UInt64 {
        var g = SeededGenerator(seed: noiseSeed(step: step, index: index) ^ 0xD809_0D80_9D80_9D80)
        return g.next()
    }

    /// Router parameters, then LoRA's, as one vector.
    private func apply(_ vector: [Float]) throws {
        let routerCount = RouterVector.flatten(trainer.parameters).count
        try trainer.setParameters(RouterVector.unflatten(Array(vector[..<routerCount]), like: trainer.parameters))
        if let lora = trainer.lora { try trainer.setLoRA(lora.unflatten(vector[routerCount...])) }
    }

    /// Runs the next step: forward and backward of its sequences, then one AdamW update.
    @discardableResult
    public func trainStep(collectLogitGaps: Bool = false) throws -> StepReport {
        guard !isFinished else { throw QTaleError.invalidArgument("the run is finished (\(plan.count) steps)") }
        let started = Date()
        let (epoch, members) = plan[step]
        var scored = 0, routedTokens = 0, routedDecisions = 0, tokens = 0
        for i in members {
            let c = trainer.counts(of: examples[i])
            scored += c.scored; routedTokens += c.routedTokens; routedDecisions += c.routedDecisions
            tokens += examples[i].tokens.count
        }
        let lambda1 = settings.lambdaRate(step: step, totalSteps: plan.count)
        let scale = LossScale(scoredTokens: scored, routedTokens: routedTokens, routedDecisions: routedDecisions,
                              lambdaRate: lambda1, lambdaEntropy: settings.lambdaEntropy, targetRatio: settings.targetRatio)
        trainer.collectsLogitGaps = collectLogitGaps
        trainer.temperature = settings.temperature
        try trainer.zeroGradients()
        var total = SequenceStatistics(layers: trainer.configuration.nLayers)
        for (index, i) in members.enumerated() {
            let example = examples[i]
            let noise = GumbelNoise(layers: trainer.configuration.nLayers, tokens: example.tokens.count,
                                    seed: noiseSeed(step: step, index: index))
            total.add(try trainer.run(example, noise: noise, mode: .hardGumbel, scale: scale,
                                      dropoutSeed: dropoutSeed(step: step, index: index)))
        }
        let gradient = RouterVector.flatten(try trainer.readGradients()) + (try trainer.readLoRAGradients()?.flatten() ?? [])
        if let bad = gradient.firstIndex(where: { !$0.isFinite }) {
            throw QTaleError.invalidArgument("step \(step): a gradient is not finite (index \(bad)); lower --lr or check the data")
        }
        let lr = settings.learningRate(step: step, totalSteps: plan.count)
        optimizer.update(&vector, gradient: gradient, learningRate: lr, settings: settings)
        try apply(vector)
        let report = StepReport(
            step: step, epoch: epoch, loss: total.loss(scale),
            crossEntropy: total.crossEntropySum / Double(max(1, scored)), rateLoss: total.rateSum / Double(max(1, routedTokens)),
            entropy: total.entropySum / Double(max(1, routedDecisions)), executionRatio: total.ratioSum / Double(max(1, total.routedTokens)),
            flipRate: Double(total.flips) / Double(max(1, routedDecisions)), lambdaRate: lambda1, learningRate: lr,
            tokens: tokens, seconds: Date().timeIntervalSince(started), statistics: total)
        step += 1
        return report
    }

    /// The trained routers, with provenance JSON (recipe, data, Ω, λ1, λ2, steps, seed).
    public func routers() -> RouterSet {
        var set = trainer.parameters
        set.configuration.provenance = provenanceJSON()
        return set
    }

    /// The trained LoRA adapters (`nil` for a routers-only run).
    public var lora: LoRASet? { trainer.lora }

    /// Writes the trained routers and, when trained, the LoRA adapters (``LoRASet``'s tensors and
    /// metadata) into one safetensors file, atomically. `RouterSet.load` reads its routers; `qtale
    /// merge-lora` folds its adapters into the model.
    public func saveOutput(to path: String) throws {
        var w = SafetensorsWriter()
        routers().add(to: &w)
        lora?.add(to: &w)
        try w.write(to: path)
    }

    public func provenanceJSON() -> String {
        var p: [String: Any] = provenance
        let s = settings
        p["recipe"] = "qtale train-routers: hard Gumbel-Softmax (straight-through), eviction mask, L_rate with sine ramp, entropy term, AdamW + warm-up + cosine"
        p["target_ratio"] = s.targetRatio
        p["lambda_rate"] = s.lambdaRate
        p["lambda_entropy"] = s.lambdaEntropy
        p["epochs"] = s.epochs
        p["lr"] = s.learningRate
        p["batch_tokens"] = s.batchTokens
        p["max_length"] = s.maxLength
        p["seed"] = Int(truncatingIfNeeded: s.seed)
        p["steps"] = step
        p["total_steps"] = plan.count
        p["examples"] = examples.count
        p["temperature"] = s.temperature
        if let l = s.lora {
            p["lora_rank"] = l.rank; p["lora_alpha"] = l.alpha; p["lora_dropout"] = l.dropout; p["lora_targets"] = "q,k,v"
        }
        let data = (try? JSONSerialization.data(withJSONObject: p, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: Checkpoints

    /// A fingerprint of the examples (token ids and scored flags), so a resume uses the same data.
    var dataFingerprint: String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        func mix(_ x: UInt64) { h = (h ^ x) &* 0x0000_0100_0000_01B3 }
        for e in examples {
            mix(UInt64(e.tokens.count))
            for (t, s) in zip(e.tokens, e.scored) { mix(UInt64(UInt32(bitPattern: t)) << 1 | (s ? 1 : 0)) }
        }
        return String(h, radix: 16)
    }

    var settingsJSON: String { settings.fingerprintJSON }

    /// Writes the routers, Adam moments, step and settings atomically (temporary file, then rename).
    /// The file is also a router file (`RouterSet.load` reads it).
    public func saveCheckpoint(to path: String) throws {
        var w = SafetensorsWriter()
        routers().add(to: &w)
        lora?.add(to: &w)
        w.add("train.adam_m", floats: optimizer.m, shape: [optimizer.m.count])
        w.add("train.adam_v", floats: optimizer.v, shape: [optimizer.v.count])
        w.metadata["qtale.train.step"] = "\(step)"
        w.metadata["qtale.train.adam_t"] = "\(optimizer.t)"
        w.metadata["qtale.train.settings"] = settingsJSON
        w.metadata["qtale.train.data"] = dataFingerprint
        w.metadata["qtale.train.total_steps"] = "\(plan.count)"
        w.metadata["qtale.train.rng"] = "SplitMix64: shuffle from (seed, epoch), Gumbel noise from (seed, step, sequence)"
        try w.write(to: path)
    }

    /// Restores a checkpoint written by ``saveCheckpoint(to:)`` for the same settings and data.
    public func resume(from path: String) throws {
        let file = try SafetensorsFile(path: path)
        guard let stepText = file.metadata["qtale.train.step"], let saved = Int(stepText),
              let adamText = file.metadata["qtale.train.adam_t"], let adamT = Int(adamText) else {
            throw QTaleError.invalidArgument("'\(path)' is not a qtale training checkpoint (no qtale.train.step)")
        }
        guard file.metadata["qtale.train.settings"] == settingsJSON else {
            throw QTaleError.invalidArgument("checkpoint '\(path)' was written with other settings: \(file.metadata["qtale.train.settings"] ?? "?")")
        }
        guard file.metadata["qtale.train.data"] == dataFingerprint else {
            throw QTaleError.invalidArgument("checkpoint '\(path)' was written for other training data")
        }
        guard saved <= plan.count else { throw QTaleError.invalidArgument("checkpoint '\(path)' is at step \(saved) of a \(plan.count)-step plan") }
        let c = trainer.configuration
        let set = try RouterSet.load(path: path, dModel: c.dModel, layers: c.nLayers)
        var flat = RouterVector.flatten(set)
        var restoredLoRA: LoRASet?
        if trainer.lora != nil {
            guard let stored = try LoRASet.load(path: path, model: c), stored.configuration == trainer.lora?.configuration else {
                throw QTaleError.invalidArgument("checkpoint '\(path)' has no LoRA adapters of rank \(settings.loraRank)")
            }
            restoredLoRA = stored
            flat += stored.flatten()
        }
        guard flat.count == vector.count else { throw QTaleError.invalidArgument("checkpoint '\(path)' has parameters of another shape") }
        let m = try file.floats(file.tensor("train.adam_m")), v = try file.floats(file.tensor("train.adam_v"))
        guard m.count == flat.count, v.count == flat.count else { throw QTaleError.invalidArgument("checkpoint '\(path)': Adam moments of the wrong size") }
        vector = flat
        optimizer = AdamW(count: 0)
        optimizer.m = m; optimizer.v = v; optimizer.t = adamT
        var restored = set
        restored.configuration.provenance = trainer.parameters.configuration.provenance
        try trainer.setParameters(restored)
        if let restoredLoRA { try trainer.setLoRA(restoredLoRA) }
        step = saved
    }
}
