import Foundation
import QTaleCore
import QTaleGGUF
import QTaleModel
import QTaleTestSupport
import XCTest

/// `LlamaConfiguration(gguf:)` and model loading refuse incomplete or corrupt metadata with a clear
/// `QTaleError` (in-process; QTaleCoreTests does not depend on QTaleModel).
final class ModelMetadataTests: XCTestCase {
    func gguf(_ writer: GGUFWriter, _ name: String) throws -> GGUFFile {
        let path = TemporaryFiles.path("meta-\(name)-\(UUID().uuidString.prefix(8)).gguf")
        try writer.write(to: path)
        return try GGUFFile(path: path)
    }

    func expectInvalidModel<T>(_ expression: @autoclosure () throws -> T, _ phrase: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try expression()
            XCTFail("expected invalidModel containing \"\(phrase)\"", file: file, line: line)
        } catch let error as QTaleError {
            guard case .invalidModel = error else { return XCTFail("expected invalidModel, got \(error)", file: file, line: line) }
            XCTAssertTrue(error.description.contains(phrase), "\"\(error)\" lacks \"\(phrase)\"", file: file, line: line)
        } catch {
            XCTFail("not a QTaleError: \(error)", file: file, line: line)
        }
    }

    func testSyntheticConfigurationIsReadExactly() throws {
        let c = try LlamaConfiguration(gguf: gguf(SyntheticModel.writer(), "ok"))
        XCTAssertEqual(c.architecture, "llama")
        XCTAssertEqual(c.nLayers, 2)
        XCTAssertEqual(c.dModel, 64)
        XCTAssertEqual(c.ffnDim, 96)
        XCTAssertEqual(c.nHeads, 4)
        XCTAssertEqual(c.nKVHeads, 2)
        XCTAssertEqual(c.headDim, 16)
        XCTAssertEqual(c.ropeDims, 16)
        XCTAssertEqual(c.ropeBase, 10000)
        XCTAssertEqual(c.normEpsilon, 1e-5)
        XCTAssertEqual(c.contextLength, 256)
        XCTAssertEqual(c.vocabSize, 265)
        XCTAssertTrue(c.tiedOutput)
    }

    func testMissingRequiredMetadataIsNamed() throws {
        for key in ["llama.block_count", "llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
                    "llama.attention.layer_norm_rms_epsilon", "llama.context_length", "general.architecture",
                    "tokenizer.ggml.tokens"] {
            var w = SyntheticModel.writer()
            w.metadata.removeAll { $0.0 == key }
            expectInvalidModel(try LlamaConfiguration(gguf: gguf(w, key)), "is missing required metadata '\(key)'")
        }
    }

    func testOutOfRangeMetadataIsNamed() throws {
        func replaced(_ key: String, _ value: GGUFWriter.Value) -> GGUFWriter {
            var w = SyntheticModel.writer()
            let i = w.metadata.firstIndex { $0.0 == key }!
            w.metadata[i].1 = value
            return w
        }
        expectInvalidModel(try LlamaConfiguration(gguf: gguf(replaced("llama.block_count", .uint32(0)), "layers0")),
                           "metadata 'llama.block_count' = 0 is not an integer in 1...1024")
        expectInvalidModel(try LlamaConfiguration(gguf: gguf(replaced("llama.block_count", .string("two")), "layersS")),
                           "'llama.block_count'")
        expectInvalidModel(try LlamaConfiguration(gguf: gguf(replaced("general.architecture", .string("gpt2")), "arch")),
                           "architecture 'gpt2' is not supported")
        expectInvalidModel(try LlamaConfiguration(gguf: gguf(replaced("llama.attention.head_count", .uint32(3)), "heads3")),
                           "do not divide d_model 64")
        expectInvalidModel(try LlamaConfiguration(gguf: gguf(replaced("llama.attention.layer_norm_rms_epsilon", .float32(-1)), "eps")),
                           "layer_norm_rms_epsilon' is not a small non-negative number")
    }

    func testLoadingRefusesMissingOrMisshapenTensors() throws {
        var w = SyntheticModel.writer()
        w.tensors.removeAll { $0.name == "blk.1.ffn_up.weight" }
        let engine = try EngineRegistry.make("reference", threads: 1)
        let missing = TemporaryFiles.path("no-ffn-up.gguf")
        try w.write(to: missing)
        expectInvalidModel(try LoadedModel(path: missing, engine: engine), "has no tensor 'blk.1.ffn_up.weight'")

        var v = SyntheticModel.writer()
        let i = v.tensors.firstIndex { $0.name == "blk.0.attn_q.weight" }!
        v.tensors[i].dimensions = [32, 128]   // same byte count, wrong shape
        let misshapen = TemporaryFiles.path("bad-q.gguf")
        try v.write(to: misshapen)
        expectInvalidModel(try LoadedModel(path: misshapen, engine: engine),
                           "tensor 'blk.0.attn_q.weight' has shape [32, 128], expected [64, 64]")
    }

    /// Random single-byte corruptions of a whole synthetic model's header: loading either succeeds or
    /// throws a `QTaleError`; the test process crashing is the failure.
    func testCorruptHeadersLoadOrThrowButNeverCrash() throws {
        var shape = SyntheticModel.Shape()
        shape.layers = 1
        shape.dModel = 32
        shape.ffn = 32
        shape.heads = 2
        shape.kvHeads = 1
        let bytes = SyntheticModel.writer(shape: shape, seed: 8).bytes()
        let path = TemporaryFiles.path("fuzz-model.gguf")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let headerEnd = try GGUFFile(path: path).tensors.map(\.fileOffset).min()!
        var rng = TestRandom(seed: 17)
        var loaded = 0, refused = 0
        for trial in 0..<150 {
            var corrupt = bytes
            let at = Int(rng.next() % UInt64(headerEnd))
            let value = UInt8(truncatingIfNeeded: rng.next())
            corrupt[at] = value == bytes[at] ? ~value : value
            try Data(corrupt).write(to: URL(fileURLWithPath: path), options: .atomic)
            do {
                let model = try LoadedModel(path: path, engine: EngineRegistry.make("reference", threads: 1))
                _ = model.tokenizer.encode("the cat", parseSpecial: true)
                loaded += 1
            } catch is QTaleError {
                refused += 1
            } catch {
                XCTFail("trial \(trial), byte \(at) = \(corrupt[at]): not a QTaleError: \(error)")
            }
        }
        XCTAssertGreaterThan(loaded, 0)
        XCTAssertGreaterThan(refused, 0)
    }
}
