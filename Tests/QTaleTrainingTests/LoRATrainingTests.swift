import Foundation
import QTaleCore
import QTaleCPU
import QTaleModel
import QTaleReference
import QTaleSafetensors
import QTaleTestSupport
@testable import QTaleTraining
import XCTest

/// LoRA on q, k, v during router training: the A and B gradients against finite differences, a tiny
/// model that learns through them, bit-exact resume, and the merge into a float model.
final class LoRATrainingTests: XCTestCase {
    typealias Tests = RouterTrainerTests

    /// Adapters with `B` drawn at random (nonzero, so `∂L/∂A ≠ 0`) on top of the seeded init.
    static func perturbedLoRA(_ c: LlamaConfiguration, configuration: LoRAConfiguration, seed: UInt64, size: Float) throws -> LoRASet {
        var lora = try LoRASet.random(configuration: configuration, model: c, seed: seed)
        var random = TestRandom(seed: seed &+ 1)
        for l in lora.adapters.indices {
            for t in lora.adapters[l].indices {
                lora.adapters[l][t].b = lora.adapters[l][t].b.map { _ in random.normal() * size }
            }
        }
        return lora
    }

    /// The whole gradient of routers and LoRA (A and B of q, k, v of every block, through RoPE, the
    /// gated attention, the blend, dropout and the scale α/r) against central differences, on the
    /// float64 reference with the soft Gumbel relaxation and fixed noise and dropout masks (the loss is
    /// then a smooth function of the parameters). Checked from the init (B = 0, so ∂L/∂A = 0 exactly)
    /// and from a perturbed B.
    func testLoRAGradientMatchesFiniteDifferences() throws {
        let engine = ReferenceEngine()
        let model = try LoadedModel(path: Tests.tinyModel(layers: 3), engine: engine)
        let c = model.configuration
        var routers = try RouterSet.random(configuration: Tests.routerConfiguration(), dModel: c.dModel, layers: c.nLayers, seed: 3)
        for l in routers.routers.indices where routers.routers[l] != nil { routers.routers[l]!.b2 = [0.3, 0.6 + 0.2 * Float(l)] }
        let configuration = LoRAConfiguration(rank: 3, alpha: 6, dropout: 0.25)  // scale 2, dropout on
        let example = Tests.example([40, 120, 77, 35, 5, 99, 17, 200, 64, 33, 12, 150], promptLength: 5)
        let noise = GumbelNoise(layers: c.nLayers, tokens: example.tokens.count, seed: 99)
        let dropoutSeed: UInt64 = 1234

        for (label, size) in [("init (B = 0)", Float(0)), ("perturbed B", Float(0.3))] {
            let lora = try Self.perturbedLoRA(c, configuration: configuration, seed: 8, size: size)
            let trainer = try RouterTrainer(weights: model.weights, engine: engine, routers: routers, lora: lora, maxTokens: 16)
            let counts = trainer.counts(of: example)
            let scale = LossScale(scoredTokens: counts.scored, routedTokens: counts.routedTokens, routedDecisions: counts.routedDecisions,
                                  lambdaRate: 2.0, lambdaEntropy: 0.7, targetRatio: 0.3)
            try trainer.zeroGradients()
            _ = try trainer.run(example, noise: noise, mode: .softGumbel, scale: scale, dropoutSeed: dropoutSeed)
            let routerGradient = RouterVector.flatten(try trainer.readGradients()).map(Double.init)
            let loraGradient = try XCTUnwrap(trainer.readLoRAGradients()).flatten().map(Double.init)
            let gradient = routerGradient + loraGradient
            let theta = RouterVector.flatten(routers) + lora.flatten()
            let routerCount = routerGradient.count

            func loss(_ direction: [Double], _ h: Double) throws -> Double {
                let moved = zip(theta, direction).map { Float(Double($0) + h * $1) }
                try trainer.setParameters(RouterVector.unflatten(Array(moved[..<routerCount]), like: routers))
                try trainer.setLoRA(lora.unflatten(moved[routerCount...]))
                return try trainer.run(example, noise: noise, mode: .softGumbel, scale: scale, backward: false, dropoutSeed: dropoutSeed).loss(scale)
            }
            func check(_ name: String, _ direction: [Double], tolerance: Double, expectZero: Bool = false) throws {
                let norm = direction.reduce(0) { $0 + $1 * $1 }.squareRoot()
                let unit = direction.map { $0 / norm }
                let analytic = zip(gradient, unit).reduce(0) { $0 + $1.0 * $1.1 }
                // Central differences at h and h/2 with Richardson extrapolation (cancels the h² term: the
                // loss is strongly curved along the gradient once B ≠ 0).
                let h = 2e-3
                func central(_ h: Double) throws -> Double { (try loss(unit, h) - loss(unit, -h)) / (2 * h) }
                let numeric = (4 * (try central(h / 2)) - (try central(h))) / 3
                let gradientNorm = zip(gradient, direction).reduce(0) { $0 + ($1.1 != 0 ? $1.0 * $1.0 : 0) }.squareRoot()
                if expectZero {
                    print(String(format: "LoRA gradient %@ %@: analytic %.3e (exactly 0: %@) numeric %.3e", label, name, analytic,
                                 gradientNorm == 0 ? "yes" : "no", numeric))
                    XCTAssertEqual(gradientNorm, 0, "\(label) \(name): ∂L/∂A must be 0 while B = 0")
                    XCTAssertLessThan(abs(numeric), 1e-6, "\(label) \(name): the loss moves along A while B = 0")
                    return
                }
                let error = abs(analytic - numeric) / max(gradientNorm, 1e-12)
                print(String(format: "LoRA gradient %@ %@: analytic %.6e numeric %.6e, error / |g| %.2e", label, name, analytic, numeric, error))
                XCTAssertGreaterThan(gradientNorm, 1e-6, "\(label) \(name): degenerate (zero gradient)")
                XCTAssertLessThan(error, tolerance, "\(label) \(name)")
            }
            var random = TestRandom(seed: 5)
            var offset = routerCount
            for l in 0..<c.nLayers {
                for (t, target) in LoRATarget.allCases.enumerated() {
                    let adapter = lora.adapters[l][t]
                    for (part, count) in [("A", adapter.a.count), ("B", adapter.b.count)] {
                        var direction = [Double](repeating: 0, count: theta.count)
                        for i in offset ..< offset + count { direction[i] = Double(random.normal()) }
                        try check("block \(l) \(target.rawValue).\(part)", direction, tolerance: 8e-3, expectZero: size == 0 && part == "A")
                        offset += count
                    }
                }
            }
            XCTAssertEqual(offset, theta.count)
            var loraOnly = gradient
            for i in 0..<routerCount { loraOnly[i] = 0 }
            try check("along the LoRA gradient", loraOnly, tolerance: 2e-3)
            try check("along the whole gradient", gradient, tolerance: 2e-3)
        }
    }

    static func loraSettings(rank: Int) -> RouterTrainingSettings {
        var s = Tests.tinySettings()
        s.loraRank = rank
        s.learningRate = 0.02
        return s
    }

    static func makeRun(engine: CPUEngine, model: LoadedModel, settings: RouterTrainingSettings) throws -> RouterTrainingRun {
        let c = model.configuration
        let routers = try RouterSet.random(configuration: RouterConfiguration(hidden: settings.routerHidden, alwaysOnBlocks: settings.alwaysOnBlocks,
                                                                               alwaysOnPositions: settings.alwaysOnPositions),
                                           dModel: c.dModel, layers: c.nLayers, seed: settings.seed)
        let lora = try settings.lora.map { try LoRASet.random(configuration: $0, model: c, seed: settings.seed) }
        let trainer = try RouterTrainer(weights: model.weights, engine: engine, routers: routers, lora: lora, maxTokens: settings.maxLength)
        return try RouterTrainingRun(trainer: trainer, examples: Tests.tinyData(), settings: settings)
    }

    /// With LoRA the tiny model's cross-entropy falls, and ends below a routers-only run of the same recipe.
    func testTinyModelWithLoRALowersTheLoss() throws {
        func train(rank: Int) throws -> [StepReport] {
            let engine = try CPUEngine(threads: 2)
            let model = try LoadedModel(path: Tests.tinyModel(layers: 4), engine: engine)
            let run = try Self.makeRun(engine: engine, model: model, settings: Self.loraSettings(rank: rank))
            var reports: [StepReport] = []
            while !run.isFinished { reports.append(try run.trainStep()) }
            return reports
        }
        let withLoRA = try train(rank: 4), without = try train(rank: 0)
        func mean(_ r: ArraySlice<StepReport>) -> Double { r.map(\.crossEntropy).reduce(0, +) / Double(r.count) }
        let start = mean(withLoRA.prefix(3)), end = mean(withLoRA.suffix(3)), routersOnly = mean(without.suffix(3))
        print(String(format: "LoRA training: CE %.4f → %.4f over %d steps (routers only: %.4f → %.4f); final ratio %.3f",
                     start, end, withLoRA.count, mean(without.prefix(3)), routersOnly, withLoRA.last!.executionRatio))
        XCTAssertLessThan(end, start * 0.8, "LoRA should lower the cross-entropy")
        XCTAssertLessThan(end, routersOnly, "LoRA should beat routers alone")
    }

    /// With LoRA on, a run checkpointed after 3 steps and resumed in a fresh trainer equals the
    /// uninterrupted run bit for bit (routers, adapters, Adam state, losses); the output file holds both.
    func testResumeWithLoRAIsBitIdentical() throws {
        var settings = Self.loraSettings(rank: 2)
        settings.epochs = 2
        let path = TemporaryFiles.path("lora-resume-\(UUID().uuidString).safetensors")
        func fresh() throws -> RouterTrainingRun {
            let engine = try CPUEngine(threads: 2)
            return try Self.makeRun(engine: engine, model: LoadedModel(path: Tests.tinyModel(layers: 4), engine: engine), settings: settings)
        }
        let whole = try fresh()
        var lossesWhole: [Double] = []
        while !whole.isFinished { lossesWhole.append(try whole.trainStep().loss) }
        let first = try fresh()
        var lossesResumed: [Double] = []
        for _ in 0..<3 { lossesResumed.append(try first.trainStep().loss) }
        try first.saveCheckpoint(to: path)
        let second = try fresh()
        try second.resume(from: path)
        XCTAssertEqual(second.step, 3)
        while !second.isFinished { lossesResumed.append(try second.trainStep().loss) }
        XCTAssertEqual(lossesResumed, lossesWhole)
        XCTAssertEqual(RouterVector.flatten(whole.routers()).map(\.bitPattern), RouterVector.flatten(second.routers()).map(\.bitPattern))
        let a = try XCTUnwrap(whole.lora), b = try XCTUnwrap(second.lora)
        XCTAssertEqual(a.flatten().map(\.bitPattern), b.flatten().map(\.bitPattern), "LoRA differs after resume")
        XCTAssertEqual(whole.optimizer, second.optimizer)
        XCTAssertNotEqual(a.adapters[1][0].b, [Float](repeating: 0, count: a.adapters[1][0].b.count), "B should have trained")

        // A routers-only run refuses the LoRA checkpoint (other settings); the output file round-trips.
        var other = settings
        other.loraRank = 0
        let engine = try CPUEngine(threads: 2)
        let plain = try Self.makeRun(engine: engine, model: LoadedModel(path: Tests.tinyModel(layers: 4), engine: engine), settings: other)
        XCTAssertThrowsError(try plain.resume(from: path)) { XCTAssertTrue("\($0)".contains("other settings"), "\($0)") }
        let out = TemporaryFiles.path("lora-out-\(UUID().uuidString).safetensors")
        try whole.saveOutput(to: out)
        let c = whole.trainer.configuration
        XCTAssertEqual(try LoRASet.load(path: out, model: c), a)
        XCTAssertEqual(try RouterSet.load(path: out, dModel: c.dModel, layers: c.nLayers).routers, whole.routers().routers)
        let file = try SafetensorsFile(path: out)
        XCTAssertEqual(file.tensors["lora.2.k.a"]?.shape, [2, c.dModel])
        XCTAssertEqual(file.tensors["lora.2.v.b"]?.shape, [c.nKVHeads * c.headDim, 2])
        XCTAssertEqual(file.metadata["qtale.lora.targets"], "q,k,v")
    }

    /// The merged float model's logits (the inference forward, dense) equal the LoRA-augmented training
    /// forward (dropout off, every block executing) on a packed synthetic model, to float tolerance.
    func testMergedModelMatchesTheLoRAForward() throws {
        let engine = try CPUEngine(threads: 2)
        let path = try Tests.tinyModel(layers: 3)
        let model = try LoadedModel(path: path, engine: engine)
        let c = model.configuration
        let routers = try RouterSet.random(configuration: Tests.routerConfiguration(), dModel: c.dModel, layers: c.nLayers, seed: 3)
        let lora = try Self.perturbedLoRA(c, configuration: LoRAConfiguration(rank: 4, alpha: 8, dropout: 0.05), seed: 21, size: 0.5)
        let trainer = try RouterTrainer(weights: model.weights, engine: engine, routers: routers, lora: lora, maxTokens: 16)
        trainer.capturesLogits = true
        let tokens: [Int32] = [40, 120, 77, 35, 5, 99, 17, 200, 64, 33]
        let example = Tests.example(tokens, promptLength: 0)
        let counts = trainer.counts(of: example)
        let scale = LossScale(scoredTokens: counts.scored, routedTokens: counts.routedTokens, routedDecisions: counts.routedDecisions,
                              lambdaRate: 0, lambdaEntropy: 0, targetRatio: 0.5)
        let stats = try trainer.run(example, noise: .zeros(layers: c.nLayers, tokens: tokens.count), mode: .deterministic(threshold: -1),
                                    scale: scale, backward: false)
        XCTAssertEqual(stats.executed.reduce(0, +), stats.decisions.reduce(0, +), "every block should execute")
        let trained = trainer.capturedLogits
        let V = c.vocabSize
        XCTAssertEqual(trained.count, (tokens.count - 1) * V)

        let merged = TemporaryFiles.path("merged-\(UUID().uuidString).safetensors")
        try LoRAMerge.write(source: model.source, lora: lora, routers: routers, to: merged)
        let mergedModel = try LoadedModel(path: merged, engine: engine)
        for role in TensorRole.all(in: c) {
            if case .linear = role, case .packed = try mergedModel.source.tensor(role) { XCTFail("\(role) should be float") }
        }
        XCTAssertEqual(try mergedModel.source.routers(), routers)
        let inference = try mergedModel.makeSession(policy: .dense).forwardAllLogits(tokens)
        let base = try model.makeSession(policy: .dense).forwardAllLogits(tokens)
        var worst = 0.0, largest = 0.0, moved = 0.0
        for i in 0 ..< trained.count {
            worst = max(worst, Double(abs(trained[i] - inference[i])))
            largest = max(largest, Double(abs(inference[i])))
            moved = max(moved, Double(abs(base[i] - inference[i])))
        }
        print(String(format: "merge-lora: max |Δlogit| merged vs LoRA forward %.2e (largest logit %.2f; LoRA moves logits by up to %.2f)",
                     worst, largest, moved))
        XCTAssertGreaterThan(moved, 0.1, "the adapters should change the model")
        XCTAssertLessThan(worst, 1e-4 * max(1, largest))
    }
}
