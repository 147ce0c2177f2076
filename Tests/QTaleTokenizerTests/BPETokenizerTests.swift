import XCTest
@testable import QTaleTokenizer

final class BPETokenizerTests: XCTestCase {
    private var tok: BPETokenizer!

    override func setUpWithError() throws {
        tok = try TinyVocabulary.tokenizer()
    }

    private func id(_ text: String) -> Int32 {
        guard let id = tok.tokenID(of: text) else {
            XCTFail("no token \(text)")
            return -1
        }
        return id
    }

    private func b(_ s: String) -> [Int32] { TinyVocabulary.byteIDs(s) }

    // MARK: Vocabulary basics

    func testByteLevelAlphabet() {
        XCTAssertEqual(TinyVocabulary.byteChar(0x20), "Ġ")
        XCTAssertEqual(TinyVocabulary.byteChar(0x0A), "Ċ")
        XCTAssertEqual(TinyVocabulary.byteChar(0x09), "ĉ")
        XCTAssertEqual(TinyVocabulary.byteChar(0x41), "A")
        XCTAssertEqual(ByteLevel.encode(Array(" the\n".utf8)), "ĠtheĊ")
        for byte in 0...255 {
            XCTAssertEqual(ByteLevel.string(forByte: UInt8(byte)), TinyVocabulary.byteChar(UInt8(byte)))
        }
    }

    func testLookupsAndSizes() {
        XCTAssertEqual(tok.vocabularySize, 5 + 256 + 10)
        XCTAssertEqual(tok.tokenID(of: "<|im_start|>"), 1)
        XCTAssertEqual(tok.tokenID(of: "Ġthe"), 5 + 256 + 2)
        XCTAssertNil(tok.tokenID(of: "xy"))
        XCTAssertEqual(tok.bosTokenID, 1)
        XCTAssertEqual(tok.eosTokenID, 2)
        XCTAssertEqual(tok.endOfGenerationTokenIDs, [0, 2])  // <|endoftext|>, <|im_end|> (= EOS)
    }

    // MARK: Merges

    func testMergesFollowRankOrder() {
        // "hello": h+e (rank 0), l+l (3), he+ll (5), hell+o (6).
        XCTAssertEqual(tok.encode("hello"), [id("hello")])
        // "ell": l+l (rank 3) beats e+l (rank 7), then e+ll (4). The wrong order would give [el, l].
        XCTAssertEqual(tok.encode("ell"), [id("ell")])
        // " the": h+e first (rank 0), then Ġ+t (1), then Ġt+he (2).
        XCTAssertEqual(tok.encode(" the"), [id("Ġthe")])
        // "the": no merge joins t and he.
        XCTAssertEqual(tok.encode("the"), [TinyVocabulary.byteID(UInt8(ascii: "t")), id("he")])
    }

    func testEqualRanksMergeLeftmostFirst() {
        XCTAssertEqual(tok.encode("lll"), [id("ll"), TinyVocabulary.byteID(UInt8(ascii: "l"))])
        XCTAssertEqual(tok.encode("llll"), [id("ll"), id("ll")])
    }

    func testVocabularyTokenWithoutMergeStillSplits() {
        // "ab" is a token, but no merge builds it: llama.cpp (and this tokenizer) give the two bytes.
        XCTAssertEqual(tok.encode("ab"), b("ab"))
    }

    func testMergeResultMissingFromVocabularyFallsBackToBytes() {
        // x+y merges to "xy", which is no token; "xy"+"z" is.
        XCTAssertEqual(tok.encode("xyz"), [id("xyz")])
        XCTAssertEqual(tok.encode("xy"), b("xy"))
    }

    func testUnmergedBytesFallBackToByteTokens() {
        XCTAssertEqual(tok.encode("é"), [TinyVocabulary.byteID(0xC3), TinyVocabulary.byteID(0xA9)])
        XCTAssertEqual(tok.encode("😀"), [0xF0, 0x9F, 0x98, 0x80].map(TinyVocabulary.byteID))
        XCTAssertEqual(tok.encode("a\u{0}b"), [TinyVocabulary.byteID(0x61), TinyVocabulary.byteID(0), TinyVocabulary.byteID(0x62)])
    }

    func testWordsAndWhitespace() {
        // "hello", " world" (no merges for it), then "\n" alone.
        XCTAssertEqual(tok.encode("hello world\n"), [id("hello")] + b(" world") + b("\n"))
        // Three spaces before a word: "  " then " the".
        XCTAssertEqual(tok.encode("hello   the"), [id("hello")] + b("  ") + [id("Ġthe")])
    }

    // MARK: Special tokens

    func testSpecialTokensArePartitionedFirst() {
        let ids = tok.encode("<|im_start|>user\nhi<|im_end|>\n")
        XCTAssertEqual(ids, [1] + b("user") + b("\n") + b("hi") + [2] + b("\n"))
        // Pre-tokenization restarts after a special token: " the" still merges, "hi " keeps its space.
        XCTAssertEqual(tok.encode("hi <|im_end|> the"), b("hi") + b(" ") + [2] + [id("Ġthe")])
    }

    func testLongestSpecialTokenWins() {
        XCTAssertEqual(tok.encode("<|im_end|><|im"), [2, 4])
        XCTAssertEqual(tok.encode("<|im_start|><|imx"), [1, 4] + b("x"))
        XCTAssertEqual(tok.encode("<|endoftext|>"), [0])
    }

    func testParseSpecialFalseKeepsControlTextButSplitsUserDefined() {
        let text = "<|im_start|>user\nhi<|im_end|>"
        XCTAssertEqual(tok.encode(text, parseSpecial: false), b(text))
        // User-defined tokens are split out either way (llama.cpp behaviour).
        XCTAssertEqual(tok.encode("a<tool>b", parseSpecial: false), b("a") + [3] + b("b"))
        XCTAssertEqual(tok.encode("a<tool>b"), b("a") + [3] + b("b"))
    }

    func testBOS() throws {
        XCTAssertEqual(tok.encode("hello"), [id("hello")])
        XCTAssertEqual(tok.encode("hello", addBOS: true), [1, id("hello")])
        XCTAssertEqual(tok.encode("", addBOS: true), [1])
        XCTAssertEqual(tok.encode(""), [])
        let withBOS = try TinyVocabulary.tokenizer(addBOS: true)
        XCTAssertEqual(withBOS.encode("hello"), [1, withBOS.tokenID(of: "hello")!])
        XCTAssertEqual(withBOS.encode("hello", addBOS: false), [withBOS.tokenID(of: "hello")!])
    }

    // MARK: Decoding

    func testDecodeRoundTrips() {
        for text in ["hello world", " the lll xyz", "é😀\n\t", "a\u{0}b", "  trailing  "] {
            XCTAssertEqual(tok.decode(tok.encode(text)), text, "\(text.debugDescription)")
        }
    }

    func testDecodeHidesControlTokensUnlessRendered() {
        let ids = tok.encode("<|im_start|>hi<tool><|im_end|>")
        XCTAssertEqual(tok.decode(ids), "hi<tool>")
        XCTAssertEqual(tok.decode(ids, renderSpecial: true), "<|im_start|>hi<tool><|im_end|>")
        XCTAssertEqual(tok.bytes(of: 2), [])
        XCTAssertEqual(tok.bytes(of: 2, renderSpecial: true), Array("<|im_end|>".utf8))
        XCTAssertEqual(tok.bytes(of: id("Ġthe")), Array(" the".utf8))
        XCTAssertEqual(tok.bytes(of: TinyVocabulary.byteID(0xC3)), [0xC3])
        XCTAssertEqual(tok.bytes(of: -1), [])
        XCTAssertEqual(tok.bytes(of: 100_000), [])
    }

    // MARK: Errors

    func testErrors() {
        var v = TinyVocabulary.vocabulary()
        v.preTokenizer = "klingon"
        XCTAssertThrowsError(try BPETokenizer(vocabulary: v)) { error in
            XCTAssertEqual(error as? TokenizerError, .unsupportedPreTokenizer("klingon"))
            XCTAssertTrue("\(error)".contains("klingon"))
            XCTAssertTrue("\(error)".contains("smollm"))
        }

        v = TinyVocabulary.vocabulary()
        v.merges.append("nospace")
        XCTAssertThrowsError(try BPETokenizer(vocabulary: v)) { error in
            XCTAssertEqual(error as? TokenizerError, .malformedMerge(index: 10, text: "nospace"))
            XCTAssertTrue("\(error)".contains("nospace"))
        }

        v = TinyVocabulary.vocabulary()
        v.eosTokenID = 9999
        XCTAssertThrowsError(try BPETokenizer(vocabulary: v)) { error in
            XCTAssertEqual(error as? TokenizerError, .tokenIDOutOfRange(name: "EOS", id: 9999, vocabularySize: 271))
            XCTAssertTrue("\(error)".contains("9999"))
        }

        v = TinyVocabulary.vocabulary()
        v.tokenTypes.removeLast()
        XCTAssertThrowsError(try BPETokenizer(vocabulary: v))
    }

    func testOtherPreTokenizers() throws {
        let gpt2 = try TinyVocabulary.tokenizer(preTokenizer: "gpt-2")
        XCTAssertEqual(gpt2.encode(" the"), [id("Ġthe")])
        let def = try TinyVocabulary.tokenizer(preTokenizer: "default")
        XCTAssertEqual(def.encode("hello"), [id("hello")])
    }
}
