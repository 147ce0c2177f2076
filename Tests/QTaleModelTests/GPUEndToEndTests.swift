import Foundation
import QTaleCore
import QTaleModel
import XCTest

/// SmolLM2-135M on the OpenCL and Vulkan engines against the CPU engine: the same greedy tokens for the
/// golden prompts and first-step logits within NMSE 1e-5. Skips where an engine is unavailable, except
/// in CI (CI=true), where PoCL and llvmpipe are installed.
final class GPUEndToEndTests: XCTestCase {
    func testOpenCLMatchesCPU() throws { try compare("opencl") }
    func testVulkanMatchesCPU() throws { try compare("vulkan") }

    private func compare(_ backend: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let entry = try XCTUnwrap(EngineRegistry.entries.first { $0.name == backend })
        let probe = entry.probe()
        guard probe.isAvailable else {
            let reason = "\(backend) engine unavailable: \(probe.unavailableReason ?? "no device")"
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(reason, file: file, line: line) }
            throw XCTSkip(reason)
        }
        let cpu = try RealModel.load(), gpu = try RealModel.load(backend: backend)
        let goldens = try Goldens.load("generation", as: Goldens.Generation.self)
        var worstNMSE = 0.0, worstMax = 0.0
        for c in goldens.cases {
            let a = try cpu.makeSession(contextLength: 512).forward(c.prompt_ids)
            let b = try gpu.makeSession(contextLength: 512).forward(c.prompt_ids)
            var e = 0.0, r = 0.0, m = 0.0
            for (x, y) in zip(b, a) { e += Double(x - y) * Double(x - y); r += Double(y) * Double(y); m = max(m, Double(abs(x - y))) }
            worstNMSE = max(worstNMSE, e / r)
            worstMax = max(worstMax, m)
            XCTAssertLessThanOrEqual(e / r, 1e-5, "first-step logits of \(c.prompt.prefix(30).debugDescription)", file: file, line: line)

            var generated: [Int32] = []
            _ = try TextGenerator(model: gpu, session: gpu.makeSession(contextLength: 512)).generate(
                prompt: c.prompt_ids, maxTokens: c.generated_ids.count, sampling: SamplingParameters(temperature: 0),
                stopAtEndOfGeneration: false, onToken: { generated.append($0) }, onText: { _ in })
            XCTAssertEqual(generated, c.generated_ids, "\(backend) greedy continuation of \(c.prompt.prefix(30).debugDescription)",
                           file: file, line: line)
        }
        print("\(backend) vs cpu first-step logits: worst NMSE \(worstNMSE), worst max|Δ| \(worstMax)")
    }
}
