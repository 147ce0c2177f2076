/// Byte-level BPE pre-tokenization, mirroring llama.cpp's `unicode_regex_split` for the pre-tokenizer
/// types this module supports.
///
/// llama.cpp applies a list of regexes in sequence: each one splits every piece produced so far into
/// matches and the unmatched gaps between them (both kept). The GPT-2 pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` is run through llama.cpp's
/// hand-written matcher (`unicode_regex_split_custom_gpt2`), which also covers the implicit `\s+` fallback;
/// the simple single-class patterns are run as "collapsed" std::regex matches, reproduced here directly.
struct PreTokenizer: Sendable {
    /// Character classes used by the collapsed single-class regexes.
    enum CharClass: Sendable {
        /// `\p{N}`: ASCII 0-9, or a non-ASCII codepoint in llama.cpp's number table.
        case number
        /// `[0-9]`.
        case asciiDigit
        /// `[\p{P}\$\+<=>\^~\|]`: ASCII punctuation/symbols except the backtick, or non-ASCII `\p{P}`.
        case defaultPunctuation

        @inline(__always)
        func matches(_ cpt: UInt32, _ flags: CodepointFlags) -> Bool {
            switch self {
            case .number:
                return cpt < 128 ? (cpt >= 0x30 && cpt <= 0x39) : flags.contains(.number)
            case .asciiDigit:
                return cpt >= 0x30 && cpt <= 0x39
            case .defaultPunctuation:
                if cpt < 128 {
                    // !"#$%&'()*+,-./  :;<=>?@  [\]^_  {|}~  (everything but the backtick)
                    return (cpt >= 0x21 && cpt <= 0x2F) || (cpt >= 0x3A && cpt <= 0x40)
                        || (cpt >= 0x5B && cpt <= 0x5F) || (cpt >= 0x7B && cpt <= 0x7E)
                }
                return flags.contains(.punctuation) && !flags.contains(.whitespace)
            }
        }
    }

    enum Step: Sendable, Equatable {
        /// `\p{N}`-style regex: every matching codepoint becomes its own piece.
        case isolateEach(CharClass)
        /// `[...]+`: every maximal run of matching codepoints becomes a piece.
        case isolateRuns(CharClass)
        /// `[0-9][0-9][0-9]`: leftmost runs of exactly `count` matching codepoints become pieces.
        case isolateChunks(CharClass, count: Int)
        /// The GPT-2 pattern (llama.cpp's custom matcher).
        case gpt2
    }

    let name: String
    let steps: [Step]

    /// Names of `tokenizer.ggml.pre` values that select each step list (llama.cpp's llama-vocab.cpp).
    static let smollmFamily: Set<String> = ["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"]
    static let gpt2Family: Set<String> = ["gpt-2", "gpt2", "phi-2"]
    static let defaultFamily: Set<String> = ["default", ""]
    static let supportedNames: Set<String> = smollmFamily.union(gpt2Family).union(defaultFamily)

    init(name: String) throws {
        self.name = name
        if Self.smollmFamily.contains(name) {
            // "\\p{N}", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
            steps = [.isolateEach(.number), .gpt2]
        } else if Self.gpt2Family.contains(name) {
            steps = [.gpt2]
        } else if Self.defaultFamily.contains(name) {
            // "[\\p{P}\\$\\+<=>\\^~\\|]+", gpt2, "\\p{N}+", "[0-9][0-9][0-9]"
            steps = [.isolateRuns(.defaultPunctuation), .gpt2, .isolateRuns(.number), .isolateChunks(.asciiDigit, count: 3)]
        } else {
            throw TokenizerError.unsupportedPreTokenizer(name)
        }
    }

    /// Splits a fragment (its codepoints and their flags) into pieces; returns each piece's length in codepoints.
    func split(cpts: [UInt32], flags: [CodepointFlags]) -> [Int] {
        guard !cpts.isEmpty else { return [] }
        var offsets = [cpts.count]
        for step in steps {
            switch step {
            case .gpt2:
                offsets = Self.splitGPT2(cpts: cpts, flags: flags, offsets: offsets)
            case .isolateEach(let cls):
                offsets = Self.splitClass(cpts: cpts, flags: flags, offsets: offsets) { pos, end in
                    cls.matches(cpts[pos], flags[pos]) ? 1 : 0
                }
            case .isolateRuns(let cls):
                offsets = Self.splitClass(cpts: cpts, flags: flags, offsets: offsets) { pos, end in
                    var e = pos
                    while e < end && cls.matches(cpts[e], flags[e]) { e += 1 }
                    return e - pos
                }
            case .isolateChunks(let cls, let count):
                offsets = Self.splitClass(cpts: cpts, flags: flags, offsets: offsets) { pos, end in
                    guard pos + count <= end else { return 0 }
                    for i in pos..<(pos + count) where !cls.matches(cpts[i], flags[i]) { return 0 }
                    return count
                }
            }
        }
        return offsets
    }

    /// Generic regex split: `matchLength(pos, end)` returns the length of a match starting at `pos` (0: none).
    /// Matches and the gaps between them each become a piece, as llama.cpp's `unicode_regex_split_stl` does.
    private static func splitClass(cpts: [UInt32], flags: [CodepointFlags], offsets: [Int],
                                   matchLength: (Int, Int) -> Int) -> [Int] {
        var result: [Int] = []
        result.reserveCapacity(offsets.count * 2)
        var start = 0
        for length in offsets {
            let end = start + length
            var gapStart = start
            var pos = start
            while pos < end {
                let m = matchLength(pos, end)
                if m > 0 {
                    if pos > gapStart { result.append(pos - gapStart) }
                    result.append(m)
                    pos += m
                    gapStart = pos
                } else {
                    pos += 1
                }
            }
            if end > gapStart { result.append(end - gapStart) }
            start = end
        }
        return result
    }

    /// llama.cpp's `unicode_regex_split_custom_gpt2`, line for line:
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    /// Positions outside the current piece read as "no codepoint, no flags", so a whitespace run at the end
    /// of a piece is kept whole (`\s+(?!\S)` succeeds at the end of the input).
    static func splitGPT2(cpts: [UInt32], flags: [CodepointFlags], offsets: [Int]) -> [Int] {
        var result: [Int] = []
        result.reserveCapacity(offsets.count + cpts.count / 3)
        let outOfRange: UInt32 = 0xFFFF_FFFF
        var start = 0
        for length in offsets {
            let ini = start
            let end = start + length
            start = end

            @inline(__always) func cpt(_ p: Int) -> UInt32 { (p >= ini && p < end) ? cpts[p] : outOfRange }
            @inline(__always) func fl(_ p: Int) -> CodepointFlags { (p >= ini && p < end) ? flags[p] : [] }

            var prevEnd = ini
            @inline(__always) func addToken(_ e: Int) -> Int {
                let len = e - prevEnd
                if len > 0 { result.append(len) }
                prevEnd = e
                return len
            }

            var pos = ini
            while pos < end {
                let c = cpt(pos)
                let f = fl(pos)

                // 's|'t|'re|'ve|'m|'ll|'d
                if c == 0x27 /* ' */ && pos + 1 < end {
                    let n = cpt(pos + 1)
                    if n == 0x73 /* s */ || n == 0x74 /* t */ || n == 0x6D /* m */ || n == 0x64 /* d */ {
                        pos += addToken(pos + 2)
                        continue
                    }
                    if pos + 2 < end {
                        let nn = cpt(pos + 2)
                        if (n == 0x72 && nn == 0x65) || (n == 0x76 && nn == 0x65) || (n == 0x6C && nn == 0x6C) { // re ve ll
                            pos += addToken(pos + 3)
                            continue
                        }
                    }
                }

                var f2 = (c == 0x20) ? fl(pos + 1) : f
                // <space>?\p{L}+
                if f2.contains(.letter) {
                    if c == 0x20 { pos += 1 }
                    while f2.contains(.letter) { pos += 1; f2 = fl(pos) }
                    _ = addToken(pos)
                    continue
                }
                // <space>?\p{N}+
                if f2.contains(.number) {
                    if c == 0x20 { pos += 1 }
                    while f2.contains(.number) { pos += 1; f2 = fl(pos) }
                    _ = addToken(pos)
                    continue
                }
                // <space>?[^\s\p{L}\p{N}]+
                let wln: CodepointFlags = [.whitespace, .letter, .number]
                if f2.isDisjoint(with: wln) && !f2.isEmpty {
                    if c == 0x20 { pos += 1 }
                    while f2.isDisjoint(with: wln) && !f2.isEmpty { pos += 1; f2 = fl(pos) }
                    _ = addToken(pos)
                    continue
                }

                var numWhitespaces = 0
                while fl(pos + numWhitespaces).contains(.whitespace) { numWhitespaces += 1 }

                // \s+(?!\S)
                if numWhitespaces > 1 && cpt(pos + numWhitespaces) != outOfRange {
                    pos += numWhitespaces - 1
                    _ = addToken(pos)
                    continue
                }
                // \s+
                if numWhitespaces > 0 {
                    pos += numWhitespaces
                    _ = addToken(pos)
                    continue
                }
                // no match
                pos += 1
                _ = addToken(pos)
            }
        }
        return result
    }
}
