import Foundation
import QTaleCore
import QTaleCPU
import QTaleModel
import XCTest

/// SmolLM2-135M's decode logits with the CPU engine's int8 decode modes against its float32 decode
/// (`cpu-f32`): both prefill the golden prompts in float32 (identical), then decode llama.cpp's greedy
/// continuations token by token (teacher forcing, so the engines see the same inputs).
final class Int8DecodeTests: XCTestCase {
    /// `cpu-int8`: one int8 term per pack moves the logits about as much as llama.cpp's int8 activations
    /// do (bounds below), keeps the greedy token almost always, and must change the logits at every step
    /// (the int8 path ran).
    func testInt8DecodeLogitsStayCloseToFloat32() throws {
        guard CPUEngine.int8DecodeAvailable else { throw XCTSkip("int8 decode needs AVX-512 VNNI and a native build on such a CPU") }
        let (errors, sameArgmax, steps) = try compareDecode("cpu-int8")
        let median = errors[errors.count / 2], worst = errors.last!
        // Measured on SmolLM2 (64 steps): median 3e-3, worst 0.06-0.12, argmax kept in 61-62; llama.cpp's own
        // int8 activations move this model's logits by 1e-4 to 2e-2. A wrong scale or layout gives NMSE near 1.
        XCTAssertLessThanOrEqual(median, 1e-2)
        XCTAssertLessThanOrEqual(worst, 0.3)
        XCTAssertGreaterThanOrEqual(Double(sameArgmax), 0.9 * Double(steps))
        XCTAssertGreaterThan(errors.first!, 0, "int8 decode left some step's logits bit-identical: the int8 path did not run")
        print("cpu-int8 vs cpu-f32 decode logits over \(steps) steps: median NMSE \(median), worst \(worst), same argmax \(sameArgmax)/\(steps)")
    }

    /// `cpu` with VNNI: three int8 terms per pack reproduce float32 decode to float32's own accuracy
    /// (measured over 64 steps: median NMSE 2e-11, worst 2e-10 to 4e-10, where one int8 term gives 3e-3), keep
    /// every greedy token, and are not bit-identical (the split path ran).
    func testSplitInt8DecodeLogitsMatchFloat32() throws {
        guard CPUEngine.int8DecodeAvailable else { throw XCTSkip("split-int8 decode needs AVX-512 VNNI and a native build on such a CPU") }
        let (errors, sameArgmax, steps) = try compareDecode("cpu")
        let worst = errors.last!
        // A wrong term base or shift gives NMSE near 1.
        XCTAssertLessThanOrEqual(worst, 1e-8)
        XCTAssertEqual(sameArgmax, steps)
        XCTAssertGreaterThan(errors.first!, 0, "split-int8 decode left some step's logits bit-identical: the split path did not run")
        print("cpu (split int8) vs cpu-f32 decode logits over \(steps) steps: median NMSE \(errors[errors.count / 2]), worst \(worst)")
    }

    /// Per-step logit NMSE (sorted) of `backend` against `cpu-f32` over the golden continuations' first 16
    /// tokens, and how many steps kept the greedy token.
    private func compareDecode(_ backend: String) throws -> (errors: [Double], sameArgmax: Int, steps: Int) {
        let exact = try RealModel.load(backend: "cpu-f32"), other = try RealModel.load(backend: backend)
        let goldens = try Goldens.load("generation", as: Goldens.Generation.self)
        var errors: [Double] = [], sameArgmax = 0, steps = 0
        for c in goldens.cases {
            let a = try exact.makeSession(contextLength: 512), b = try other.makeSession(contextLength: 512)
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
        return (errors.sorted(), sameArgmax, steps)
    }
}
