import Foundation
import QTaleCore
import QTaleModel
import QTaleQuantize
import QTaleSafetensors
import QTaleTestSupport
import XCTest

/// Whole-model quantization on a synthetic model: every method produces a loadable model whose
/// logits follow the float model's, the calibrated methods beat RTN, AWQ's folding is output-preserving,
/// and the file round-trips bit-exactly.
final class ModelQuantizerTests: XCTestCase {
    static let shape: SyntheticModel.Shape = {
        var s = SyntheticModel.Shape()
        s.layers = 2
        s.dModel = 64
        s.ffn = 160           // not a multiple of 64: a short last group in down
        s.heads = 4
        s.kvHeads = 2
        return s
    }()
    static let path = try! SyntheticModel.write(shape: shape, seed: 12)
    let prompt: [Int32] = [1, 259, 44, 75, 90, 3, 120, 200, 261, 17, 5, 66, 70, 8, 140, 33]

    func engine() throws -> any ComputeEngine { try EngineRegistry.make("cpu", threads: 2) }

    func calibration() throws -> CalibrationSet {
        var rng = TestRandom(seed: 4)
        let tokens = (0..<2048).map { _ in Int32(rng.next() % 260) }
        return try CalibrationSet(tokens: tokens, count: 6, length: 64, seed: 1)
    }

    /// Quantizes the synthetic model, writes it, loads it back and returns (quantizer, file, logits NMSE vs float).
    func quantize(_ method: QuantizationMethod, bits: Int, group: Int) throws -> (ModelQuantizer, String, Double) {
        let source = try ModelSources.open(Self.path)
        var settings = QuantizationSettings(method: method, bits: bits, groupSize: group)
        settings.calibrationLength = 64
        let quantizer = try ModelQuantizer(source: source, engine: engine(), settings: settings)
        _ = try quantizer.run(calibration: method.needsCalibration ? calibration() : nil) { _, _ in }
        let out = TemporaryFiles.path("quantized-\(method.rawValue)-w\(bits)g\(group).safetensors")
        try QTaleModelFile.write(to: out, configuration: source.configuration, vocabulary: source.vocabulary(),
                                 routers: nil, quantization: "{}", tensor: quantizer.tensor)
        let float = try LoadedModel(path: Self.path, engine: engine()).makeSession().forwardAllLogits(prompt)
        let quantized = try LoadedModel(path: out, engine: engine()).makeSession().forwardAllLogits(prompt)
        var e = 0.0, r = 0.0
        for (q, f) in zip(quantized, float) { e += Double(q - f) * Double(q - f); r += Double(f) * Double(f) }
        return (quantizer, out, e / r)
    }

    func testCalibratedMethodsBeatRoundToNearestAtThreeBits() throws {
        let rtn = try quantize(.rtn, bits: 3, group: 32).2
        let gptq = try quantize(.gptq, bits: 3, group: 32).2
        let magr = try quantize(.magrGPTQ, bits: 3, group: 32).2
        let awq = try quantize(.awq, bits: 3, group: 32).2
        print("logit NMSE vs float, w3g32: rtn \(rtn) gptq \(gptq) magr-gptq \(magr) awq \(awq)")
        XCTAssertGreaterThan(rtn, 1e-5, "3-bit RTN must visibly change the logits")
        XCTAssertLessThan(gptq, rtn)
        XCTAssertLessThan(magr, rtn)
        XCTAssertLessThan(awq, rtn)
    }

    func testAWQFoldingPreservesTheFloatModel() throws {
        // At 8 bits the quantization error is tiny, so what remains is the folding of 1/s into the norms
        // and up's rows: a wrong fold would move the logits by orders of magnitude more.
        let (quantizer, _, nmse) = try quantize(.awq, bits: 8, group: 32)
        let rtn = try quantize(.rtn, bits: 8, group: 32).2
        print("logit NMSE vs float, w8g32: awq \(nmse) rtn \(rtn)")
        XCTAssertLessThan(nmse, 3 * rtn)
        // The folds really happened: the norms differ from the source's.
        let original = try ModelSources.open(Self.path).tensor(.ffnNorm(block: 1)).floats()
        XCTAssertNotEqual(try quantizer.tensor(.ffnNorm(block: 1)).floats(), original)
    }

    func testWrittenModelRoundTripsBitExactly() throws {
        let (quantizer, path, _) = try quantize(.gptq, bits: 4, group: 64)
        let file = try QTaleModelFile(path: path)
        for role in TensorRole.all(in: file.configuration) {
            switch (try quantizer.tensor(role), try file.tensor(role)) {
            case let (.packed(a), .packed(b)): XCTAssertEqual(a, b, "\(role)")
            case let (.float(a, _, _), .float(b, _, _)): XCTAssertEqual(a, b, "\(role)")
            default: XCTFail("\(role) changed kind")
            }
        }
        if case let .packed(m) = try file.tensor(.linear(block: 1, .down)) {
            XCTAssertEqual(m.format, try QuantizationFormat(bits: 4, groupSize: 64))
            XCTAssertEqual(m.groupsPerRow, 3)   // 160 = 64 + 64 + 32
        } else {
            XCTFail("down must be packed")
        }
        XCTAssertEqual(try file.vocabulary().tokens, try ModelSources.open(Self.path).vocabulary().tokens)
    }

    func testCorruptModelFilesAreRefusedClearly() throws {
        let (_, path, _) = try quantize(.rtn, bits: 4, group: 32)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        func expectRefusal(_ data: Data, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) throws {
            let broken = TemporaryFiles.path("broken-\(UUID().uuidString.prefix(6)).safetensors")
            try data.write(to: URL(fileURLWithPath: broken))
            XCTAssertThrowsError(try LoadedModel(path: broken, engine: engine()), file: file, line: line) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(error) lacks '\(fragment)'", file: file, line: line)
            }
        }
        try expectRefusal(bytes.prefix(bytes.count - 1000), "lies outside")
        let text = String(decoding: bytes, as: UTF8.self)
        for (from, to, fragment) in [("qtale-llama-v1", "qtale-llama-v9", "this build reads"),
                                     ("\\\"w4g32\\\"", "\\\"w5g32\\\"", "not supported"),
                                     ("model.layers.1.mlp.up_proj.qweight", "model.layers.1.mlp.up_proj.qweighs", "up_proj.qweight")] {
            guard let range = text.range(of: from) else { XCTFail("fixture lacks \(from)"); continue }
            var data = bytes
            let offset = text.utf8.distance(from: text.startIndex, to: range.lowerBound)
            data.replaceSubrange(offset ..< offset + from.utf8.count, with: Data(to.utf8))
            try expectRefusal(data, fragment)
        }
    }

    func testInvalidSettingsAreRefused() throws {
        let source = try ModelSources.open(Self.path)
        XCTAssertThrowsError(try ModelQuantizer(source: source, engine: engine(), settings: QuantizationSettings(method: .rtn, bits: 5, groupSize: 64)))
        XCTAssertThrowsError(try ModelQuantizer(source: source, engine: engine(), settings: QuantizationSettings(method: .rtn, bits: 4, groupSize: 48)))
        let gptq = try ModelQuantizer(source: source, engine: engine(), settings: QuantizationSettings(method: .gptq, bits: 4, groupSize: 64))
        XCTAssertThrowsError(try gptq.run(calibration: nil) { _, _ in }) { XCTAssertTrue("\($0)".contains("needs calibration")) }
        XCTAssertThrowsError(try CalibrationSet(tokens: [1, 2, 3], count: 4, length: 8, seed: 0))
    }
}
