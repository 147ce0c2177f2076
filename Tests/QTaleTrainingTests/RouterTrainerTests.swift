import Foundation
import QTaleCore
import QTaleCPU
import QTaleData
import QTaleModel
import QTaleReference
import QTaleTestSupport
@testable import QTaleTraining
import XCTest

/// Router training end to end on synthetic models: the whole router gradient against finite
/// differences, a tiny model that learns, checkpoint/resume, data and settings errors.
final class RouterTrainerTests: XCTestCase {
    static func tinyModel(layers: Int = 4, seed: UInt64 = 11) throws -> String {
        var shape = SyntheticModel.Shape()
        shape.layers = layers
        shape.dModel = 32
        shape.ffn = 64
        shape.heads = 4
        shape.kvHeads = 2
        shape.contextLength = 64
        return try SyntheticModel.write(shape: shape, seed: seed)
    }

    static func routerConfiguration(hidden: Int = 16) -> RouterConfiguration {
        RouterConfiguration(hidden: hidden, alwaysOnBlocks: 1, alwaysOnPositions: 2)
    }

    static func example(_ tokens: [Int32], promptLength: Int) -> TrainingExample {
        TrainingExample(tokens: tokens, scored: tokens.indices.map { $0 >= promptLength }, source: "test")
    }

    /// The whole router gradient (every routed block's w1, b1, norm, w2, b2, through the blend, the
    /// eviction mask, the residual stream into earlier routers, the rate and entropy terms) against
    /// central differences of the loss, with the soft Gumbel relaxation (a smooth function of the
    /// parameters) and fixed noise, on the float64 reference engine.
    ///
    /// Checked along random directions restricted to each tensor of each block (so a missing or wrong
    /// term in any one of them shows), and along the gradient itself.
    func testWholeRouterGradientMatchesFiniteDifferences() throws {
        let engine = ReferenceEngine()
        let model = try LoadedModel(path: Self.tinyModel(), engine: engine)
        let c = model.configuration
        var routers = try RouterSet.random(configuration: Self.routerConfiguration(), dModel: c.dModel, layers: c.nLayers, seed: 3)
        // Move the routers off the init so that decisions are mixed (soft gates far from 0 and 1).
        for l in routers.routers.indices where routers.routers[l] != nil { routers.routers[l]!.b2 = [0.3, 0.6 + 0.2 * Float(l)] }
        let trainer = try RouterTrainer(weights: model.weights, engine: engine, routers: routers, maxTokens: 16)
        let example = Self.example([40, 120, 77, 300 % 265, 5, 99, 17, 200, 64, 33, 12, 150], promptLength: 6)
        let counts = trainer.counts(of: example)
        let scale = LossScale(scoredTokens: counts.scored, routedTokens: counts.routedTokens, routedDecisions: counts.routedDecisions,
                              lambdaRate: 2.0, lambdaEntropy: 0.7, targetRatio: 0.3)
        let noise = GumbelNoise(layers: c.nLayers, tokens: example.tokens.count, seed: 99)

        try trainer.zeroGradients()
        let base = try trainer.run(example, noise: noise, mode: .softGumbel, scale: scale)
        let gradient = RouterVector.flatten(try trainer.readGradients()).map(Double.init)
        let theta = RouterVector.flatten(routers)
        XCTAssertGreaterThan(base.rateSum, 0)

        func loss(_ direction: [Double], _ h: Double) throws -> Double {
            let moved = zip(theta, direction).map { Float(Double($0) + h * $1) }
            try trainer.setParameters(RouterVector.unflatten(moved, like: routers))
            return try trainer.run(example, noise: noise, mode: .softGumbel, scale: scale, backward: false).loss(scale)
        }
        func check(_ name: String, _ direction: [Double], tolerance: Double) throws {
            let norm = direction.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let unit = direction.map { $0 / norm }
            let analytic = zip(gradient, unit).reduce(0) { $0 + $1.0 * $1.1 }
            let h = 2e-3
            let numeric = (try loss(unit, h) - loss(unit, -h)) / (2 * h)
            let gradientNorm = zip(gradient, direction).reduce(0) { $0 + ($1.1 != 0 ? $1.0 * $1.0 : 0) }.squareRoot()
            let error = abs(analytic - numeric) / max(gradientNorm, 1e-12)
            print(String(format: "router gradient %@: analytic %.6e numeric %.6e, error / |g| %.2e", name, analytic, numeric, error))
            XCTAssertGreaterThan(gradientNorm, 1e-5, "\(name): degenerate (zero gradient)")
            XCTAssertLessThan(error, tolerance, name)
        }
        var random = TestRandom(seed: 5)
        var offset = 0
        for l in trainer.routedBlocks {
            let r = routers.routers[l]!
            for (part, count) in [("w1", r.w1.count), ("b1", r.b1.count), ("norm", r.norm.count), ("w2", r.w2.count), ("b2", r.b2.count)] {
                var direction = [Double](repeating: 0, count: theta.count)
                for i in offset ..< offset + count { direction[i] = Double(random.normal()) }
                try check("block \(l) \(part)", direction, tolerance: 8e-3)
                offset += count
            }
        }
        try check("along the gradient", gradient, tolerance: 2e-3)
        try trainer.setParameters(routers)
    }

    /// Hard (straight-through) and soft forwards coincide where the gates are decisive (s ≈ 1): same loss
    /// and same gradients. So the hard path uses the same chain from ∂L/∂w to the parameters that the
    /// finite-difference check validates for the soft path; ∂L/∂w itself at 0/1 gates comes from the ops'
    /// own gate gradients (checked in GradientCheckTests).
    func testHardAndSoftGatesAgreeWhereDecisionsAreDecisive() throws {
        let engine = ReferenceEngine()
        let model = try LoadedModel(path: Self.tinyModel(), engine: engine)
        let c = model.configuration
        var routers = try RouterSet.random(configuration: Self.routerConfiguration(), dModel: c.dModel, layers: c.nLayers, seed: 3)
        for l in routers.routers.indices where routers.routers[l] != nil { routers.routers[l]!.b2 = [0, 40] }  // s ≈ 1
        let trainer = try RouterTrainer(weights: model.weights, engine: engine, routers: routers, maxTokens: 16)
        let example = Self.example([40, 120, 77, 35, 5, 99, 17, 200], promptLength: 3)
        let counts = trainer.counts(of: example)
        let scale = LossScale(scoredTokens: counts.scored, routedTokens: counts.routedTokens, routedDecisions: counts.routedDecisions,
                              lambdaRate: 1, lambdaEntropy: 0.1, targetRatio: 0.5)
        let noise = GumbelNoise.zeros(layers: c.nLayers, tokens: example.tokens.count)
        try trainer.zeroGradients()
        let hard = try trainer.run(example, noise: noise, mode: .hardGumbel, scale: scale)
        let gHard = RouterVector.flatten(try trainer.readGradients())
        try trainer.zeroGradients()
        let soft = try trainer.run(example, noise: noise, mode: .softGumbel, scale: scale)
        let gSoft = RouterVector.flatten(try trainer.readGradients())
        XCTAssertEqual(hard.loss(scale), soft.loss(scale), accuracy: 1e-5)
        let diff = zip(gHard, gSoft).map { abs($0 - $1) }.max()!, size = gSoft.map(abs).max()!
        XCTAssertLessThanOrEqual(diff, 1e-4 * max(size, 1e-6))
    }

    static func tinyData() -> [TrainingExample] {
        // A learnable toy task: the response repeats the prompt's last tokens.
        var random = TestRandom(seed: 17)
        return (0..<12).map { i in
            let prompt = (0..<6).map { _ in Int32(3 + random.next() % 200) }
            return example(prompt + Array(prompt.suffix(4)), promptLength: 6)
        }
    }

    static func tinySettings() -> RouterTrainingSettings {
        var s = RouterTrainingSettings()
        s.targetRatio = 0.5
        s.lambdaRate = 5
        s.lambdaEntropy = 0.05
        s.epochs = 16
        s.learningRate = 0.1
        s.batchTokens = 40
        s.maxLength = 16
        s.seed = 4
        s.routerHidden = 16
        s.alwaysOnBlocks = 1
        s.alwaysOnPositions = 2
        s.warmupFraction = 0.1
        return s
    }

    static func makeRun(engine: CPUEngine, model: LoadedModel, settings: RouterTrainingSettings) throws -> RouterTrainingRun {
        let c = model.configuration
        let routers = try RouterSet.random(configuration: RouterConfiguration(hidden: settings.routerHidden, alwaysOnBlocks: settings.alwaysOnBlocks,
                                                                               alwaysOnPositions: settings.alwaysOnPositions),
                                           dModel: c.dModel, layers: c.nLayers, seed: settings.seed)
        let trainer = try RouterTrainer(weights: model.weights, engine: engine, routers: routers, maxTokens: settings.maxLength)
        return try RouterTrainingRun(trainer: trainer, examples: tinyData(), settings: settings)
    }

    /// A tiny model's loss falls and its execution ratio moves from the init (~0.9) toward Ω.
    func testTinyModelLearnsAndApproachesTheTargetRatio() throws {
        let engine = try CPUEngine(threads: 2)
        let model = try LoadedModel(path: Self.tinyModel(layers: 6), engine: engine)
        let run = try Self.makeRun(engine: engine, model: model, settings: Self.tinySettings())
        var reports: [StepReport] = []
        while !run.isFinished { reports.append(try run.trainStep()) }
        for r in reports where r.step % 4 == 0 || r.step == reports.count - 1 {
            print(String(format: "step %2d: loss %.4f CE %.4f rate %.4f H %.3f ratio %.3f flips %.3f λ1 %.2f lr %.2e",
                         r.step, r.loss, r.crossEntropy, r.rateLoss, r.entropy, r.executionRatio, r.flipRate, r.lambdaRate, r.learningRate))
        }
        let first = reports.prefix(3), last = reports.suffix(3)
        let ratioStart = first.map(\.executionRatio).reduce(0, +) / 3, ratioEnd = last.map(\.executionRatio).reduce(0, +) / 3
        let rateStart = first.map(\.rateLoss).reduce(0, +) / 3, rateEnd = last.map(\.rateLoss).reduce(0, +) / 3
        XCTAssertGreaterThan(ratioStart, 0.8)
        XCTAssertLessThan(abs(ratioEnd - 0.5), 0.12, "the execution ratio should approach Ω = 0.5")
        XCTAssertLessThan(rateEnd, rateStart / 2)
        // The total loss at a fixed λ1 (the last one) falls: compare the loss recomputed from its terms.
        let lambda = reports.last!.lambdaRate
        func fixed(_ r: StepReport) -> Double { r.crossEntropy + lambda * r.rateLoss - 0.05 * r.entropy }
        XCTAssertLessThan(last.map(fixed).reduce(0, +), first.map(fixed).reduce(0, +))
    }

    /// A run stopped after k steps, checkpointed and resumed in a fresh trainer equals the uninterrupted
    /// run bit for bit.
    func testResumedRunEqualsUninterruptedRun() throws {
        var settings = Self.tinySettings()
        settings.epochs = 2
        let path = TemporaryFiles.path("resume-\(UUID().uuidString).safetensors")
        let engineA = try CPUEngine(threads: 2)
        let modelA = try LoadedModel(path: Self.tinyModel(layers: 4), engine: engineA)
        let whole = try Self.makeRun(engine: engineA, model: modelA, settings: settings)
        var lossesWhole: [Double] = []
        while !whole.isFinished { lossesWhole.append(try whole.trainStep().loss) }

        let engineB = try CPUEngine(threads: 2)
        let modelB = try LoadedModel(path: Self.tinyModel(layers: 4), engine: engineB)
        let first = try Self.makeRun(engine: engineB, model: modelB, settings: settings)
        var lossesResumed: [Double] = []
        for _ in 0..<3 { lossesResumed.append(try first.trainStep().loss) }
        try first.saveCheckpoint(to: path)

        let engineC = try CPUEngine(threads: 2)
        let modelC = try LoadedModel(path: Self.tinyModel(layers: 4), engine: engineC)
        let second = try Self.makeRun(engine: engineC, model: modelC, settings: settings)
        try second.resume(from: path)
        XCTAssertEqual(second.step, 3)
        while !second.isFinished { lossesResumed.append(try second.trainStep().loss) }
        XCTAssertEqual(lossesResumed, lossesWhole)
        let a = RouterVector.flatten(whole.routers()), b = RouterVector.flatten(second.routers())
        XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "parameters differ after resume")
        XCTAssertEqual(whole.optimizer, second.optimizer)
        print("resume: \(lossesWhole.count) steps, stopped after 3, final parameters equal bit for bit")

        // The checkpoint is a router file; other settings are refused.
        XCTAssertNoThrow(try RouterSet.load(path: path, dModel: modelA.configuration.dModel, layers: modelA.configuration.nLayers))
        var other = settings
        other.seed = 5
        let third = try Self.makeRun(engine: engineC, model: modelC, settings: other)
        XCTAssertThrowsError(try third.resume(from: path)) { XCTAssertTrue("\($0)".contains("other settings"), "\($0)") }
    }

    func testInvalidSettingsAndDataGetClearErrors() throws {
        var s = Self.tinySettings()
        s.targetRatio = 1.5
        XCTAssertThrowsError(try s.validate(layers: 4)) { XCTAssertTrue("\($0)".contains("--target-ratio"), "\($0)") }
        s = Self.tinySettings(); s.targetRatio = 0.1
        XCTAssertThrowsError(try s.validate(layers: 4)) { XCTAssertTrue("\($0)".contains("always-on"), "\($0)") }
        s = Self.tinySettings(); s.lambdaRate = -1
        XCTAssertThrowsError(try s.validate(layers: 4)) { XCTAssertTrue("\($0)".contains("--lambda-rate"), "\($0)") }
        s = Self.tinySettings(); s.learningRate = 0
        XCTAssertThrowsError(try s.validate(layers: 4)) { XCTAssertTrue("\($0)".contains("--lr"), "\($0)") }
        s = Self.tinySettings(); s.epochs = 0
        XCTAssertThrowsError(try s.validate(layers: 4)) { XCTAssertTrue("\($0)".contains("--epochs"), "\($0)") }

        XCTAssertThrowsError(try TrainingDataSource.parse("foo:bar.jsonl")) { XCTAssertTrue("\($0)".contains("unknown kind 'foo'"), "\($0)") }
        XCTAssertThrowsError(try TrainingDataSource.parse("data.bin")) { XCTAssertTrue("\($0)".contains("say what it is"), "\($0)") }
        XCTAssertEqual(try TrainingDataSource.parse("arc_easy:/x/y.jsonl"), .task(.arcEasy, "/x/y.jsonl"))
        XCTAssertEqual(try TrainingDataSource.parse("/x/y.jsonl"), .jsonl("/x/y.jsonl"))
        XCTAssertEqual(try TrainingDataSource.parse("/x/valid.txt"), .text("/x/valid.txt"))

        let bad = TemporaryFiles.path("bad-\(UUID().uuidString).jsonl")
        try "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": 1}\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let builder = TrainingExampleBuilder(maxLength: 16) { $0.utf8.map { Int32($0) } }
        XCTAssertThrowsError(try builder.examples(from: .jsonl(bad))) { XCTAssertTrue("\($0)".contains(":2:"), "\($0)") }
        XCTAssertThrowsError(try builder.examples(from: .jsonl("/nonexistent.jsonl"))) { XCTAssertTrue("\($0)".contains("does not exist"), "\($0)") }
    }

    func testExamplesScoreOnlyTheResponse() throws {
        let builder = TrainingExampleBuilder(maxLength: 12) { $0.utf8.map { Int32($0) } }
        let e = try XCTUnwrap(builder.example(PromptResponse(prompt: "Q: x\nA: ", response: "yes"), source: "t"))
        // Trailing whitespace of the prompt moves to the response (lm-eval's split).
        XCTAssertEqual(e.tokens.count, 11)
        XCTAssertEqual(e.scored, [false, false, false, false, false, false, false, true, true, true, true])
        // Too long: the prompt loses tokens on the left, the response stays.
        let long = try XCTUnwrap(builder.example(PromptResponse(prompt: "0123456789abcdef", response: " ok"), source: "t"))
        XCTAssertEqual(long.tokens.count, 12)
        XCTAssertEqual(long.scoredCount, 3)
        // Multiple-choice: the gold answer's continuation is the response.
        let q = MultipleChoiceQuestion(id: "1", query: "2+2?", choices: ["3", "4"], answer: 1, location: "f:1")
        let pairs = TrainingExampleBuilder.pairs(task: .arcEasy, questions: [q])
        XCTAssertEqual(pairs[0].pair, PromptResponse(prompt: "Question: 2+2?\nAnswer:", response: " 4"))
        // Plain text is cut into full-length sequences, all scored.
        let text = TemporaryFiles.path("t-\(UUID().uuidString).txt")
        try String(repeating: "abcde", count: 5).write(toFile: text, atomically: true, encoding: .utf8)
        let chunks = try builder.examples(from: .text(text))
        XCTAssertEqual(chunks.map(\.tokens.count), [12, 12, 1].filter { $0 >= 2 })
        XCTAssertTrue(chunks.allSatisfy { $0.scoredCount == $0.tokens.count - 1 })
    }
}
