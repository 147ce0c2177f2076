import QTaleCore
import QTaleModel
import QTaleTestSupport
import XCTest

/// The whole forward pass on a tiny random GGUF model: CPU engine against the float64 reference
/// engine, and the KV cache against recomputation.
final class SyntheticModelTests: XCTestCase {
    static let path = try! SyntheticModel.write(seed: 7)
    static let untiedPath: String = {
        var shape = SyntheticModel.Shape()
        shape.tiedOutput = false
        shape.layers = 3
        return try! SyntheticModel.write(shape: shape, seed: 8)
    }()
    let prompt: [Int32] = [1, 259, 44, 75, 90, 3, 120, 200, 261, 17, 5]

    func nmse(_ a: [Float], _ b: [Float]) -> Double {
        var e = 0.0, r = 0.0
        for (x, y) in zip(a, b) { e += Double(x - y) * Double(x - y); r += Double(y) * Double(y) }
        return e / r
    }

    func testCPUEngineMatchesReferenceEngine() throws {
        for path in [Self.path, Self.untiedPath] {
            let cpu = try LoadedModel(path: path, engine: EngineRegistry.make("cpu", threads: 2))
            let reference = try LoadedModel(path: path, engine: EngineRegistry.make("reference", threads: 1))
            let a = try cpu.makeSession().forward(prompt), b = try reference.makeSession().forward(prompt)
            XCTAssertLessThan(nmse(a, b), 1e-10)

            var tokensCPU: [Int32] = [], tokensReference: [Int32] = []
            for (model, sink) in [(cpu, 0), (reference, 1)] {
                _ = try TextGenerator(model: model, session: model.makeSession()).generate(
                    prompt: prompt, maxTokens: 12, sampling: SamplingParameters(temperature: 0), stopAtEndOfGeneration: false,
                    onToken: { if sink == 0 { tokensCPU.append($0) } else { tokensReference.append($0) } }, onText: { _ in })
            }
            XCTAssertEqual(tokensCPU.count, 12)
            XCTAssertEqual(tokensCPU, tokensReference)
        }
    }

    func testDecodingTokenByTokenMatchesOnePass() throws {
        let model = try LoadedModel(path: Self.path, engine: EngineRegistry.make("cpu", threads: 2))
        let whole = try model.makeSession().forward(prompt)
        let incremental = try model.makeSession()
        var last: [Float] = []
        for token in prompt { last = try incremental.forward([token]) }
        XCTAssertEqual(incremental.position, prompt.count)
        XCTAssertLessThan(nmse(last, whole), 1e-10)
        // A different history must give different logits (the cache is really used).
        let other = try model.makeSession().forward([5] + prompt.dropFirst())
        XCTAssertGreaterThan(nmse(other, whole), 1e-6)
    }

    func testPrefillInSmallPassesMatchesOnePass() throws {
        let model = try LoadedModel(path: Self.path, engine: EngineRegistry.make("cpu", threads: 2))
        let one = try model.makeSession(maxBatch: 64).forward(prompt)
        let split = try model.makeSession(maxBatch: 3).forward(prompt)
        XCTAssertLessThan(nmse(split, one), 1e-10)
    }

    func testFullContextIsAnErrorNotACrash() throws {
        let model = try LoadedModel(path: Self.path, engine: EngineRegistry.make("cpu", threads: 1))
        let session = try model.makeSession(contextLength: 8)
        XCTAssertThrowsError(try session.forward(prompt)) { error in
            XCTAssertTrue("\(error)".contains("context"), "\(error)")
        }
        XCTAssertThrowsError(try model.makeSession().forward([Int32(model.configuration.vocabSize)])) { error in
            XCTAssertTrue("\(error)".contains("outside the vocabulary"), "\(error)")
        }
        XCTAssertThrowsError(try model.makeSession(contextLength: 100_000))
    }
}

final class SamplerTests: XCTestCase {
    func testGreedyAndTopOnePickTheArgmax() {
        let logits: [Float] = [0.1, 2.5, -1, 2.4]
        logits.withUnsafeBufferPointer { l in
            var greedy = Sampler(parameters: SamplingParameters(temperature: 0), vocabularySize: 4)
            XCTAssertEqual(greedy.sample(l), 1)
            var topOne = Sampler(parameters: SamplingParameters(temperature: 5, topK: 1, seed: 3), vocabularySize: 4)
            for _ in 0..<20 { XCTAssertEqual(topOne.sample(l), 1) }
        }
    }

    func testSamplingFollowsTheSoftmaxAndIsReproducible() {
        // p = softmax([0, ln 3]) = [0.25, 0.75].
        let logits: [Float] = [0, Float(log(3.0)), -.infinity]
        var sampler = Sampler(parameters: SamplingParameters(temperature: 1, topK: 0, topP: 1, seed: 11), vocabularySize: 3)
        var again = Sampler(parameters: SamplingParameters(temperature: 1, topK: 0, topP: 1, seed: 11), vocabularySize: 3)
        var counts = [0, 0, 0]
        logits.withUnsafeBufferPointer { l in
            for _ in 0..<8000 {
                let t = sampler.sample(l)
                XCTAssertEqual(t, again.sample(l))
                counts[Int(t)] += 1
            }
        }
        XCTAssertEqual(counts[2], 0)
        XCTAssertEqual(Double(counts[1]) / 8000, 0.75, accuracy: 0.02)
    }

    func testTopPKeepsTheNucleus() {
        // p ≈ [0.665, 0.245, 0.09]: top-p 0.6 keeps only the first token.
        let logits: [Float] = [2, 1, 0]
        var sampler = Sampler(parameters: SamplingParameters(temperature: 1, topK: 0, topP: 0.6, seed: 5), vocabularySize: 3)
        logits.withUnsafeBufferPointer { l in
            for _ in 0..<200 { XCTAssertEqual(sampler.sample(l), 0) }
        }
    }
}
