import QTaleCore
import QTaleModel
import XCTest

/// SmolLM2-135M-Instruct Q4_1 against llama.cpp: tokenizer ids, greedy continuations and first-step logits.
final class LlamaCppGoldenTests: XCTestCase {
    func testTokenizerMatchesLlamaCpp() throws {
        let model = try RealModel.load()
        let goldens = try Goldens.load("tokenizer", as: Goldens.Tokenizer.self)
        XCTAssertGreaterThanOrEqual(goldens.cases.count, 30)
        for c in goldens.cases {
            XCTAssertEqual(model.tokenizer.encode(c.text, parseSpecial: true), c.ids, "tokenizing \(c.text.debugDescription)")
        }
    }

    func testGreedyGenerationMatchesLlamaCpp() throws {
        let model = try RealModel.load()
        let goldens = try Goldens.load("generation", as: Goldens.Generation.self)
        XCTAssertGreaterThanOrEqual(goldens.cases.count, 3)
        let session = try model.makeSession(contextLength: 512)
        for c in goldens.cases {
            XCTAssertEqual(model.tokenizer.encode(c.prompt, parseSpecial: true), c.prompt_ids)
            var generated: [Int32] = []
            _ = try TextGenerator(model: model, session: session).generate(
                prompt: c.prompt_ids, maxTokens: c.generated_ids.count, sampling: SamplingParameters(temperature: 0),
                stopAtEndOfGeneration: false, onToken: { generated.append($0) }, onText: { _ in })
            XCTAssertEqual(generated, c.generated_ids, "greedy continuation of \(c.prompt.debugDescription)")
        }
    }

    /// The goldens come from llama.cpp running the exact float32 dequantization of the Q4_1 file (see
    /// scripts/make_goldens.py): the same weights, so the only difference is float32 rounding order.
    func testFirstStepLogitsMatchLlamaCpp() throws {
        let model = try RealModel.load()
        let goldens = try Goldens.load("logits", as: Goldens.Logits.self)
        let session = try model.makeSession(contextLength: 512)
        for c in goldens.cases {
            session.reset()
            let ours = try session.forward(c.prompt_ids)
            let theirs = c.logits
            XCTAssertEqual(ours.count, theirs.count)
            var squaredError = 0.0, squaredReference = 0.0, maxError = 0.0
            for (a, b) in zip(ours, theirs) {
                squaredError += Double(a - b) * Double(a - b)
                squaredReference += Double(b) * Double(b)
                maxError = max(maxError, Double(abs(a - b)))
            }
            let nmse = squaredError / squaredReference
            print("first-step logits vs llama.cpp for \(c.prompt.prefix(30).debugDescription): max|Δ| = \(maxError), NMSE = \(nmse)")
            XCTAssertEqual(Sampler.argmax(ours.withUnsafeBufferPointer { $0 }), c.argmax)
            XCTAssertLessThan(nmse, 1e-9)
            XCTAssertLessThan(maxError, 2e-3)
        }
    }
}
