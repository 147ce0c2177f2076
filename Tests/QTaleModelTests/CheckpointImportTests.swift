import Foundation
import QTaleCore
@testable import QTaleModel
import QTaleSafetensors
import QTaleTestSupport
import QTaleTokenizer
import XCTest

/// Hugging Face checkpoints, float and packed (AutoAWQ GEMM w4, GPTQ w4 v1 and w8 v2), on the tiny
/// fixtures that `scripts/make_checkpoint_fixtures.py` writes: packed linears convert bit for bit
/// against numpy's dequantization, every checkpoint runs, and damaged ones fail with a message.
final class CheckpointImportTests: XCTestCase {
    static let root: String = {
        guard let url = Bundle.module.url(forResource: "checkpoints", withExtension: nil, subdirectory: "Fixtures") else {
            fatalError("missing test resource Fixtures/checkpoints (scripts/make_checkpoint_fixtures.py writes it)")
        }
        return url.path
    }()
    static func checkpoint(_ name: String) -> String { root + "/" + name }
    static let reference: SafetensorsFile = try! SafetensorsFile(path: root + "/reference.safetensors")

    let prompt: [Int32] = [1, 259, 44, 75, 90, 3, 120, 200, 261, 17, 5, 2]

    func nmse(_ a: [Float], _ b: [Float]) -> Double {
        var e = 0.0, r = 0.0
        for (x, y) in zip(a, b) { e += Double(x - y) * Double(x - y); r += Double(y) * Double(y) }
        return e / r
    }

    /// numpy's `(q - z) · s` for `role`, `[out, in]`, with q/k rows moved to qtale's adjacent-pair order.
    static func referenceWeight(_ role: TensorRole, permuted: Bool = true, c: LlamaConfiguration) throws -> [Float] {
        let t = try reference.tensor(role.moduleName)
        let values = try reference.floats(t)
        guard permuted, case let .linear(_, kind) = role, kind == .query || kind == .key else { return values }
        return try HuggingFaceModelSource.ropeRowsToAdjacentPairs(values, rows: t.shape[0], columns: t.shape[1],
                                                                   heads: kind == .query ? c.nHeads : c.nKVHeads, path: "reference", name: t.name)
    }

    static func linearRoles(_ c: LlamaConfiguration) -> [TensorRole] {
        (0..<c.nLayers).flatMap { l in LinearKind.allCases.map { TensorRole.linear(block: l, $0) } }
    }

    // MARK: Bit layouts

    /// Every AWQ and GPTQ w4 linear dequantizes to numpy's `(q − z)·s`.
    ///
    /// Codes and binary16 scales move exactly; the one rounding is `offset = −z·s` to binary16, at most
    /// half an ulp: `|Δ| ≤ 2⁻¹¹·|z·s|` (2⁻²⁵ absolute below binary16's normal range), plus float32's
    /// rounding of `s·q + offset` (`2⁻²⁴·|w|`). `s·q` itself is exact in float32 (11 × 4 bits).
    func testPackedLinearsEqualTheNumpyDequantization() throws {
        let awq = try HuggingFaceModelSource(directory: Self.checkpoint("awq-w4-g32"))
        let gptq = try HuggingFaceModelSource(directory: Self.checkpoint("gptq-w4-g32"))
        XCTAssertEqual(awq.formatDescription, "Hugging Face checkpoint (AutoAWQ GEMM w4, group 32)")
        XCTAssertEqual(gptq.formatDescription, "Hugging Face checkpoint (GPTQ w4, group 32)")
        let c = awq.configuration
        var largest: Float = 0, roundedOffsets = 0
        for role in Self.linearRoles(c) {
            guard case let .packed(a) = try awq.tensor(role), case let .packed(g) = try gptq.tensor(role) else {
                return XCTFail("\(role) did not load packed")
            }
            // One quantization, two packings: the converted matrices are identical.
            XCTAssertEqual(a, g, "\(role): AWQ and GPTQ imports differ")
            XCTAssertEqual(a.format, try QuantizationFormat(bits: 4, groupSize: 32))
            let expected = try Self.referenceWeight(role, c: c)
            let got = a.dequantized()
            XCTAssertEqual(got.count, expected.count)
            for r in 0..<a.rows {
                for k in 0..<a.columns {
                    let offset = Float(a.offset(row: r, group: k / 32)), w = expected[r * a.columns + k]
                    let tolerance = abs(offset) * 0x1p-11 * 1.001 + abs(w) * 0x1p-24 + 0x1p-25
                    let error = abs(got[r * a.columns + k] - w)
                    largest = max(largest, error)
                    XCTAssertLessThanOrEqual(error, tolerance, "\(role) [\(r), \(k)]: \(got[r * a.columns + k]) vs \(w)")
                }
                for group in 0..<a.groupsPerRow {
                    // z = -offset/s is an integer up to binary16 rounding; count the groups where it was rounded.
                    let s = Float(a.scale(row: r, group: group)), o = Float(a.offset(row: r, group: group))
                    if (-o / s).rounded() * s != -o { roundedOffsets += 1 }
                }
            }
            // The q/k permutation really moved rows: the unpermuted reference does not match.
            if case let .linear(_, kind) = role, kind == .query || kind == .key {
                let unpermuted = try Self.referenceWeight(role, permuted: false, c: c)
                XCTAssertGreaterThan(zip(got, unpermuted).map { abs($0 - $1) }.max()!, 0.01)
            }
        }
        XCTAssertGreaterThan(largest, 0, "no offset was rounded: the fixtures do not exercise the tolerance")
        XCTAssertGreaterThan(roundedOffsets, 0)
    }

    /// 8-bit symmetric GPTQ (v2 zeros, one group per row) against the float checkpoint it was quantized
    /// from: each weight is within half a step (plus the binary16 rounding of the scale, 0.6·s in all).
    func testEightBitGPTQWithPerRowGroupsIsWithinHalfAStep() throws {
        let source = try HuggingFaceModelSource(directory: Self.checkpoint("gptq-w8-sym-v2"))
        let float = try HuggingFaceModelSource(directory: Self.checkpoint("float"))
        XCTAssertEqual(source.formatDescription, "Hugging Face checkpoint (GPTQ v2 w8, per-row groups)")
        for role in Self.linearRoles(source.configuration) {
            guard case let .packed(m) = try source.tensor(role) else { return XCTFail("\(role) did not load packed") }
            XCTAssertEqual(m.format.bits, 8)
            XCTAssertEqual(m.format.groupSize, m.columns)
            let w = try float.tensor(role).floats(), got = m.dequantized()
            for r in 0..<m.rows {
                let s = Float(m.scale(row: r, group: 0))
                XCTAssertEqual(Float(m.offset(row: r, group: 0)), -128 * s)
                for k in 0..<m.columns {
                    XCTAssertLessThanOrEqual(abs(got[r * m.columns + k] - w[r * m.columns + k]), 0.6 * s, "\(role) [\(r), \(k)]")
                }
            }
        }
    }

    // MARK: Running the checkpoints

    /// A model of the float checkpoint's embedding and norms with numpy's dequantized linears.
    final class ReferenceLinearsSource: ModelSource {
        let base: HuggingFaceModelSource
        init(base: HuggingFaceModelSource) { self.base = base }
        var path: String { base.path }
        var configuration: LlamaConfiguration { base.configuration }
        func vocabulary() throws -> TokenizerVocabulary { try base.vocabulary() }
        func routers() throws -> RouterSet? { nil }
        var formatDescription: String { "numpy reference linears" }
        func tensor(_ role: TensorRole) throws -> HostTensor {
            guard case let .linear(_, kind) = role else { return try base.tensor(role) }
            let shape = kind.shape(in: configuration)
            return .float(try CheckpointImportTests.referenceWeight(role, c: configuration), rows: shape.rows, columns: shape.columns)
        }
    }

    func testCheckpointsRunAndAgreeWithTheReferenceWeights() throws {
        func logits(_ source: any ModelSource) throws -> [Float] {
            try LoadedModel(source: source, engine: EngineRegistry.make("reference", threads: 1)).makeSession().forward(prompt)
        }
        let float = try HuggingFaceModelSource(directory: Self.checkpoint("float"))
        let reference = try logits(ReferenceLinearsSource(base: float))
        let floatLogits = try logits(float)
        let awq = try logits(ModelSources.open(Self.checkpoint("awq-w4-g32")))
        let gptq = try logits(ModelSources.open(Self.checkpoint("gptq-w4-g32")))
        let gptq8 = try logits(ModelSources.open(Self.checkpoint("gptq-w8-sym-v2")))
        XCTAssertEqual(awq.count, float.configuration.vocabSize)
        // Same packed matrices, same engine: the same logits.
        XCTAssertEqual(awq, gptq)
        // Only the binary16 offsets differ from the numpy weights (weight NMSE 1.5e-7 on these fixtures,
        // coherent within each group of 32, so the random 2-layer model's logits see about 1e-6).
        let offsets = nmse(awq, reference)
        // Quantization error: 4-bit against the float weights it came from, and 8-bit much closer.
        let fourBit = nmse(floatLogits, reference), eightBit = nmse(gptq8, floatLogits)
        print("logits NMSE: AWQ/GPTQ w4 vs numpy reference weights \(offsets); float vs reference \(fourBit); GPTQ w8 vs float \(eightBit)")
        XCTAssertLessThan(offsets, 1e-5)
        XCTAssertLessThan(fourBit, 0.2)
        XCTAssertGreaterThan(fourBit, 1000 * offsets)
        XCTAssertLessThan(eightBit, fourBit / 20)
        XCTAssertEqual(awq.indices.max { awq[$0] < awq[$1] }, reference.indices.max { reference[$0] < reference[$1] })
        // The CPU engine runs the imported matrices (w4g32, w8g32 and w8g96) as the reference engine does.
        for (name, expected) in [("awq-w4-g32", awq), ("gptq-w8-sym-v2", gptq8)] {
            let cpu = try LoadedModel(path: Self.checkpoint(name), engine: EngineRegistry.make("cpu", threads: 2)).makeSession().forward(prompt)
            XCTAssertLessThan(nmse(cpu, expected), 1e-9, name)
        }
    }

    /// The float checkpoint's tokenizer.json carries the synthetic GGUF model's vocabulary and encodes alike.
    func testTokenizerMatchesTheSyntheticGGUFVocabulary() throws {
        let hf = try HuggingFaceModelSource(directory: Self.checkpoint("float")).vocabulary()
        let gguf = try ModelSources.open(SyntheticModel.write(seed: 3)).vocabulary()
        XCTAssertEqual(hf.tokens, gguf.tokens)
        XCTAssertEqual(hf.tokenTypes, gguf.tokenTypes)
        XCTAssertEqual(hf.merges, gguf.merges)
        XCTAssertEqual(hf.bosTokenID, gguf.bosTokenID)
        XCTAssertEqual(hf.eosTokenID, gguf.eosTokenID)
        XCTAssertEqual(hf.preTokenizer, gguf.preTokenizer)
        let a = try BPETokenizer(vocabulary: hf), b = try BPETokenizer(vocabulary: gguf)
        for text in ["<|im_start|>user\nThe weather in 2024 is hotter than in 1999, isn't it?<|im_end|>",
                     "the other thing: ünïcödé and   spaces\t\n"] {
            XCTAssertEqual(a.encode(text), b.encode(text), text)
            XCTAssertEqual(a.decode(a.encode(text), renderSpecial: true), text)
        }
    }

    // MARK: Damaged checkpoints

    /// A writable copy of fixture `name`.
    func copy(_ name: String) throws -> String {
        let dir = TemporaryFiles.path("checkpoint-\(name)-\(UUID().uuidString)")
        try FileManager.default.copyItem(atPath: Self.checkpoint(name), toPath: dir)
        return dir
    }

    func editJSON(_ path: String, _ edit: (inout [String: Any]) -> Void) throws {
        var object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        edit(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
    }

    func editQuantizationConfig(_ dir: String, _ edit: @escaping (inout [String: Any]) -> Void) throws {
        try editJSON(dir + "/config.json") { c in
            var q = c["quantization_config"] as? [String: Any] ?? [:]
            edit(&q)
            c["quantization_config"] = q
        }
    }

    /// Rewrites `model.safetensors`: `transform` returns a tensor's new dtype, shape and bytes, or nil to drop it.
    func editTensors(_ dir: String, _ transform: (SafetensorsTensorInfo, [UInt8]) -> (SafetensorsDType, [Int], [UInt8])?) throws {
        let path = dir + "/model.safetensors"
        let file = try SafetensorsFile(path: path)
        var w = SafetensorsWriter()
        w.metadata = file.metadata
        for name in file.tensors.keys.sorted() {
            let t = file.tensors[name]!
            if let (dtype, shape, bytes) = transform(t, file.bytes(t)) { w.add(name, dtype: dtype, shape: shape, bytes: bytes) }
        }
        let bytes = try w.bytes()
        try FileManager.default.removeItem(atPath: path)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// Loading `dir` fails with `invalidModel` mentioning every string of `expected`.
    func assertLoadFails(_ dir: String, _ expected: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try LoadedModel(path: dir, engine: EngineRegistry.make("reference", threads: 1)), file: file, line: line) { error in
            guard case let .invalidModel(message)? = error as? QTaleError else {
                return XCTFail("not an invalidModel error: \(error)", file: file, line: line)
            }
            for e in expected { XCTAssertTrue(message.contains(e), "'\(e)' not in: \(message)", file: file, line: line) }
        }
    }

    func testMissingQZerosIsNamed() throws {
        let dir = try copy("awq-w4-g32")
        try editTensors(dir) { t, b in t.name == "model.layers.1.mlp.down_proj.qzeros" ? nil : (t.dtype, t.shape, b) }
        assertLoadFails(dir, ["'model.layers.1.mlp.down_proj.qzeros'", "'model.layers.1.mlp.down_proj'"])
    }

    func testWrongQWeightShapeIsNamed() throws {
        for (name, expected) in [("awq-w4-g32", "I32 [32, 4]"), ("gptq-w4-g32", "I32 [4, 32]")] {
            let dir = try copy(name)
            try editTensors(dir) { t, b in
                t.name == "model.layers.0.self_attn.q_proj.qweight" ? (t.dtype, [t.shape[1], t.shape[0]], b) : (t.dtype, t.shape, b)
            }
            assertLoadFails(dir, ["'model.layers.0.self_attn.q_proj.qweight'", "needs \(expected)"])
        }
        let dir = try copy("gptq-w4-g32")
        try editTensors(dir) { t, b in t.name.hasSuffix(".qweight") ? (.u8, [b.count], b) : (t.dtype, t.shape, b) }
        assertLoadFails(dir, [".qweight'", "is U8"])
    }

    func testUnsupportedQuantizationConfigsAreRefused() throws {
        let cases: [(String, (inout [String: Any]) -> Void, [String])] = [
            ("gptq-w4-g32", { $0["bits"] = 3 }, ["3-bit GPTQ", "quantization_config", ".qweight'"]),
            ("gptq-w4-g32", { $0["bits"] = 2 }, ["GPTQ with 2 bits"]),
            ("gptq-w4-g32", { $0["quant_method"] = "bitsandbytes" }, ["quant_method 'bitsandbytes'"]),
            ("gptq-w4-g32", { $0["checkpoint_format"] = "marlin" }, ["checkpoint_format 'marlin'"]),
            ("gptq-w4-g32", { $0["group_size"] = 48 }, ["group_size 48", "multiple of 32"]),
            ("awq-w4-g32", { $0["version"] = "gemv" }, ["AutoAWQ version 'gemv'"]),
            ("awq-w4-g32", { $0["bits"] = 8 }, ["AutoAWQ GEMM with 8 bits"]),
            ("awq-w4-g32", { $0 = [:] }, ["quant_method is missing"]),
        ]
        for (name, edit, expected) in cases {
            let dir = try copy(name)
            try editQuantizationConfig(dir, edit)
            assertLoadFails(dir, expected)
        }
        let dir = try copy("awq-w4-g32")
        try editJSON(dir + "/config.json") { $0["quantization_config"] = nil }
        assertLoadFails(dir, ["no quantization_config", ".qweight'"])
    }

    func testActOrderGroupIndexIsRefused() throws {
        let dir = try copy("gptq-w4-g32")
        try editTensors(dir) { t, b in
            guard t.name == "model.layers.0.mlp.down_proj.g_idx" else { return (t.dtype, t.shape, b) }
            var groups = (0..<t.shape[0]).map { Int32($0 / 32) }
            groups.swapAt(3, 40)
            return (t.dtype, t.shape, groups.withUnsafeBytes { Array($0) })
        }
        assertLoadFails(dir, ["'model.layers.0.mlp.down_proj.g_idx'", "input 3 in group 1", "act-order"])

        let noIndex = try copy("gptq-w4-g32")
        try editQuantizationConfig(noIndex) { $0["desc_act"] = true }
        try editTensors(noIndex) { t, b in t.name.hasSuffix(".g_idx") ? nil : (t.dtype, t.shape, b) }
        assertLoadFails(noIndex, ["desc_act", "no 'model.layers.0.self_attn.q_proj.g_idx'"])
    }

    func testGroupSizeDisagreeingWithTheTensorsIsNamed() throws {
        let dir = try copy("gptq-w4-g32")
        try editQuantizationConfig(dir) { $0["group_size"] = 64 }
        // 32-input linears have one group either way; down_proj's 96 inputs are 2 groups of 64, not 3 of 32.
        assertLoadFails(dir, ["'model.layers.0.mlp.down_proj.qzeros'", "needs I32 [2, 4]"])
    }

    func testPerRowGroupMustBeWholePacks() throws {
        // group_size -1 over 40 inputs: one group of 40, which is not whole 32-code packs.
        let scheme = try QuantizedCheckpointScheme(
            directory: "mem", config: ["quantization_config": ["quant_method": "gptq", "bits": 8, "group_size": -1, "checkpoint_format": "gptq_v2"]],
            example: "m.qweight")
        var w = SafetensorsWriter()
        w.add("m.qweight", dtype: .i32, shape: [10, 8], bytes: [UInt8](repeating: 0, count: 320))
        w.add("m.qzeros", dtype: .i32, shape: [1, 2], bytes: [UInt8](repeating: 0, count: 8))
        w.add("m.scales", dtype: .f16, shape: [1, 8], bytes: [UInt8](repeating: 0, count: 16))
        let path = TemporaryFiles.path("per-row-\(UUID().uuidString).safetensors")
        try w.write(to: path)
        let file = try SafetensorsFile(path: path)
        XCTAssertThrowsError(try scheme.packedMatrix(module: "m", rows: 8, columns: 40, path: path) { n in file.tensors[n].map { (file, $0) } }) {
            XCTAssertTrue("\($0)".contains("'m.qweight'") && "\($0)".contains("one group of all 40 inputs"), "\($0)")
        }
        // The same tensors as 64 inputs (16 words of 4 codes) convert: one group of 64.
        var w64 = SafetensorsWriter()
        w64.add("m.qweight", dtype: .i32, shape: [16, 8], bytes: [UInt8](repeating: 0x11, count: 512))
        w64.add("m.qzeros", dtype: .i32, shape: [1, 2], bytes: [UInt8](repeating: 0x10, count: 8))
        w64.add("m.scales", dtype: .f16, shape: [1, 8], bytes: (0..<8).flatMap { _ in Float16(0.5).bitPattern.littleEndianBytes })
        try w64.write(to: path)
        let file64 = try SafetensorsFile(path: path)
        let m = try scheme.packedMatrix(module: "m", rows: 8, columns: 64, path: path) { n in file64.tensors[n].map { (file64, $0) } }
        XCTAssertEqual(m.format, try QuantizationFormat(bits: 8, groupSize: 64))
        // code 0x11 = 17, zero 0x10 = 16 (v2, stored as is), scale 0.5: every weight is 0.5.
        XCTAssertEqual(Set(m.dequantized()), [0.5])
    }

    func testMissingConfigAndUnknownPreTokenizerAreNamed() throws {
        let dir = try copy("float")
        try FileManager.default.removeItem(atPath: dir + "/config.json")
        assertLoadFails(dir, ["config.json", "does not exist"])

        let tokenizer = try copy("float")
        try editJSON(tokenizer + "/tokenizer.json") { $0["pre_tokenizer"] = ["type": "Metaspace", "replacement": "▁"] }
        assertLoadFails(tokenizer, ["tokenizer.json", "pre-tokenizer", "Metaspace"])
    }
}

private extension UInt16 {
    var littleEndianBytes: [UInt8] { [UInt8(self & 0xFF), UInt8(self >> 8)] }
}
