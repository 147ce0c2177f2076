import Foundation
import QTaleCore
import QTaleGGUF
import QTaleSafetensors
import QTaleTokenizer

/// qtale's own model file: one safetensors file holding a LLaMA model with packed low-bit linears,
/// its configuration, its tokenizer and, when present, its routers. `qtale quantize` writes it;
/// every command that takes `--model` reads it. The layout is documented in `docs/model-format.md`.
///
/// - Tensors use Hugging Face module names (`model.layers.<i>.self_attn.q_proj`, ...).
///   A packed matrix (the ``QuantizationFormat`` layout, as engines read it) is three tensors:
///   `<module>.qweight` U8 `[rows, packs, bytesPerPack]`, `<module>.scales` F16 `[rows, groups]` and
///   `<module>.offsets` F16 `[rows, groups]` (w = scale·code + offset; an AWQ/GPTQ integer zero `z`
///   is `offset = -z·scale`). A float tensor is `<module>.weight` F32 `[rows, columns]` (`[columns]`
///   for norms).
/// - Metadata (all strings): `qtale.format` = `qtale-llama-v1`; `qtale.config` (JSON of
///   ``LlamaConfiguration``); `qtale.tokenizer` (JSON: tokens, token_types, merges, bos/eos ids,
///   add_bos, pre); `qtale.tensor_formats` (JSON: module → `"w<bits>g<group>"` for each packed
///   tensor); `qtale.quantization` (JSON provenance: method, bits, group, calibration, time);
///   `qtale.routers.*` as in ``RouterSet`` when routers are stored.
public final class QTaleModelFile: ModelSource {
    public static let formatTag = "qtale-llama-v1"

    public let file: SafetensorsFile
    public let configuration: LlamaConfiguration
    /// Packed tensors' formats by module name.
    private let formats: [String: QuantizationFormat]

    public convenience init(path: String) throws { try self.init(file: MappedFile(path: path)) }

    public init(file mapped: MappedFile) throws {
        file = try SafetensorsFile(file: mapped)
        let path = mapped.path
        guard let tag = file.metadata["qtale.format"] else {
            throw QTaleError.invalidModel("'\(path)' is a safetensors file without 'qtale.format' metadata: not a qtale model (pass a Hugging Face checkpoint as its directory)")
        }
        guard tag == Self.formatTag else {
            throw QTaleError.invalidModel("'\(path)' is qtale format '\(tag)'; this build reads '\(Self.formatTag)'")
        }
        configuration = try Self.decode(LlamaConfiguration.self, key: "qtale.config", in: file)
        let names = try Self.decode([String: String].self, key: "qtale.tensor_formats", in: file)
        var formats: [String: QuantizationFormat] = [:]
        for (module, text) in names {
            let parts = text.dropFirst().split(separator: "g")
            guard text.hasPrefix("w"), parts.count == 2, let bits = Int(parts[0]), let group = Int(parts[1]) else {
                throw QTaleError.invalidModel("'\(path)': tensor format '\(text)' of '\(module)' is not w<bits>g<group>")
            }
            formats[module] = try QuantizationFormat(bits: bits, groupSize: group)
        }
        self.formats = formats
    }

    public var path: String { file.file.path }

    public var formatDescription: String {
        let counts = Dictionary(grouping: formats.values, by: { $0.description }).mapValues(\.count)
        return "qtale safetensors (" + counts.sorted { $0.key < $1.key }.map { "\($0.value)× \($0.key)" }.joined(separator: ", ") + ")"
    }

    /// The `qtale.quantization` provenance JSON, if any.
    public var quantization: String? { file.metadata["qtale.quantization"] }

    public func vocabulary() throws -> TokenizerVocabulary {
        try Self.decode(StoredVocabulary.self, key: "qtale.tokenizer", in: file).vocabulary
    }

    public func tensor(_ role: TensorRole) throws -> HostTensor {
        let module = role.moduleName
        if let format = formats[module] {
            let codes = try file.tensor(module + ".qweight"), scales = try file.tensor(module + ".scales"),
                offsets = try file.tensor(module + ".offsets")
            guard codes.dtype == .u8, codes.shape.count == 3, scales.dtype == .f16, offsets.dtype == .f16,
                  scales.shape.count == 2, scales.shape == offsets.shape, codes.shape[0] == scales.shape[0],
                  codes.shape[2] == format.bytesPerPack else {
                throw QTaleError.invalidModel("'\(path)': packed tensor '\(module)' has qweight \(codes.dtype.rawValue)\(codes.shape), scales \(scales.dtype.rawValue)\(scales.shape), offsets \(offsets.dtype.rawValue)\(offsets.shape); not a \(format) matrix")
            }
            let rows = codes.shape[0]
            let columns = try expectedColumns(role)
            guard codes.shape[1] == format.packsPerRow(columns: columns), scales.shape[1] == format.groupsPerRow(columns: columns) else {
                throw QTaleError.invalidModel("'\(path)': packed tensor '\(module)' has \(codes.shape[1]) packs and \(scales.shape[1]) groups per row; \(format) with \(columns) columns needs \(format.packsPerRow(columns: columns)) and \(format.groupsPerRow(columns: columns))")
            }
            func halves(_ t: SafetensorsTensorInfo) -> [Float16] {
                let raw = file.data(of: t)
                return (0..<t.elementCount).map { raw.loadUnaligned(fromByteOffset: 2 * $0, as: Float16.self) }
            }
            return .packed(try PackedMatrix(format: format, rows: rows, columns: columns, codes: file.bytes(codes),
                                            scales: halves(scales), offsets: halves(offsets)))
        }
        let t = try file.tensor(module + ".weight")
        let values = try file.floats(t)
        switch t.shape.count {
        case 1: return .float(values, rows: 1, columns: t.shape[0])
        case 2: return .float(values, rows: t.shape[0], columns: t.shape[1])
        default: throw QTaleError.invalidModel("'\(path)': tensor '\(module).weight' has shape \(t.shape)")
        }
    }

    private func expectedColumns(_ role: TensorRole) throws -> Int {
        switch role {
        case .tokenEmbedding, .outputHead, .outputNorm, .attentionNorm, .ffnNorm: configuration.dModel
        case let .linear(_, kind): kind.shape(in: configuration).columns
        }
    }

    public func routers() throws -> RouterSet? {
        guard RouterSet.present(in: file) else { return nil }
        return try RouterSet.read(from: file, dModel: configuration.dModel, layers: configuration.nLayers)
    }

    private static func decode<T: Decodable>(_ type: T.Type, key: String, in file: SafetensorsFile) throws -> T {
        guard let text = file.metadata[key] else {
            throw QTaleError.invalidModel("'\(file.file.path)' lacks metadata '\(key)'")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(text.utf8))
        } catch {
            throw QTaleError.invalidModel("'\(file.file.path)': metadata '\(key)' is not valid: \(error)")
        }
    }

    // MARK: Writing

    /// Writes a model atomically: every tensor of `c`'s shape from `tensor`, plus tokenizer, routers
    /// and provenance.
    public static func write(to path: String, configuration c: LlamaConfiguration, vocabulary: TokenizerVocabulary,
                             routers: RouterSet?, quantization: String?, tensor: (TensorRole) throws -> HostTensor) throws {
        var w = SafetensorsWriter()
        var formats: [String: String] = [:]
        for role in TensorRole.all(in: c) {
            let module = role.moduleName
            switch try tensor(role) {
            case let .packed(m):
                formats[module] = m.format.description
                w.add(module + ".qweight", dtype: .u8, shape: [m.rows, m.format.packsPerRow(columns: m.columns), m.format.bytesPerPack],
                      bytes: m.codes)
                w.add(module + ".scales", dtype: .f16, shape: [m.rows, m.groupsPerRow], bytes: m.scales.withUnsafeBytes { Array($0) })
                w.add(module + ".offsets", dtype: .f16, shape: [m.rows, m.groupsPerRow], bytes: m.offsets.withUnsafeBytes { Array($0) })
            case let .float(values, rows, columns):
                let isVector: Bool
                switch role {
                case .outputNorm, .attentionNorm, .ffnNorm: isVector = true
                default: isVector = false
                }
                w.add(module + ".weight", floats: values, shape: isVector ? [columns] : [rows, columns])
            }
        }
        routers?.add(to: &w)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        func json<T: Encodable>(_ value: T) throws -> String { String(decoding: try encoder.encode(value), as: UTF8.self) }
        w.metadata["qtale.format"] = formatTag
        w.metadata["qtale.config"] = try json(c)
        w.metadata["qtale.tokenizer"] = try json(StoredVocabulary(vocabulary))
        w.metadata["qtale.tensor_formats"] = try json(formats)
        if let quantization { w.metadata["qtale.quantization"] = quantization }
        try w.write(to: path)
    }
}

/// The tokenizer as `qtale.tokenizer` metadata stores it.
struct StoredVocabulary: Codable {
    var tokens: [String]
    var token_types: [Int32]
    var merges: [String]
    var bos_token_id: Int32?
    var eos_token_id: Int32?
    var add_bos: Bool
    var pre: String

    init(_ v: TokenizerVocabulary) {
        tokens = v.tokens
        token_types = v.tokenTypes
        merges = v.merges
        bos_token_id = v.bosTokenID
        eos_token_id = v.eosTokenID
        add_bos = v.addBOS
        pre = v.preTokenizer
    }

    var vocabulary: TokenizerVocabulary {
        TokenizerVocabulary(tokens: tokens, tokenTypes: token_types, merges: merges, bosTokenID: bos_token_id,
                            eosTokenID: eos_token_id, addBOS: add_bos, preTokenizer: pre)
    }
}
