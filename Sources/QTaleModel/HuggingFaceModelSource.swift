import Foundation
import QTaleCore
import QTaleGGUF
import QTaleSafetensors
import QTaleTokenizer

/// A Hugging Face LLaMA checkpoint directory as a ``ModelSource``: `config.json`, one or more
/// `*.safetensors` files (F32, F16 or BF16) and `tokenizer.json` (+ `tokenizer_config.json`).
///
/// Linears stored packed (`<module>.qweight` instead of `<module>.weight`) are AutoAWQ GEMM 4-bit or
/// GPTQ 4/8-bit checkpoints, described by `config.json`'s `quantization_config`; they convert losslessly
/// into the packed layout (see ``QuantizedCheckpointScheme``).
///
/// Hugging Face orders each attention head's query/key channels for `rotate_half` RoPE (pairs
/// `i, i + headDim/2`); qtale, like GGUF, rotates adjacent pairs `2i, 2i + 1`. q_proj and k_proj rows
/// are therefore permuted on the way in, exactly as llama.cpp's converter does, and qtale's own files
/// store the permuted order.
public final class HuggingFaceModelSource: ModelSource {
    public let path: String
    public let configuration: LlamaConfiguration
    /// Tensor name → the shard that holds it.
    private let shards: [String: SafetensorsFile]
    /// How packed linears are stored, when the checkpoint has any.
    let quantization: QuantizedCheckpointScheme?

    public init(directory: String) throws {
        path = directory
        let url = URL(fileURLWithPath: directory)
        let config = try Self.json(url.appendingPathComponent("config.json"))
        configuration = try LlamaConfiguration(huggingFace: config, path: directory)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory))?.filter { $0.hasSuffix(".safetensors") }.sorted() ?? []
        guard !files.isEmpty else {
            throw QTaleError.invalidModel("'\(directory)' has no *.safetensors weight files")
        }
        var shards: [String: SafetensorsFile] = [:]
        for name in files {
            let shard = try SafetensorsFile(path: url.appendingPathComponent(name).path)
            for tensor in shard.tensors.keys { shards[tensor] = shard }
        }
        self.shards = shards
        if let packed = shards.keys.filter({ $0.hasSuffix(".qweight") }).min() {
            quantization = try QuantizedCheckpointScheme(directory: directory, config: config, example: packed)
        } else {
            quantization = nil
        }
    }

    public var formatDescription: String {
        quantization.map { "Hugging Face checkpoint (\($0))" } ?? "Hugging Face checkpoint"
    }

    public func routers() throws -> RouterSet? { nil }

    public func tensor(_ role: TensorRole) throws -> HostTensor {
        let name = role.moduleName + ".weight"
        if shards[name] == nil, let packed = try packedTensor(role) { return packed }
        guard let shard = shards[name] else {
            if case .outputHead = role, configuration.tiedOutput { return try tensor(.tokenEmbedding) }
            throw QTaleError.invalidModel("'\(path)' has no tensor '\(name)'")
        }
        let t = try shard.tensor(name)
        var values = try shard.floats(t)
        let rows = t.shape.count == 2 ? t.shape[0] : 1, columns = t.shape.last ?? 1
        guard t.shape.count == 1 || t.shape.count == 2 else {
            throw QTaleError.invalidModel("'\(path)': tensor '\(name)' has shape \(t.shape)")
        }
        if case let .linear(_, kind) = role, kind == .query || kind == .key {
            let heads = kind == .query ? configuration.nHeads : configuration.nKVHeads
            values = try Self.ropeRowsToAdjacentPairs(values, rows: rows, columns: columns, heads: heads, path: path, name: name)
        }
        return .float(values, rows: rows, columns: columns)
    }

    /// A linear (or the output head) stored as AutoAWQ/GPTQ `<module>.qweight`, in the packed layout
    /// with q/k rows permuted like float ones; nil when there is no `.qweight`.
    private func packedTensor(_ role: TensorRole) throws -> HostTensor? {
        let module = role.moduleName
        guard shards[module + ".qweight"] != nil, let scheme = quantization else { return nil }
        let shape: (rows: Int, columns: Int)
        switch role {
        case let .linear(_, kind): shape = kind.shape(in: configuration)
        case .outputHead: shape = (configuration.vocabSize, configuration.dModel)
        default: throw QTaleError.invalidModel("'\(path)': tensor '\(module).qweight' is packed, but qtale reads '\(module)' only as float '\(module).weight'")
        }
        var m = try scheme.packedMatrix(module: module, rows: shape.rows, columns: shape.columns, path: path) { name in
            self.shards[name].flatMap { shard in shard.tensors[name].map { (shard, $0) } }
        }
        if case let .linear(_, kind) = role, kind == .query || kind == .key {
            let heads = kind == .query ? configuration.nHeads : configuration.nKVHeads, name = module + ".qweight"
            let codes = try Self.ropeRowsToAdjacentPairs(m.codes, rows: m.rows, columns: m.format.codeBytesPerRow(columns: m.columns),
                                                         heads: heads, path: path, name: name)
            let scales = try Self.ropeRowsToAdjacentPairs(m.scales, rows: m.rows, columns: m.groupsPerRow, heads: heads, path: path, name: name)
            let offsets = try Self.ropeRowsToAdjacentPairs(m.offsets, rows: m.rows, columns: m.groupsPerRow, heads: heads, path: path, name: name)
            m = try PackedMatrix(format: m.format, rows: m.rows, columns: m.columns, codes: codes, scales: scales, offsets: offsets)
        }
        return .packed(m)
    }

    /// Moves head rows from `rotate_half` order (`i`, `i + d/2`) to adjacent pairs (`2i`, `2i + 1`).
    static func ropeRowsToAdjacentPairs<T>(_ values: [T], rows: Int, columns: Int, heads: Int, path: String, name: String) throws -> [T] {
        guard heads > 0, rows % heads == 0, (rows / heads) % 2 == 0 else {
            throw QTaleError.invalidModel("'\(path)': tensor '\(name)' has \(rows) rows, not \(heads) heads of an even size")
        }
        let headDim = rows / heads, half = headDim / 2
        var out = values
        for h in 0..<heads {
            for i in 0..<half {
                for part in 0..<2 {
                    let from = (h * headDim + part * half + i) * columns, to = (h * headDim + 2 * i + part) * columns
                    out[to ..< to + columns] = values[from ..< from + columns]
                }
            }
        }
        return out
    }

    public func vocabulary() throws -> TokenizerVocabulary {
        let url = URL(fileURLWithPath: path)
        let tokenizer = try Self.json(url.appendingPathComponent("tokenizer.json"))
        let tokenizerConfig = (try? Self.json(url.appendingPathComponent("tokenizer_config.json"))) ?? [:]
        let config = try Self.json(url.appendingPathComponent("config.json"))
        return try TokenizerVocabulary(huggingFace: tokenizer, tokenizerConfig: tokenizerConfig, modelConfig: config, path: path)
    }

    static func json(_ url: URL) throws -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw QTaleError.invalidModel("'\(url.path)' does not exist or cannot be read")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw QTaleError.invalidModel("'\(url.path)' is not a JSON object")
        }
        return object
    }
}

extension LlamaConfiguration {
    /// The configuration in a Hugging Face `config.json` of a `LlamaForCausalLM`.
    init(huggingFace j: [String: Any], path: String) throws {
        func int(_ key: String, range: ClosedRange<Int>) throws -> Int {
            guard let v = j[key] as? Int, range.contains(v) else {
                throw QTaleError.invalidModel("'\(path)/config.json': '\(key)' is missing or not an integer in \(range)")
            }
            return v
        }
        let architectures = j["architectures"] as? [String] ?? []
        guard (j["model_type"] as? String) == "llama" || architectures.contains("LlamaForCausalLM") else {
            throw QTaleError.invalidModel("'\(path)/config.json' describes model_type '\(j["model_type"] ?? "?")'; qtale runs LLaMA-architecture models")
        }
        architecture = "llama"
        nLayers = try int("num_hidden_layers", range: 1...1024)
        dModel = try int("hidden_size", range: 1...65536)
        ffnDim = try int("intermediate_size", range: 1...1 << 20)
        nHeads = try int("num_attention_heads", range: 1...1024)
        nKVHeads = j["num_key_value_heads"] == nil ? nHeads : try int("num_key_value_heads", range: 1...nHeads)
        guard dModel % nHeads == 0, nHeads % nKVHeads == 0 else {
            throw QTaleError.invalidModel("\(nHeads) heads / \(nKVHeads) KV heads do not divide d_model \(dModel)")
        }
        headDim = dModel / nHeads
        if let explicit = j["head_dim"] as? Int, explicit != headDim {
            throw QTaleError.invalidModel("'\(path)/config.json': head_dim \(explicit) ≠ hidden_size / heads; qtale needs head_dim = d_model / heads")
        }
        ropeDims = headDim
        ropeBase = Float((j["rope_theta"] as? Double) ?? 10000)
        if let scaling = j["rope_scaling"], !(scaling is NSNull) {
            throw QTaleError.invalidModel("'\(path)/config.json' uses rope_scaling, which qtale does not implement")
        }
        guard let epsilon = j["rms_norm_eps"] as? Double, epsilon >= 0, epsilon < 1 else {
            throw QTaleError.invalidModel("'\(path)/config.json': rms_norm_eps is missing or not a small non-negative number")
        }
        normEpsilon = Float(epsilon)
        contextLength = try int("max_position_embeddings", range: 1...1 << 24)
        vocabSize = try int("vocab_size", range: 1...1 << 24)
        tiedOutput = (j["tie_word_embeddings"] as? Bool) ?? false
    }
}

extension TokenizerVocabulary {
    /// The byte-level BPE vocabulary of a Hugging Face `tokenizer.json`. Added special tokens become
    /// control tokens, as llama.cpp's converter makes them; the pre-tokenizer is recognised from its
    /// structure (digits split one by one → `smollm`, plain byte-level → `gpt2`).
    init(huggingFace j: [String: Any], tokenizerConfig: [String: Any], modelConfig: [String: Any], path: String) throws {
        guard let model = j["model"] as? [String: Any], (model["type"] as? String) == "BPE",
              let vocab = model["vocab"] as? [String: Int] else {
            throw QTaleError.invalidModel("'\(path)/tokenizer.json' is not a BPE tokenizer with a vocab")
        }
        var added: [(String, Int, Bool)] = []
        for entry in j["added_tokens"] as? [[String: Any]] ?? [] {
            if let content = entry["content"] as? String, let id = entry["id"] as? Int {
                added.append((content, id, entry["special"] as? Bool ?? false))
            }
        }
        let count = max(vocab.values.max() ?? -1, added.map(\.1).max() ?? -1) + 1
        guard count > 0, count <= 1 << 24 else { throw QTaleError.invalidModel("'\(path)/tokenizer.json' has no usable vocabulary") }
        var tokens = [String](repeating: "", count: count)
        var types = [Int32](repeating: TokenType.normal.rawValue, count: count)
        var filled = [Bool](repeating: false, count: count)
        for (token, id) in vocab where id >= 0 { tokens[id] = token; filled[id] = true }
        for (token, id, special) in added where id >= 0 {
            tokens[id] = token
            filled[id] = true
            types[id] = special ? TokenType.control.rawValue : TokenType.userDefined.rawValue
        }
        if let hole = filled.firstIndex(of: false) {
            throw QTaleError.invalidModel("'\(path)/tokenizer.json' has no token with id \(hole)")
        }
        let merges: [String] = (model["merges"] as? [Any] ?? []).compactMap { m in
            if let s = m as? String { return s }
            if let pair = m as? [String], pair.count == 2 { return pair[0] + " " + pair[1] }
            return nil
        }
        func id(_ key: String) -> Int32? {
            if let name = tokenizerConfig[key] as? String ?? (tokenizerConfig[key] as? [String: Any])?["content"] as? String,
               let i = tokens.firstIndex(of: name) { return Int32(i) }
            return (modelConfig["\(key)_id"] as? Int).map(Int32.init)
        }
        let pre = j["pre_tokenizer"] as? [String: Any] ?? [:]
        let steps = (pre["pretokenizers"] as? [[String: Any]]) ?? [pre]
        let kinds = steps.compactMap { $0["type"] as? String }
        let preTokenizer: String
        if kinds.contains("ByteLevel") && steps.contains(where: { $0["type"] as? String == "Digits" && $0["individual_digits"] as? Bool == true }) {
            preTokenizer = "smollm"
        } else if kinds == ["ByteLevel"] {
            preTokenizer = "gpt2"
        } else {
            throw QTaleError.invalidModel("'\(path)/tokenizer.json' uses pre-tokenizer steps \(kinds), which qtale does not recognise (byte-level BPE with gpt2 or smollm splitting)")
        }
        self.init(tokens: tokens, tokenTypes: types, merges: merges, bosTokenID: id("bos_token"), eosTokenID: id("eos_token"),
                  addBOS: tokenizerConfig["add_bos_token"] as? Bool ?? false, preTokenizer: preTokenizer)
    }
}
