import QTaleData

/// A choice as tokens: what the model reads, and the tokens whose log-likelihood is summed.
public struct TokenizedChoice: Sendable, Equatable {
    public var context: [Int32]
    public var continuation: [Int32]

    public init(context: [Int32], continuation: [Int32]) {
        self.context = context
        self.continuation = continuation
    }
}

/// Tokenization exactly as lm-evaluation-harness's `_encode_pair` does it, because where the context
/// ends and the continuation begins changes the scores:
///
/// 1. trailing whitespace of the context moves to the front of the continuation;
/// 2. `context + continuation` is encoded whole and `context` alone; the continuation's tokens are the
///    whole's tokens after the context's count (so a merge across the boundary is scored with the
///    continuation), and the model reads `context tokens + continuation tokens`;
/// 3. an empty context becomes the single `emptyContextToken` (lm-eval's prefix token: BOS, else EOT).
///
/// `encode` must add no BOS and parse no special tokens: lm-eval's HF model encodes with
/// `add_special_tokens=False` (no BOS for SmolLM2/LLaMA-2-style byte-level BPE tokenizers that do not add
/// one themselves; SmolLM2's GGUF says `add_bos_token = false`), and dataset text is plain text.
public struct ContinuationEncoder {
    public let encode: (String) -> [Int32]
    public let emptyContextToken: Int32?

    public init(emptyContextToken: Int32?, encode: @escaping (String) -> [Int32]) {
        self.encode = encode
        self.emptyContextToken = emptyContextToken
    }

    public func tokens(_ prompt: ChoicePrompt) -> TokenizedChoice {
        var context = prompt.context, continuation = prompt.continuation
        let kept = context.unicodeScalars.reversed().drop(while: { $0.properties.isWhitespace }).count
        let spaces = context.unicodeScalars.count - kept
        if spaces > 0 {
            let scalars = Array(context.unicodeScalars)
            continuation = String(String.UnicodeScalarView(scalars[kept...])) + continuation
            context = String(String.UnicodeScalarView(scalars[..<kept]))
        }
        if context.isEmpty {
            return TokenizedChoice(context: emptyContextToken.map { [$0] } ?? [], continuation: encode(continuation))
        }
        let whole = encode(context + continuation), contextTokens = encode(context)
        return TokenizedChoice(context: contextTokens, continuation: Array(whole.dropFirst(contextTokens.count)))
    }
}
