import Foundation
import QTaleModel
import QTaleSafetensors
import QTaleTestSupport
import XCTest

/// `qtale train-routers` (routers only and with LoRA) and `qtale merge-lora` end to end on a synthetic
/// model: the router file loads in `generate --routers`, the merged float model runs routed by default
/// and `quantize --method rtn` accepts it; bad flags fail with a message.
final class TrainRoutersCLITests: XCTestCase {
    static var cached: (model: String, data: String)?

    /// A 3-block synthetic model and a small prompt/response JSONL file.
    static func fixtures() throws -> (model: String, data: String) {
        if let cached { return cached }
        var shape = SyntheticModel.Shape()
        shape.layers = 3
        let model = try SyntheticModel.write(shape: shape, seed: 23)
        let data = TemporaryFiles.path("train-cli-\(UUID().uuidString.prefix(8)).jsonl")
        let lines = (0..<8).map { i in "{\"prompt\": \"Question \(i): the answer is\", \"response\": \" \(i * 7 % 10) then the end\"}" }
        try (lines.joined(separator: "\n") + "\n").write(toFile: data, atomically: true, encoding: .utf8)
        cached = (model, data)
        return (model, data)
    }

    func train(_ output: String, maxSteps: Int = 3, extra: [String]) throws -> CLI.Result {
        let (model, data) = try Self.fixtures()
        return try CLI.run(["train-routers", "-m", model, "--data", "jsonl:" + data, "--threads", "1", "--max-length", "32",
                            "--batch-tokens", "64", "--router-hidden", "8", "--always-on-blocks", "1", "--epochs", "2",
                            "--max-steps", "\(maxSteps)", "--lr", "0.01", "--seed", "2", "--no-progress", "-o", output] + extra, timeout: 300)
    }

    func testTrainRoutersWithLoRAThenMergeQuantizeAndGenerate() throws {
        let (model, _) = try Self.fixtures()
        let routers = TemporaryFiles.path("cli-lora-routers-\(UUID().uuidString.prefix(8)).safetensors")
        let trained = try train(routers, extra: ["--lora-rank", "4", "--lora-alpha", "8", "--lora-dropout", "0.1",
                                                 "--checkpoint", routers + ".ck", "--checkpoint-every", "2"])
        XCTAssertEqual(trained.status, 0, trained.summary)
        XCTAssertTrue(trained.stderr.contains("LoRA rank 4 on q,k,v"), trained.summary)
        XCTAssertTrue(trained.stderr.contains("after 3 of"), trained.summary)
        let file = try SafetensorsFile(path: routers)
        XCTAssertEqual(file.metadata["qtale.lora.rank"], "4")
        XCTAssertEqual(file.metadata["qtale.lora.alpha"], "8.0")
        XCTAssertEqual(file.tensors["lora.0.q.a"]?.shape, [4, 64])
        XCTAssertEqual(file.tensors["lora.2.v.b"]?.shape, [32, 4])
        XCTAssertNotNil(file.tensors["router.1.w1"])

        // The router file loads in generate, which says that it does not apply the LoRA tensors.
        let generated = try CLI.run(["generate", "-m", model, "--routers", routers, "-p", "hi", "--max-tokens", "4",
                                     "--temperature", "0", "--threads", "1"])
        XCTAssertEqual(generated.status, 0, generated.summary)
        XCTAssertTrue(generated.stderr.contains("execution ratio"), generated.summary)
        XCTAssertTrue(generated.stderr.contains("LoRA adapters, which are not applied"), generated.summary)

        // Resume continues to the end of a longer run from the checkpoint.
        let resumed = try train(routers, maxSteps: 4, extra: ["--lora-rank", "4", "--lora-alpha", "8", "--lora-dropout", "0.1",
                                                              "--checkpoint", routers + ".ck", "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.summary)
        XCTAssertTrue(resumed.stderr.contains("resumed from"), resumed.summary)

        // merge-lora → float model with routers; generate runs it routed by default; quantize accepts it.
        let merged = TemporaryFiles.path("cli-merged-\(UUID().uuidString.prefix(8)).safetensors")
        let merge = try CLI.run(["merge-lora", "-m", model, "--routers", routers, "-o", merged])
        XCTAssertEqual(merge.status, 0, merge.summary)
        XCTAssertTrue(merge.stderr.contains("routers embedded"), merge.summary)
        let source = try QTaleModelFile(path: merged)
        XCTAssertNotNil(try source.routers())
        if case .packed = try source.tensor(.linear(block: 1, .key)) { XCTFail("merged linears should be float") }
        let routed = try CLI.run(["generate", "-m", merged, "-p", "hi", "--max-tokens", "4", "--temperature", "0", "--threads", "1"])
        XCTAssertEqual(routed.status, 0, routed.summary)
        XCTAssertTrue(routed.stderr.contains("execution ratio"), "a merged model with routers should run routed: \(routed.summary)")
        let quantized = TemporaryFiles.path("cli-merged-q-\(UUID().uuidString.prefix(8)).safetensors")
        let quantize = try CLI.run(["quantize", "-m", merged, "--method", "rtn", "--bits", "4", "--group", "32", "--threads", "1",
                                    "-o", quantized], timeout: 300)
        XCTAssertEqual(quantize.status, 0, quantize.summary)
        let q = try QTaleModelFile(path: quantized)
        XCTAssertNotNil(try q.routers(), "quantize keeps the embedded routers")
        if case .float = try q.tensor(.linear(block: 0, .query)) { XCTFail("quantize should pack the merged linears") }
    }

    func testRoutersOnlyFileHasNoLoRAToMerge() throws {
        let (model, _) = try Self.fixtures()
        let routers = TemporaryFiles.path("cli-routers-\(UUID().uuidString.prefix(8)).safetensors")
        let trained = try train(routers, extra: [])
        XCTAssertEqual(trained.status, 0, trained.summary)
        XCTAssertNil(try SafetensorsFile(path: routers).metadata["qtale.lora.rank"])
        let generated = try CLI.run(["generate", "-m", model, "--routers", routers, "-p", "hi", "--max-tokens", "2",
                                     "--temperature", "0", "--threads", "1"])
        XCTAssertEqual(generated.status, 0, generated.summary)
        XCTAssertFalse(generated.stderr.contains("LoRA"), "no LoRA warning without adapters: \(generated.summary)")
        try CLI.expectFailure(["merge-lora", "-m", model, "--routers", routers, "-o", routers + ".merged"], status: 1,
                              stderrContains: ["holds no LoRA adapters", "--lora-rank"])
    }

    func testBadFlagsFailWithAMessage() throws {
        let (model, data) = try Self.fixtures()
        let out = TemporaryFiles.path("never-written.safetensors")
        let base = ["train-routers", "-m", model, "--data", "jsonl:" + data, "--always-on-blocks", "1", "-o", out]
        try CLI.expectFailure(base + ["--lora-rank=-1"], stderrContains: ["--lora-rank must be ≥ 0"])
        try CLI.expectFailure(base + ["--lora-rank", "2", "--lora-dropout", "1.5"], stderrContains: ["--lora-dropout must be in [0, 1)"])
        try CLI.expectFailure(base + ["--lora-rank", "2", "--lora-alpha", "0"], stderrContains: ["--lora-alpha must be > 0"])
        try CLI.expectFailure(base + ["--lora-alpha", "4"], stderrContains: ["need --lora-rank > 0"])
        try CLI.expectFailure(["merge-lora", "-m", model, "-o", out], stderrContains: ["--routers"])
        try CLI.expectFailure(["merge-lora", "-m", model, "--routers", "/nonexistent/r.safetensors", "-o", out], status: 1,
                              stderrContains: ["does not exist"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
