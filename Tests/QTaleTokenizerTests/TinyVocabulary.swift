@testable import QTaleTokenizer

/// A small hand-built byte-level BPE vocabulary for unit tests.
///
/// ids 0...4: special tokens; ids 5...260: the 256 single-byte tokens (byte b has id 5 + b);
/// then a few merged tokens. The merges are listed in rank order.
enum TinyVocabulary {
    static let endOfText: Int32 = 0   // "<|endoftext|>" control
    static let imStart: Int32 = 1     // "<|im_start|>" control
    static let imEnd: Int32 = 2       // "<|im_end|>" control (EOS)
    static let tool: Int32 = 3        // "<tool>" user-defined
    static let imShort: Int32 = 4     // "<|im" control: a prefix of the longer control tokens

    static let specials: [(String, Int32)] = [
        ("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 3), ("<tool>", 4), ("<|im", 3),
    ]

    /// GPT-2's byte-to-unicode mapping, written out independently of the module's implementation:
    /// printable Latin-1 bytes stand for themselves, the other 68 bytes become U+0100... in byte order.
    static func byteChar(_ b: UInt8) -> String {
        func printable(_ x: Int) -> Bool { (0x21...0x7E).contains(x) || (0xA1...0xAC).contains(x) || (0xAE...0xFF).contains(x) }
        if printable(Int(b)) { return String(UnicodeScalar(b)) }
        let n = (0..<Int(b)).filter { !printable($0) }.count
        return String(UnicodeScalar(UInt32(256 + n))!)
    }

    static func byteID(_ b: UInt8) -> Int32 { 5 + Int32(b) }
    static func byteIDs(_ s: String) -> [Int32] { s.utf8.map(byteID) }

    /// Merged tokens, in the order they follow the byte tokens. "xy" is deliberately absent (a merge
    /// produces it but it is no token), and "ab" is a token that no merge produces.
    static let mergedTokens = ["he", "Ġt", "Ġthe", "ll", "ell", "hell", "hello", "el", "xyz", "ab"]
    static let merges = ["h e", "Ġ t", "Ġt he", "l l", "e ll", "he ll", "hell o", "e l", "x y", "xy z"]

    static func vocabulary(preTokenizer: String = "smollm", addBOS: Bool = false) -> TokenizerVocabulary {
        var tokens = specials.map(\.0)
        var types = specials.map(\.1)
        for b in 0...255 {
            tokens.append(byteChar(UInt8(b)))
            types.append(1)
        }
        tokens += mergedTokens
        types += mergedTokens.map { _ in 1 }
        return TokenizerVocabulary(tokens: tokens, tokenTypes: types, merges: merges,
                                   bosTokenID: imStart, eosTokenID: imEnd, addBOS: addBOS,
                                   preTokenizer: preTokenizer)
    }

    static func tokenizer(preTokenizer: String = "smollm", addBOS: Bool = false) throws -> BPETokenizer {
        try BPETokenizer(vocabulary: vocabulary(preTokenizer: preTokenizer, addBOS: addBOS))
    }
}
