import Foundation
import QTaleTestSupport
import XCTest

/// `qtale quantize`, `ppl` and `eval` end to end on a synthetic model, and their refusals of bad input.
final class CLIQuantizeAndScoreTests: XCTestCase {
    static let model = try! SyntheticModel.write(seed: 9)

    /// A text the synthetic tokenizer handles, long enough for a few windows and calibration samples.
    static let text: String = {
        let path = TemporaryFiles.path("cli-text.txt")
        let words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "far", "away"]
        var rng = TestRandom(seed: 3)
        let text = (0..<1500).map { _ in words[Int(rng.next() % UInt64(words.count))] }.joined(separator: " ")
        try! text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    func testQuantizeThenScoreTheQuantizedModel() throws {
        let out = TemporaryFiles.path("cli-gptq-\(UUID().uuidString.prefix(6)).safetensors")
        let report = TemporaryFiles.path("cli-gptq-report.json")
        let q = try CLI.run(["quantize", "-m", Self.model, "--method", "gptq", "--bits", "3", "--group", "32",
                             "--calib", Self.text, "--calib-samples", "4", "--calib-len", "64", "--threads", "2",
                             "-o", out, "--report-json", report])
        XCTAssertEqual(q.status, 0, q.summary)
        XCTAssertTrue(q.stderr.contains("quantize ["), "no progress bar: " + q.summary)
        let reportJSON = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any])
        XCTAssertEqual(reportJSON["calibrationTokens"] as? Int, 256)

        let info = try CLI.run(["info", out])
        XCTAssertEqual(info.status, 0, info.summary)
        XCTAssertTrue(info.stdout.contains("gptq w3g32"), info.summary)

        var perplexities: [Double] = []
        for model in [Self.model, out] {
            let p = try CLI.run(["ppl", "-m", model, "--text", Self.text, "--ctx", "64", "--max-windows", "3", "--threads", "2"])
            XCTAssertEqual(p.status, 0, p.summary)
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(p.stdout.utf8)) as? [String: Any], p.summary)
            XCTAssertEqual(json["scoredTokens"] as? Int, 3 * 63)
            perplexities.append(try XCTUnwrap(json["perplexity"] as? Double))
        }
        XCTAssertTrue(perplexities.allSatisfy { $0.isFinite && $0 > 1 }, "\(perplexities)")
        XCTAssertNotEqual(perplexities[0], perplexities[1], "3-bit weights must change the perplexity")

        let g = try CLI.run(["generate", "-m", out, "-p", "the", "--temperature", "0", "--max-tokens", "4", "--ignore-eos"])
        XCTAssertEqual(g.status, 0, g.summary)
    }

    func testAHuggingFaceFloatCheckpointQuantizes() throws {
        // The float fixture of the checkpoint-import tests: BF16 safetensors, config.json, tokenizer.json.
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("QTaleModelTests/Fixtures/checkpoints/float").path
        let out = TemporaryFiles.path("cli-hf-awq-\(UUID().uuidString.prefix(6)).safetensors")
        let q = try CLI.run(["quantize", "-m", directory, "--method", "awq", "--bits", "4", "--group", "32",
                             "--calib", Self.text, "--calib-samples", "2", "--calib-len", "32", "-o", out])
        XCTAssertEqual(q.status, 0, q.summary)
        for model in [directory, out] {
            let p = try CLI.run(["ppl", "-m", model, "--text", Self.text, "--ctx", "32", "--max-windows", "2"])
            XCTAssertEqual(p.status, 0, p.summary)
        }
    }

    func testBadQuantizeAndScoreInputsAreRefused() throws {
        let out = TemporaryFiles.path("never-written.safetensors")
        try CLI.expectFailure(["quantize", "-m", Self.model, "--method", "nope", "--bits", "4", "-o", out],
                              stderrContains: ["unknown --method 'nope'"])
        try CLI.expectFailure(["quantize", "-m", Self.model, "--method", "rtn", "--bits", "5", "-o", out],
                              stderrContains: ["--bits must be 4 or 3"])
        try CLI.expectFailure(["quantize", "-m", Self.model, "--method", "rtn", "--bits", "4", "--group", "48", "-o", out],
                              stderrContains: ["--group must be 32, 64 or 128"])
        try CLI.expectFailure(["quantize", "-m", Self.model, "--method", "gptq", "--bits", "4", "-o", out],
                              stderrContains: ["needs calibration text"])
        try CLI.expectFailure(["quantize", "-m", Self.model, "--method", "awq", "--bits", "4", "--calib", "/no/such.txt", "-o", out],
                              stderrContains: ["cannot read calibration text '/no/such.txt'"])
        try CLI.expectFailure(["quantize", "-m", Self.model, "--method", "rtn", "--bits", "4", "--act-order", "-o", out],
                              stderrContains: ["--act-order applies to gptq"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        try CLI.expectFailure(["ppl", "-m", Self.model, "--text", "/no/such.txt"], stderrContains: ["cannot read text file"])
        try CLI.expectFailure(["ppl", "-m", Self.model, "--text", Self.text, "--ctx", "1"], stderrContains: ["--ctx must be between"])
        try CLI.expectFailure(["ppl", "-m", Self.model, "--text", Self.text, "--ctx", "100000"], stderrContains: ["--ctx"])
        let short = TemporaryFiles.path("short.txt")
        try "the cat".write(toFile: short, atomically: true, encoding: .utf8)
        try CLI.expectFailure(["ppl", "-m", Self.model, "--text", short, "--ctx", "64"], stderrContains: ["shorter than one window"])
    }
}
