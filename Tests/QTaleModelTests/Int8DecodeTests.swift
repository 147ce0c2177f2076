import Foundation
import QTaleCore
import QTaleCPU
import QTaleModel
import XCTest

/// SmolLM2-135M on the `cpu-int8` engine against the float32 `cpu` engine: both prefill the golden
/// prompts in float32 (identical), then decode llama.cpp's greedy continuations token by token (teacher
/// forcing, so the two see the same inputs). int8 activations in the 4-bit decode matmuls move the logits
/// about as much as llama.cpp's do (bounds below), keep the greedy token almost always, and must change
/// the logits at every step (the int8 path ran).
final class Int8DecodeTests: XCTestCase {
    func testInt8DecodeLogitsStayCloseToFloat32() throws {
        guard CPUEngine.int8DecodeAvailable else { throw XCTSkip("int8 decode needs AVX-512 VNNI and a native build on such a CPU") }
        let exact = try RealModel.load(), int8 = try RealModel.load(backend: "cpu-int8")
        let goldens = try Goldens.load("generation", as: Goldens.Generation.self)
        var errors: [Double] = [], sameArgmax = 0, steps = 0
        for c in goldens.cases {
            let a = try exact.makeSession(contextLength: 512), b = try int8.makeSession(contextLength: 512)
            XCTAssertEqual(try a.forward(c.prompt_ids), try b.forward(c.prompt_ids), "prefill is float32 on both")
            var x = [Float](repeating: 0, count: exact.configuration.vocabSize), y = x
            for token in c.generated_ids.prefix(16) {
                try x.withUnsafeMutableBufferPointer { try a.forward(token: token, into: $0) }
                try y.withUnsafeMutableBufferPointer { try b.forward(token: token, into: $0) }
                var e = 0.0, r = 0.0
                for (p, q) in zip(y, x) { e += Double(p - q) * Double(p - q); r += Double(q) * Double(q) }
                errors.append(e / r)
                let greedy = x.withUnsafeBufferPointer { Sampler.argmax($0) }
                if greedy == y.withUnsafeBufferPointer({ Sampler.argmax($0) }) { sameArgmax += 1 }
                steps += 1
            }
        }
        errors.sort()
        let median = errors[errors.count / 2], worst = errors.last!
        // Measured on SmolLM2 (64 steps): median 3e-3, worst 0.12, argmax kept in 62; llama.cpp's own int8
        // activations move this model's logits by 1e-4 to 2e-2. A wrong scale or layout gives NMSE near 1.
        XCTAssertLessThanOrEqual(median, 1e-2)
        XCTAssertLessThanOrEqual(worst, 0.3)
        XCTAssertGreaterThanOrEqual(Double(sameArgmax), 0.9 * Double(steps))
        XCTAssertGreaterThan(errors.first!, 0, "int8 decode left some step's logits bit-identical: the int8 path did not run")
        print("cpu-int8 vs cpu decode logits over \(steps) steps: median NMSE \(median), worst \(worst), same argmax \(sameArgmax)/\(steps)")
    }
}
