/// The tokenizer half of a GGUF file's metadata (`tokenizer.ggml.*`), as plain values.
///
/// The loader fills this in from the GGUF keys; `BPETokenizer` validates it and builds its tables.
public struct TokenizerVocabulary: Sendable {
    /// `tokenizer.ggml.tokens`: the token texts, in id order. For a byte-level BPE ("gpt2") model these are
    /// GPT-2 byte-to-unicode encoded strings, e.g. "Ġthe" for " the".
    public var tokens: [String]
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    /// May be empty (every token is then normal), otherwise it must have at least one entry per token.
    public var tokenTypes: [Int32]
    /// `tokenizer.ggml.merges`: "left right" strings in rank order (rank 0 first).
    public var merges: [String]
    /// `tokenizer.ggml.bos_token_id`.
    public var bosTokenID: Int32?
    /// `tokenizer.ggml.eos_token_id`.
    public var eosTokenID: Int32?
    /// `tokenizer.ggml.add_bos_token` (false for SmolLM2).
    public var addBOS: Bool
    /// `tokenizer.ggml.pre`, e.g. "smollm". Empty means llama.cpp's "default" pre-tokenizer.
    public var preTokenizer: String

    public init(tokens: [String],
                tokenTypes: [Int32],
                merges: [String],
                bosTokenID: Int32? = nil,
                eosTokenID: Int32? = nil,
                addBOS: Bool = false,
                preTokenizer: String) {
        self.tokens = tokens
        self.tokenTypes = tokenTypes
        self.merges = merges
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
        self.addBOS = addBOS
        self.preTokenizer = preTokenizer
    }
}

/// GGUF token types (`tokenizer.ggml.token_type`), as llama.cpp numbers them.
public enum TokenType: Int32, Sendable {
    case undefined = 0
    case normal = 1
    case unknown = 2
    case control = 3
    case userDefined = 4
    case unused = 5
    case byte = 6
}

public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// `tokenizer.ggml.pre` names a pre-tokenizer this module does not implement.
    case unsupportedPreTokenizer(String)
    /// A `tokenizer.ggml.merges` entry is not of the form "left right".
    case malformedMerge(index: Int, text: String)
    /// A special token id (BOS/EOS) is outside the vocabulary.
    case tokenIDOutOfRange(name: String, id: Int32, vocabularySize: Int)
    /// `tokenizer.ggml.token_type` has fewer entries than `tokenizer.ggml.tokens`.
    case tokenTypeCountMismatch(tokens: Int, tokenTypes: Int)
    /// The vocabulary has no tokens at all.
    case emptyVocabulary

    public var description: String {
        switch self {
        case .unsupportedPreTokenizer(let name):
            return "unsupported BPE pre-tokenizer '\(name)' (tokenizer.ggml.pre); supported: "
                + BPETokenizer.supportedPreTokenizers.sorted().map { "'\($0)'" }.joined(separator: ", ")
        case .malformedMerge(let index, let text):
            return "malformed BPE merge #\(index) \(String(reflecting: text)): expected \"left right\" (tokenizer.ggml.merges)"
        case .tokenIDOutOfRange(let name, let id, let size):
            return "\(name) token id \(id) is out of range for a vocabulary of \(size) tokens"
        case .tokenTypeCountMismatch(let tokens, let types):
            return "tokenizer.ggml.token_type has \(types) entries but tokenizer.ggml.tokens has \(tokens)"
        case .emptyVocabulary:
            return "the vocabulary has no tokens (tokenizer.ggml.tokens is empty)"
        }
    }
}
