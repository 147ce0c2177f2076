/// Streams generated text: feed tokens one by one, get back only complete, valid UTF-8.
///
/// A byte-level BPE model can emit a multi-byte character (an emoji, CJK, an accented letter) split over
/// several tokens; printing each token's bytes on their own would show replacement characters. This
/// decoder holds back a trailing, still-incomplete UTF-8 sequence until the tokens that complete it arrive.
/// Bytes that can never become valid UTF-8 are emitted as U+FFFD rather than held back.
public struct StreamingTextDecoder: Sendable {
    public let tokenizer: BPETokenizer
    /// Whether control tokens (e.g. <|im_end|>) are rendered as their text.
    public var renderSpecial: Bool
    private var pending: [UInt8] = []

    public init(tokenizer: BPETokenizer, renderSpecial: Bool = false) {
        self.tokenizer = tokenizer
        self.renderSpecial = renderSpecial
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    public mutating func append(_ token: Int32) -> String {
        tokenizer.appendBytes(of: token, renderSpecial: renderSpecial, to: &pending)
        let keep = Self.incompleteSuffixLength(pending)
        if keep == pending.count { return "" }
        let text = String(decoding: pending[..<(pending.count - keep)], as: UTF8.self)
        pending.removeFirst(pending.count - keep)
        return text
    }

    /// Returns whatever is still held back (an incomplete sequence becomes U+FFFD) and resets the decoder.
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// Number of bytes held back: the length of a trailing UTF-8 sequence that is a valid but
    /// incomplete prefix of a character (0 if the buffer ends on a character boundary or the tail is invalid).
    static func incompleteSuffixLength(_ bytes: [UInt8]) -> Int {
        let n = bytes.count
        // Walk back over at most 3 continuation bytes to the lead byte.
        var k = 0
        while k < 3 && k < n && (bytes[n - 1 - k] & 0xC0) == 0x80 { k += 1 }
        guard k < n else { return 0 }
        let lead = bytes[n - 1 - k]
        let need: Int
        switch lead {
        case 0xC2...0xDF: need = 2
        case 0xE0...0xEF: need = 3
        case 0xF0...0xF4: need = 4
        default: return 0  // ASCII, a stray continuation run or an invalid lead byte: nothing to wait for
        }
        let have = k + 1
        guard have < need else { return 0 }
        // The second byte of some sequences has a narrower valid range (no overlongs, surrogates, > U+10FFFF).
        if have >= 2 {
            let second = bytes[n - k]
            switch lead {
            case 0xE0: if second < 0xA0 { return 0 }
            case 0xED: if second > 0x9F { return 0 }
            case 0xF0: if second < 0x90 { return 0 }
            case 0xF4: if second > 0x8F { return 0 }
            default: break
            }
        }
        return have
    }
}
