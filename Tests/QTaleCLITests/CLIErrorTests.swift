import Foundation
import QTaleGGUF
import QTaleTestSupport
import XCTest

/// Malformed models, missing files and bad flags end `qtale` with a nonzero status and a message on
/// stderr that names the problem, never with a crash.
final class CLIErrorTests: XCTestCase {
    static var cachedModel: String?
    /// The synthetic model (context 256) shared by the flag tests.
    static var model: String {
        get throws {
            if let cachedModel { return cachedModel }
            let path = try SyntheticModel.write(seed: 11)
            cachedModel = path
            return path
        }
    }

    /// Writes `bytes` to a fresh temporary file.
    func file(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = TemporaryFiles.path("cli-\(name)-\(UUID().uuidString.prefix(8)).gguf")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Runs both `qtale info FILE` and `qtale generate -m FILE -p hi`; each must fail naming the problem.
    func expectBothCommandsFail(_ path: String, _ phrases: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        try CLI.expectFailure(["info", path], status: 1, stderrContains: phrases, file: file, line: line)
        try CLI.expectFailure(["generate", "-m", path, "-p", "hi", "--threads", "1"], status: 1,
                              stderrContains: phrases, file: file, line: line)
    }

    func testBadMagic() throws {
        var bytes = SyntheticModel.writer().bytes()
        bytes.replaceSubrange(0..<4, with: Array("GGML".utf8))
        try expectBothCommandsFail(try file(bytes, "magic"), ["invalid model", "is not a GGUF file (bad magic 47474d4c)"])
    }

    func testUnsupportedVersion() throws {
        let path = try file(SyntheticModel.writer().bytes(version: 7), "v7")
        try expectBothCommandsFail(path, ["invalid model", "GGUF version 7 is not supported"])
    }

    func testTruncatedHeader() throws {
        let bytes = SyntheticModel.writer().bytes()
        for cut in [10, 30, 2000] {
            try expectBothCommandsFail(try file(Array(bytes[..<cut]), "cut\(cut)"), ["invalid model", "truncated"])
        }
    }

    func testTensorDataBeyondTheEndOfTheFile() throws {
        let bytes = SyntheticModel.writer().bytes()
        try expectBothCommandsFail(try file(Array(bytes[..<(bytes.count - 100)]), "data"),
                                   ["invalid model", "tensor 'output_norm.weight'", "lies beyond the end of the file"])
    }

    func testDimensionsThatOverflow() throws {
        var w = SyntheticModel.writer()
        let big = Int(Int32.max)
        w.tensors.append(GGUFWriter.Tensor(name: "huge.weight", dimensions: [big, big, big], rawType: 0, data: []))
        try expectBothCommandsFail(try file(w.bytes(), "overflow"), ["invalid model", "tensor 'huge.weight': dimensions", "overflow"])
    }

    func testUnknownTensorType() throws {
        var w = SyntheticModel.writer()
        w.tensors[0].rawType = 12
        try expectBothCommandsFail(try file(w.bytes(), "q4k"), ["invalid model", "tensor 'token_embd.weight' has tensor type Q4_K (type 12)"])
        w.tensors[0].rawType = 200
        try expectBothCommandsFail(try file(w.bytes(), "t200"), ["unknown type 200"])
    }

    func testMissingRequiredMetadata() throws {
        for key in ["llama.block_count", "general.architecture", "llama.attention.layer_norm_rms_epsilon"] {
            var w = SyntheticModel.writer()
            w.metadata.removeAll { $0.0 == key }
            try expectBothCommandsFail(try file(w.bytes(), "no-\(key)"), ["invalid model", "missing required metadata '\(key)'"])
        }
    }

    func testNonexistentModelPath() throws {
        try CLI.expectFailure(["generate", "-m", "/no/such/file.gguf", "-p", "hi"], status: 1,
                              stderrContains: ["model file '/no/such/file.gguf' does not exist"])
        try CLI.expectFailure(["info", "/no/such/file.gguf"], status: 1, stderrContains: ["'/no/such/file.gguf' does not exist"])
        try CLI.expectFailure(["tokenize", "-m", "/no/such/file.gguf", "hi"], status: 1, stderrContains: ["does not exist"])
    }

    func testPromptLongerThanTheContext() throws {
        let prompt = String(repeating: "the cat sat on the mat. ", count: 4)
        try CLI.expectFailure(["generate", "-m", try Self.model, "-p", prompt, "--ctx", "8", "--threads", "1"], status: 1,
                              stderrContains: ["the context holds 8", "raise --ctx"])
    }

    func testContextLargerThanTheModelIsClamped() throws {
        // The synthetic model's context is 256; --ctx 100000 is clamped to it, so a short prompt still runs.
        let r = try CLI.run(["generate", "-m", try Self.model, "-p", "the", "--ctx", "100000", "--max-tokens", "2",
                             "--temperature", "0", "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.summary)
    }

    // MARK: Flags (ArgumentParser usage errors exit with 64)

    func testInvalidFlags() throws {
        let base = ["generate", "-m", try Self.model, "-p", "hi"]
        try CLI.expectFailure(base + ["--threads", "0"], status: 64, stderrContains: ["--threads must be between 1 and 256"])
        // ArgumentParser reads "-1" after an option as another option, so the value is "missing";
        // the `=` form reaches the range check.
        try CLI.expectFailure(base + ["--temperature", "-1"], status: 64, stderrContains: ["Missing value for '--temperature <temperature>'"])
        try CLI.expectFailure(base + ["--temperature=-1"], status: 64, stderrContains: ["--temperature must be between 0 and 100"])
        try CLI.expectFailure(base + ["--temperature", "1000"], status: 64, stderrContains: ["--temperature must be between 0 and 100"])
        try CLI.expectFailure(base + ["--top-p", "0"], status: 64, stderrContains: ["--top-p must be in (0, 1]"])
        try CLI.expectFailure(base + ["--top-k=-3"], status: 64, stderrContains: ["--top-k must be ≥ 0"])
        try CLI.expectFailure(base + ["--top-p", "1.5"], status: 64, stderrContains: ["--top-p must be in (0, 1]"])
        try CLI.expectFailure(base + ["--threads", "257"], status: 64, stderrContains: ["--threads must be between 1 and 256"])
        try CLI.expectFailure(base + ["--backend", "nosuch"], status: 64, stderrContains: ["unknown --backend 'nosuch'", "cpu"])
        try CLI.expectFailure(base + ["--max-tokens", "-5"], status: 64, stderrContains: ["Missing value for '--max-tokens <max-tokens>'"])
        try CLI.expectFailure(base + ["--max-tokens=-5"], status: 64, stderrContains: ["--max-tokens must be between 0 and 1048576"])
        try CLI.expectFailure(base + ["--ctx", "0"], status: 64, stderrContains: ["--ctx must be between 1 and 1048576"])
        try CLI.expectFailure(base + ["--frobnicate"], status: 64, stderrContains: ["Unknown option '--frobnicate'"])
        try CLI.expectFailure(base + ["--threads", "many"], status: 64, stderrContains: ["--threads", "many"])
        try CLI.expectFailure(["generate", "-m", try Self.model], status: 64, stderrContains: ["Missing expected argument '--prompt <prompt>'"])
        try CLI.expectFailure(["nosuchcommand"], status: 64, stderrContains: ["nosuchcommand"])
    }
}

final class DefaultModelFetchTests: XCTestCase {
    /// When the default model is not cached and cannot be fetched (here: no python3 on PATH), the error
    /// says how to provide the file instead of crashing or hanging.
    func testUnfetchableDefaultModelExplainsHowToProvideIt() throws {
        let result = try CLI.run(["info", "smollm2"], environment: ["PATH": "/nonexistent",
                                                                     "QTALE_CACHE_DIR": TemporaryFiles.path("empty-cache")])
        XCTAssertEqual(result.reason, .exit, result.summary)
        XCTAssertNotEqual(result.status, 0, result.summary)
        XCTAssertTrue(result.stderr.contains("Fetching SmolLM2-135M-Instruct"), result.summary)
        XCTAssertTrue(result.stderr.contains("To provide the model by hand"), result.summary)
        XCTAssertTrue(result.stderr.contains("--model"), result.summary)
        XCTAssertFalse(FileManager.default.fileExists(atPath: TemporaryFiles.path("empty-cache/SmolLM2-135M-Instruct.Q4_1.gguf")))
    }
}
