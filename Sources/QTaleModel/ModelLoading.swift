import QTaleCore
import QTaleGGUF
import QTaleTokenizer

/// A model opened for inference (GGUF, qtale safetensors or a Hugging Face directory):
/// configuration, tokenizer and weights on one engine, plus any routers stored with it.
public final class LoadedModel {
    public let path: String
    public let source: any ModelSource
    public let configuration: LlamaConfiguration
    public let tokenizer: BPETokenizer
    public let weights: LlamaWeights
    public let engine: any ComputeEngine

    public convenience init(path: String, engine: any ComputeEngine) throws {
        try self.init(source: ModelSources.open(path), engine: engine)
    }

    public init(source: any ModelSource, engine: any ComputeEngine) throws {
        self.source = source
        path = source.path
        configuration = source.configuration
        tokenizer = try BPETokenizer(vocabulary: source.vocabulary())
        guard tokenizer.vocabularySize <= configuration.vocabSize else {
            throw QTaleError.invalidModel("the tokenizer has \(tokenizer.vocabularySize) tokens but the model only \(configuration.vocabSize)")
        }
        weights = try LlamaWeights(source: source, engine: engine)
        self.engine = engine
    }

    /// A fresh inference session (KV cache and activations) over these weights.
    public func makeSession(contextLength: Int? = nil, maxBatch: Int = 128, policy: ExecutionPolicy = .dense) throws -> LlamaModel {
        try LlamaModel(weights: weights, engine: engine,
                       contextLength: contextLength ?? min(configuration.contextLength, 2048), maxBatch: maxBatch, policy: policy)
    }
}

extension TokenizerVocabulary {
    /// The tokenizer described by `tokenizer.ggml.*` metadata.
    public init(gguf: GGUFFile) throws {
        let m = gguf.metadata
        guard let model = m["tokenizer.ggml.model"]?.string else {
            throw QTaleError.invalidModel("'\(gguf.file.path)' is missing required metadata 'tokenizer.ggml.model'")
        }
        guard model == "gpt2" else {
            throw QTaleError.invalidModel("tokenizer model '\(model)' is not supported (qtale reads byte-level BPE, 'gpt2')")
        }
        guard let tokens = m["tokenizer.ggml.tokens"]?.array?.compactMap(\.string), !tokens.isEmpty else {
            throw QTaleError.invalidModel("'\(gguf.file.path)' is missing required metadata 'tokenizer.ggml.tokens'")
        }
        guard let merges = m["tokenizer.ggml.merges"]?.array?.compactMap(\.string) else {
            throw QTaleError.invalidModel("'\(gguf.file.path)' is missing required metadata 'tokenizer.ggml.merges'")
        }
        let types = m["tokenizer.ggml.token_type"]?.array?.compactMap { $0.int.map(Int32.init) }
            ?? [Int32](repeating: 1, count: tokens.count)
        guard types.count == tokens.count else {
            throw QTaleError.invalidModel("tokenizer.ggml.token_type has \(types.count) entries for \(tokens.count) tokens")
        }
        func id(_ key: String) throws -> Int32? {
            guard let v = m[key] else { return nil }
            guard let i = v.int, i >= 0, i < tokens.count else {
                throw QTaleError.invalidModel("metadata '\(key)' = \(v) is not a token id")
            }
            return Int32(i)
        }
        self.init(tokens: tokens, tokenTypes: types, merges: merges,
                  bosTokenID: try id("tokenizer.ggml.bos_token_id"), eosTokenID: try id("tokenizer.ggml.eos_token_id"),
                  addBOS: m["tokenizer.ggml.add_bos_token"]?.bool ?? false,
                  preTokenizer: m["tokenizer.ggml.pre"]?.string ?? "default")
    }
}
