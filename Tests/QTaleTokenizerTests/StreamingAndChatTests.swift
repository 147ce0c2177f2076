import XCTest
@testable import QTaleTokenizer

final class StreamingTextDecoderTests: XCTestCase {
    private var tok: BPETokenizer!

    override func setUpWithError() throws {
        tok = try TinyVocabulary.tokenizer()
    }

    func testEmojiSplitOverByteTokensIsHeldBack() {
        var decoder = StreamingTextDecoder(tokenizer: tok)
        let ids = [0xF0, 0x9F, 0x98, 0x80].map(TinyVocabulary.byteID)  // 😀
        XCTAssertEqual(decoder.append(ids[0]), "")
        XCTAssertEqual(decoder.append(ids[1]), "")
        XCTAssertEqual(decoder.append(ids[2]), "")
        XCTAssertEqual(decoder.append(ids[3]), "😀")
        XCTAssertEqual(decoder.flush(), "")
    }

    func testCompleteTextIsEmittedImmediately() {
        var decoder = StreamingTextDecoder(tokenizer: tok)
        XCTAssertEqual(decoder.append(tok.tokenID(of: "hello")!), "hello")
        XCTAssertEqual(decoder.append(tok.tokenID(of: "Ġthe")!), " the")
        // ASCII followed by the first byte of "é": the ASCII goes out, the lead byte waits.
        XCTAssertEqual(decoder.append(TinyVocabulary.byteID(0x61)), "a")
        XCTAssertEqual(decoder.append(TinyVocabulary.byteID(0xC3)), "")
        XCTAssertEqual(decoder.append(TinyVocabulary.byteID(0xA9)), "é")
    }

    func testFlushAndInvalidBytes() {
        var decoder = StreamingTextDecoder(tokenizer: tok)
        XCTAssertEqual(decoder.append(TinyVocabulary.byteID(0x62)), "b")
        XCTAssertEqual(decoder.append(TinyVocabulary.byteID(0xE6)), "")   // lead byte of a 3-byte character
        XCTAssertEqual(decoder.flush(), "\u{FFFD}")                       // never completed
        XCTAssertEqual(decoder.flush(), "")
        // A byte that can never start a character is not held back.
        XCTAssertEqual(decoder.append(TinyVocabulary.byteID(0xFF)), "\u{FFFD}")
        // A lead byte followed by a non-continuation byte: both go out at once.
        XCTAssertEqual(decoder.append(TinyVocabulary.byteID(0xC3)), "")
        XCTAssertEqual(decoder.append(TinyVocabulary.byteID(0x41)), "\u{FFFD}A")
    }

    func testControlTokensRenderOnlyWhenAsked() {
        var plain = StreamingTextDecoder(tokenizer: tok)
        XCTAssertEqual(plain.append(TinyVocabulary.imEnd), "")
        var rendered = StreamingTextDecoder(tokenizer: tok, renderSpecial: true)
        XCTAssertEqual(rendered.append(TinyVocabulary.imEnd), "<|im_end|>")
    }

    func testStreamingMatchesWholeDecode() {
        let text = "héllo 😀 wörld 日本 the end"
        let ids = tok.encode(text)
        var decoder = StreamingTextDecoder(tokenizer: tok)
        var out = ""
        for id in ids {
            let piece = decoder.append(id)
            XCTAssertFalse(piece.contains("\u{FFFD}"))
            out += piece
        }
        out += decoder.flush()
        XCTAssertEqual(out, text)
    }

    func testIncompleteSuffixLength() {
        XCTAssertEqual(StreamingTextDecoder.incompleteSuffixLength([]), 0)
        XCTAssertEqual(StreamingTextDecoder.incompleteSuffixLength([0x41]), 0)
        XCTAssertEqual(StreamingTextDecoder.incompleteSuffixLength([0x41, 0xF0, 0x9F]), 2)
        XCTAssertEqual(StreamingTextDecoder.incompleteSuffixLength([0xF0, 0x9F, 0x98]), 3)
        XCTAssertEqual(StreamingTextDecoder.incompleteSuffixLength([0xF0, 0x9F, 0x98, 0x80]), 0)
        XCTAssertEqual(StreamingTextDecoder.incompleteSuffixLength([0xE0, 0x80]), 0)  // overlong: invalid
        XCTAssertEqual(StreamingTextDecoder.incompleteSuffixLength([0xED, 0xA0]), 0)  // surrogate: invalid
    }
}

final class ChatTemplateTests: XCTestCase {
    func testChatMLWithDefaultSystemPrompt() {
        XCTAssertEqual(ChatTemplate.chatML(user: "What is 2+2?"),
                       "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                       + "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    }

    func testChatMLWithSystemPrompt() {
        XCTAssertEqual(ChatTemplate.chatML(user: "hi", system: "Be brief."),
                       "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    }

    func testChatMLConversation() {
        let messages = [ChatTemplate.Message(role: "user", content: "hi"),
                        ChatTemplate.Message(role: "assistant", content: "Hello!"),
                        ChatTemplate.Message(role: "user", content: "bye")]
        XCTAssertEqual(ChatTemplate.chatML(messages: messages, addGenerationPrompt: false, defaultSystem: nil),
                       "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nbye<|im_end|>\n")
    }

    func testChatMLTokenizesWithControlTokens() throws {
        let tok = try TinyVocabulary.tokenizer()
        let ids = tok.encode(ChatTemplate.chatML(user: "hi", system: "s"))
        let b = TinyVocabulary.byteIDs
        XCTAssertEqual(ids, [1] + b("system\ns") + [2] + b("\n") + [1] + b("user\nhi") + [2] + b("\n")
                            + [1] + b("assistant\n"))
    }
}
