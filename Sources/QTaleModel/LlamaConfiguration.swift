import QTaleCore
import QTaleGGUF

/// LLaMA hyper-parameters, read from GGUF metadata (`<arch>.*` keys).
public struct LlamaConfiguration: Sendable, Equatable, Codable {
    public var architecture: String
    public var nLayers: Int
    public var dModel: Int
    public var ffnDim: Int
    public var nHeads: Int
    public var nKVHeads: Int
    public var headDim: Int
    public var ropeBase: Float
    public var ropeDims: Int
    public var normEpsilon: Float
    public var contextLength: Int
    public var vocabSize: Int
    /// True when the output head reuses the token embedding (no `output.weight` tensor).
    public var tiedOutput: Bool

    public init(gguf: GGUFFile) throws {
        func value(_ key: String) throws -> GGUFValue {
            guard let v = gguf.metadata[key] else {
                throw QTaleError.invalidModel("'\(gguf.file.path)' is missing required metadata '\(key)'")
            }
            return v
        }
        func int(_ key: String, range: ClosedRange<Int>) throws -> Int {
            guard let v = try value(key).int, range.contains(v) else {
                throw QTaleError.invalidModel("metadata '\(key)' = \(try value(key)) is not an integer in \(range)")
            }
            return v
        }
        guard let arch = try value("general.architecture").string else {
            throw QTaleError.invalidModel("metadata 'general.architecture' is not a string")
        }
        guard arch == "llama" else {
            throw QTaleError.invalidModel("architecture '\(arch)' is not supported (qtale runs LLaMA-architecture models)")
        }
        architecture = arch
        nLayers = try int("\(arch).block_count", range: 1...1024)
        dModel = try int("\(arch).embedding_length", range: 1...65536)
        ffnDim = try int("\(arch).feed_forward_length", range: 1...1 << 20)
        nHeads = try int("\(arch).attention.head_count", range: 1...1024)
        nKVHeads = gguf.metadata["\(arch).attention.head_count_kv"] == nil
            ? nHeads : try int("\(arch).attention.head_count_kv", range: 1...nHeads)
        guard dModel % nHeads == 0, nHeads % nKVHeads == 0 else {
            throw QTaleError.invalidModel("\(nHeads) heads / \(nKVHeads) KV heads do not divide d_model \(dModel)")
        }
        headDim = dModel / nHeads
        ropeDims = gguf.metadata["\(arch).rope.dimension_count"] == nil
            ? headDim : try int("\(arch).rope.dimension_count", range: 2...headDim)
        ropeBase = Float(gguf.metadata["\(arch).rope.freq_base"]?.double ?? 10000)
        guard let epsilon = try value("\(arch).attention.layer_norm_rms_epsilon").double, epsilon >= 0, epsilon < 1 else {
            throw QTaleError.invalidModel("metadata '\(arch).attention.layer_norm_rms_epsilon' is not a small non-negative number")
        }
        normEpsilon = Float(epsilon)
        contextLength = try int("\(arch).context_length", range: 1...1 << 24)
        guard let tokens = gguf.metadata["tokenizer.ggml.tokens"]?.array else {
            throw QTaleError.invalidModel("'\(gguf.file.path)' is missing required metadata 'tokenizer.ggml.tokens'")
        }
        vocabSize = gguf.metadata["\(arch).vocab_size"]?.int ?? tokens.count
        tiedOutput = gguf.tensor(named: "output.weight") == nil
    }
}
