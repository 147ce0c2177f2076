import Foundation
import QTaleCore
import QTaleModel
import QTaleQuantize
import XCTest

/// Quantized SmolLM2 files run on every engine: RTN at w3g128 (d_model 576 leaves a short last group of
/// 64) and w4g64, written to qtale's format, loaded on OpenCL and Vulkan, and compared with the CPU engine
/// on first-step logits. Skips where an engine is unavailable, except in CI (CI=true).
final class QuantizedModelEngineTests: XCTestCase {
    static let prompts = ["The capital of France is", "def fibonacci(n):\n    ", "Once upon a time, in a land far away,"]

    func testQuantizedRealModelRunsOnEveryEngine() throws {
        let override = ProcessInfo.processInfo.environment["QTALE_MODEL_PATH"] ?? ""
        let path = override.isEmpty ? try ModelLocator.resolve(ModelLocator.defaultModelName) { print($0) } : override
        let source = try ModelSources.open(path)
        for (bits, group) in [(3, 128), (4, 64)] {
            let quantizer = try ModelQuantizer(source: source, engine: EngineRegistry.make("cpu", threads: 2),
                                               settings: QuantizationSettings(method: .rtn, bits: bits, groupSize: group))
            _ = try quantizer.run(calibration: nil) { _, _ in }
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("smollm2-rtn-w\(bits)g\(group)-\(getpid()).safetensors").path
            defer { try? FileManager.default.removeItem(atPath: file) }
            try QTaleModelFile.write(to: file, configuration: source.configuration, vocabulary: source.vocabulary(),
                                     routers: nil, quantization: nil, tensor: quantizer.tensor)
            let cpu = try LoadedModel(path: file, engine: EngineRegistry.make("cpu", threads: 2))
            let tokens = Self.prompts.map { cpu.tokenizer.encode($0) }
            let expected = try tokens.map { try cpu.makeSession(contextLength: 256).forward($0) }
            for backend in ["opencl", "vulkan"] {
                let probe = try XCTUnwrap(EngineRegistry.entries.first { $0.name == backend }).probe()
                guard probe.isAvailable else {
                    let reason = "\(backend) engine unavailable: \(probe.unavailableReason ?? "no device")"
                    if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(reason) }
                    continue
                }
                let gpu = try LoadedModel(path: file, engine: EngineRegistry.make(backend, threads: 2))
                for (ids, reference) in zip(tokens, expected) {
                    let logits = try gpu.makeSession(contextLength: 256).forward(ids)
                    var e = 0.0, r = 0.0
                    for (x, y) in zip(logits, reference) { e += Double(x - y) * Double(x - y); r += Double(y) * Double(y) }
                    XCTAssertLessThanOrEqual(e / r, 1e-5, "w\(bits)g\(group) on \(backend)")
                    XCTAssertEqual(logits.indices.max { logits[$0] < logits[$1] }, reference.indices.max { reference[$0] < reference[$1] },
                                   "w\(bits)g\(group) on \(backend): greedy token")
                }
            }
        }
    }
}
