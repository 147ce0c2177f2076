import XCTest
@testable import QTaleTokenizer

/// Pre-tokenizer splits, with expected pieces worked out by hand from llama.cpp's regexes.
final class PreTokenizerTests: XCTestCase {
    private func pieces(_ text: String, _ name: String = "smollm") throws -> [String] {
        let pre = try PreTokenizer(name: name)
        let scalars = Array(text.unicodeScalars)
        let cpts = scalars.map(\.value)
        let flags = cpts.map(CodepointFlags.of)
        var out: [String] = []
        var start = 0
        for length in pre.split(cpts: cpts, flags: flags) {
            var s = String.UnicodeScalarView()
            s.append(contentsOf: scalars[start..<(start + length)])
            out.append(String(s))
            start += length
        }
        XCTAssertEqual(start, cpts.count, "pieces must cover the text")
        return out
    }

    func testWordsTakeOneLeadingSpace() throws {
        XCTAssertEqual(try pieces("Hello world"), ["Hello", " world"])
        XCTAssertEqual(try pieces("Hello, world!"), ["Hello", ",", " world", "!"])
        XCTAssertEqual(try pieces(" leading"), [" leading"])
        XCTAssertEqual(try pieces("café naïve"), ["café", " naïve"])
        XCTAssertEqual(try pieces("日本語 テキスト"), ["日本語", " テキスト"])
    }

    func testDigitsAreSplitIndividually() throws {
        XCTAssertEqual(try pieces("abc123def"), ["abc", "1", "2", "3", "def"])
        // The digit split runs first, so " 42" cannot become " 42": the space is left on its own.
        XCTAssertEqual(try pieces(" 42"), [" ", "4", "2"])
        XCTAssertEqual(try pieces("year 2024!"), ["year", " ", "2", "0", "2", "4", "!"])
        // Non-ASCII numbers are \p{N} too.
        XCTAssertEqual(try pieces("x²½"), ["x", "²", "½"])
        XCTAssertEqual(try pieces("٣٤"), ["٣", "٤"])
    }

    func testWhitespaceRuns() throws {
        // \s+(?!\S): a run before a word gives up its last space to the word.
        XCTAssertEqual(try pieces("Hello   world"), ["Hello", "  ", " world"])
        // At the end of the text the whole run is one piece.
        XCTAssertEqual(try pieces("trailing  "), ["trailing", "  "])
        XCTAssertEqual(try pieces("end "), ["end", " "])
        // Newlines: the run minus its last character, then the last one alone (\s+).
        XCTAssertEqual(try pieces("a\n\nb"), ["a", "\n", "\n", "b"])
        XCTAssertEqual(try pieces("a \n b"), ["a", " \n", " b"])
        XCTAssertEqual(try pieces("\t\tx"), ["\t", "\t", "x"])
        XCTAssertEqual(try pieces("    return"), ["   ", " return"])
        // Only an ASCII space is the optional prefix of a word; NBSP is whitespace on its own.
        XCTAssertEqual(try pieces("a\u{A0}b"), ["a", "\u{A0}", "b"])
        XCTAssertEqual(try pieces("a \u{3000}b"), ["a", " ", "\u{3000}", "b"])
    }

    func testContractions() throws {
        XCTAssertEqual(try pieces("don't"), ["don", "'t"])
        XCTAssertEqual(try pieces("we've they're I'm it'll he'd"),
                       ["we", "'ve", " they", "'re", " I", "'m", " it", "'ll", " he", "'d"])
        // Case-sensitive: "'LL" is punctuation followed by a word.
        XCTAssertEqual(try pieces("I'LL"), ["I", "'", "LL"])
        XCTAssertEqual(try pieces("x 's"), ["x", " '", "s"])
    }

    func testPunctuationAndSymbols() throws {
        XCTAssertEqual(try pieces("a--b__c"), ["a", "--", "b", "__", "c"])
        XCTAssertEqual(try pieces("(foo) {bar}"), ["(", "foo", ")", " {", "bar", "}"])
        XCTAssertEqual(try pieces("😀 hi"), ["😀", " hi"])
        XCTAssertEqual(try pieces("x = 1;"), ["x", " =", " ", "1", ";"])
    }

    func testGPT2PreTokenizerKeepsNumbersTogether() throws {
        XCTAssertEqual(try pieces("abc123def", "gpt-2"), ["abc", "123", "def"])
        XCTAssertEqual(try pieces(" 42", "gpt-2"), [" 42"])
        XCTAssertEqual(try pieces("Hello   world", "gpt-2"), ["Hello", "  ", " world"])
    }

    func testDefaultPreTokenizer() throws {
        // Punctuation runs first, then GPT-2, then \p{N}+, then [0-9]{3} chunks from the left.
        XCTAssertEqual(try pieces("a!!b", "default"), ["a", "!!", "b"])
        XCTAssertEqual(try pieces("12345", "default"), ["123", "45"])
        XCTAssertEqual(try pieces(" x!!", "default"), [" x", "!!"])
    }

    func testUnknownPreTokenizerThrows() {
        XCTAssertThrowsError(try PreTokenizer(name: "llama3")) { error in
            XCTAssertEqual(error as? TokenizerError, .unsupportedPreTokenizer("llama3"))
        }
    }

    func testCodepointClassesMatchLlamaTables() {
        XCTAssertEqual(CodepointFlags.of(0x41), [.defined, .letter])
        XCTAssertEqual(CodepointFlags.of(0x35), [.defined, .number])
        XCTAssertEqual(CodepointFlags.of(0x2C), [.defined, .punctuation])
        XCTAssertEqual(CodepointFlags.of(0x24), [.defined])                 // '$' is a symbol
        XCTAssertEqual(CodepointFlags.of(0x0A), [.defined, .whitespace])
        XCTAssertEqual(CodepointFlags.of(0x1C), [.defined])                 // not whitespace for llama.cpp
        XCTAssertEqual(CodepointFlags.of(0x4E2D), [.defined, .letter])      // 中
        XCTAssertEqual(CodepointFlags.of(0x00B2), [.defined, .number])      // ²
        XCTAssertEqual(CodepointFlags.of(0x2003), [.defined, .whitespace])  // em space
        XCTAssertEqual(CodepointFlags.of(0x1F600), [.defined])              // 😀
        XCTAssertEqual(CodepointFlags.of(0x0301), [.defined])               // combining acute (\p{M})
    }
}
