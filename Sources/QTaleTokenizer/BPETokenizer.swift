/// Byte-level BPE tokenizer equivalent to llama.cpp's for GGUF models with `tokenizer.ggml.model = "gpt2"`
/// (llama-vocab.cpp: `llm_tokenizer_bpe_session`, `tokenizer_st_partition`, `token_to_piece`).
///
/// Encoding: the text is first partitioned on special-token texts (control, user-defined and unknown
/// tokens, longest first); each plain fragment is pre-tokenized (see `PreTokenizer`), each piece is
/// written in GPT-2's byte-to-unicode alphabet, one symbol per byte, and adjacent symbols are merged by
/// lowest merge rank (leftmost first on ties) until no ranked pair is left.
public final class BPETokenizer: Sendable {
    /// Values of `tokenizer.ggml.pre` this implementation supports.
    public static var supportedPreTokenizers: Set<String> { PreTokenizer.supportedNames }

    /// llama.cpp token attributes (a subset of `llama_token_attr`).
    struct Attributes: OptionSet, Sendable {
        let rawValue: UInt8
        static let undefined = Attributes(rawValue: 1 << 0)
        static let unknown = Attributes(rawValue: 1 << 1)
        static let unused = Attributes(rawValue: 1 << 2)
        static let normal = Attributes(rawValue: 1 << 3)
        static let control = Attributes(rawValue: 1 << 4)
        static let userDefined = Attributes(rawValue: 1 << 5)
        static let byte = Attributes(rawValue: 1 << 6)

        init(rawValue: UInt8) { self.rawValue = rawValue }

        init(tokenType: Int32) {
            switch TokenType(rawValue: tokenType) {
            case .normal: self = .normal
            case .unknown: self = .unknown
            case .control: self = .control
            case .userDefined: self = .userDefined
            case .unused: self = .unused
            case .byte: self = .byte
            case .undefined, .none: self = .undefined
            }
        }
    }

    struct SpecialToken: Sendable {
        let bytes: [UInt8]
        let id: Int32
        /// Control and unknown tokens are only matched when `parseSpecial` is true; user-defined always.
        let needsParseSpecial: Bool
    }

    // MARK: Stored tables (all immutable, so the tokenizer can be shared across threads)

    private let tokenTexts: [String]
    private let attributes: [Attributes]
    private let textToToken: [String: Int32]
    /// Symbol id of each byte's one-character text (a token id, or a synthetic id >= vocabularySize).
    private let byteSymbols: [Int32]
    /// (left symbol << 32 | right symbol) -> (rank << 32 | merged symbol).
    private let mergeTable: [UInt64: UInt64]
    /// Output tokens for synthetic symbols (texts that are no vocabulary token), indexed by id - vocabularySize.
    private let syntheticFallback: [[Int32]]
    /// Special tokens in partitioning order (longest text first).
    private let specialTokens: [SpecialToken]
    private let preTokenizer: PreTokenizer
    /// Decoded bytes of every token (flat), for `renderSpecial == false`, and the hidden special tokens' texts.
    private let pieceBytes: [UInt8]
    private let pieceOffsets: [Int]
    private let specialPieceBytes: [Int32: [UInt8]]
    private let defaultAddBOS: Bool

    public let bosTokenID: Int32?
    public let eosTokenID: Int32?
    /// Tokens that end generation: EOS plus control tokens such as <|im_end|> / <|endoftext|> when present
    /// (the same set llama.cpp's `llama_vocab_is_eog` reports, including FIM repo/pad/separator tokens).
    public let endOfGenerationTokenIDs: Set<Int32>

    public var vocabularySize: Int { tokenTexts.count }

    public init(vocabulary: TokenizerVocabulary) throws {
        let n = vocabulary.tokens.count
        guard n > 0 else { throw TokenizerError.emptyVocabulary }
        guard n < Int(Int32.max) / 2 else {
            throw TokenizerError.tokenIDOutOfRange(name: "vocabulary size", id: Int32.max, vocabularySize: n)
        }
        if !vocabulary.tokenTypes.isEmpty && vocabulary.tokenTypes.count < n {
            throw TokenizerError.tokenTypeCountMismatch(tokens: n, tokenTypes: vocabulary.tokenTypes.count)
        }
        for (name, id) in [("BOS", vocabulary.bosTokenID), ("EOS", vocabulary.eosTokenID)] {
            if let id, id < 0 || Int(id) >= n {
                throw TokenizerError.tokenIDOutOfRange(name: name, id: id, vocabularySize: n)
            }
        }
        preTokenizer = try PreTokenizer(name: vocabulary.preTokenizer)
        bosTokenID = vocabulary.bosTokenID
        eosTokenID = vocabulary.eosTokenID
        defaultAddBOS = vocabulary.addBOS

        // Token texts and attributes (llama.cpp renames empty tokens so that they stay unique).
        var texts = vocabulary.tokens
        var attrs = [Attributes](repeating: .normal, count: n)
        var lookup = [String: Int32](minimumCapacity: n)
        for i in 0..<n {
            if texts[i].isEmpty { texts[i] = "[EMPTY_\(i)]" }
            if !vocabulary.tokenTypes.isEmpty { attrs[i] = Attributes(tokenType: vocabulary.tokenTypes[i]) }
            lookup[texts[i]] = Int32(i)  // later duplicates win, as in llama.cpp's token_to_id
        }

        // End-of-generation tokens and the control attributes llama.cpp forces onto them.
        var eog = Set<Int32>()
        func firstID(_ candidates: [String]) -> Int32? {
            candidates.compactMap { lookup[$0] }.min()
        }
        let fimPad = firstID(["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"])
        let fimRep = firstID(["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"])
        let fimSep = firstID(["<|file_sep|>"])
        for id in [fimPad, fimRep, fimSep].compactMap({ $0 }) {
            eog.insert(id)
            attrs[Int(id)].insert(.control)
        }
        let eogTexts = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
                        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
                        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                        "<｜end▁of▁sentence｜>", "[e~["]
        for text in eogTexts {
            if let id = lookup[text] {
                eog.insert(id)
                attrs[Int(id)].insert(.control)
            }
        }
        for text in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let id = lookup[text] { attrs[Int(id)] = .userDefined }
        }
        if let eos = vocabulary.eosTokenID { eog.insert(eos) }
        // o200k_harmony / solar-open: "<|end|>" is not end-of-generation when these are present.
        let hasEnd = lookup["<|end|>"].map { eog.contains($0) } ?? false
        if hasEnd, let endID = lookup["<|end|>"],
           (lookup["<|return|>"] != nil && (lookup["<|call|>"] != nil || lookup["<|calls|>"] != nil))
            || ((lookup["<|call|>"] != nil || lookup["<|calls|>"] != nil) && lookup["<|flush|>"] != nil) {
            eog.remove(endID)
            attrs[Int(endID)] = .userDefined
        }
        endOfGenerationTokenIDs = eog

        // Special tokens for partitioning: control, user-defined and unknown, longest text first.
        var specials: [SpecialToken] = []
        for i in 0..<n where !attrs[i].isDisjoint(with: [.control, .userDefined, .unknown]) {
            specials.append(SpecialToken(bytes: Array(texts[i].utf8), id: Int32(i),
                                         needsParseSpecial: !attrs[i].isDisjoint(with: [.control, .unknown])))
        }
        specials.sort { a, b in a.bytes.count != b.bytes.count ? a.bytes.count > b.bytes.count : a.id < b.id }
        specialTokens = specials

        // Symbol ids: every vocabulary text keeps its token id; texts that only occur in merges (or byte
        // characters missing from the vocabulary) get synthetic ids after the vocabulary.
        var symbolLookup = lookup
        var syntheticTexts: [String] = []
        func symbolID(_ text: String) -> Int32 {
            if let id = symbolLookup[text] { return id }
            let id = Int32(n + syntheticTexts.count)
            syntheticTexts.append(text)
            symbolLookup[text] = id
            return id
        }
        byteSymbols = (0..<256).map { symbolID(ByteLevel.string(forByte: UInt8($0))) }

        var merges = [UInt64: UInt64](minimumCapacity: vocabulary.merges.count)
        for (rank, line) in vocabulary.merges.enumerated() {
            // llama.cpp: split at the first space at byte offset >= 1.
            let utf8 = line.utf8
            guard let space = utf8.dropFirst().firstIndex(of: 0x20) else {
                throw TokenizerError.malformedMerge(index: rank, text: line)
            }
            let left = String(line[line.startIndex..<space])
            let right = String(line[line.index(after: space)...])
            guard !left.isEmpty, !right.isEmpty, !right.utf8.contains(0x20) else {
                throw TokenizerError.malformedMerge(index: rank, text: line)
            }
            let l = symbolID(left), r = symbolID(right), m = symbolID(left + right)
            let key = UInt64(UInt32(l)) << 32 | UInt64(UInt32(r))
            if merges[key] == nil {  // first occurrence wins (std::map::emplace)
                merges[key] = UInt64(UInt32(rank)) << 32 | UInt64(UInt32(m))
            }
        }
        mergeTable = merges

        // llama.cpp's fallback for a final symbol that is no token: look up each byte of its text alone.
        syntheticFallback = syntheticTexts.map { text in
            text.utf8.compactMap { b -> Int32? in
                b < 0x80 ? lookup[String(Character(Unicode.Scalar(b)))] : nil
            }
        }

        // Decoded pieces (llama.cpp token_to_piece for BPE vocabularies).
        var flat: [UInt8] = []
        flat.reserveCapacity(n * 6)
        var offsets = [Int](repeating: 0, count: n + 1)
        var specialPieces: [Int32: [UInt8]] = [:]
        for i in 0..<n {
            offsets[i] = flat.count
            let a = attrs[i]
            if !a.isDisjoint(with: [.control, .unknown]) {
                specialPieces[Int32(i)] = Array(texts[i].utf8)
            } else if a.contains(.userDefined) {
                flat.append(contentsOf: texts[i].utf8)
            } else if a.contains(.normal) {
                Self.appendByteDecoded(texts[i], to: &flat)
            } else if a.contains(.byte) {
                flat.append(Self.byteTokenValue(texts[i]))
            }
        }
        offsets[n] = flat.count
        pieceBytes = flat
        pieceOffsets = offsets
        specialPieceBytes = specialPieces

        tokenTexts = texts
        attributes = attrs
        textToToken = lookup
    }

    /// llama.cpp's `llama_decode_text`: maps each byte-level character back to its byte.
    private static func appendByteDecoded(_ text: String, to out: inout [UInt8]) {
        for scalar in text.unicodeScalars {
            if let b = ByteLevel.byte(forScalar: scalar.value) {
                out.append(b)
            } else {
                out.append(contentsOf: "[UNK_BYTE_0x".utf8)
                for u in String(scalar).utf8 {
                    let hex = Array("0123456789abcdef".utf8)
                    out.append(hex[Int(u >> 4)])
                    out.append(hex[Int(u & 15)])
                }
                out.append(contentsOf: text.utf8)
                out.append(UInt8(ascii: "]"))
            }
        }
    }

    /// A byte token's value: llama.cpp reads the two hex digits of "<0xXX>".
    private static func byteTokenValue(_ text: String) -> UInt8 {
        let u = Array(text.utf8)
        guard u.count >= 5 else { return 0 }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16) ?? 0
    }

    // MARK: Lookup

    public func tokenID(of text: String) -> Int32? {
        textToToken[text]
    }

    /// The token's text as stored in the vocabulary (byte-level encoded for normal tokens), or nil if out of range.
    public func tokenText(_ token: Int32) -> String? {
        guard token >= 0, Int(token) < tokenTexts.count else { return nil }
        return tokenTexts[Int(token)]
    }

    /// True for control and unknown tokens (those `decode` hides unless `renderSpecial`).
    public func isControl(_ token: Int32) -> Bool {
        guard token >= 0, Int(token) < attributes.count else { return false }
        return !attributes[Int(token)].isDisjoint(with: [.control, .unknown])
    }

    // MARK: Decoding

    /// The raw bytes a token stands for. Control/unknown tokens give their text only if `renderSpecial`;
    /// ids outside the vocabulary give no bytes.
    public func bytes(of token: Int32, renderSpecial: Bool = false) -> [UInt8] {
        guard token >= 0, Int(token) < tokenTexts.count else { return [] }
        if let special = specialPieceBytes[token] { return renderSpecial ? special : [] }
        return Array(pieceBytes[pieceOffsets[Int(token)]..<pieceOffsets[Int(token) + 1]])
    }

    /// Appends a token's bytes to `out` without intermediate allocation.
    public func appendBytes(of token: Int32, renderSpecial: Bool = false, to out: inout [UInt8]) {
        guard token >= 0, Int(token) < tokenTexts.count else { return }
        if let special = specialPieceBytes[token] {
            if renderSpecial { out.append(contentsOf: special) }
            return
        }
        out.append(contentsOf: pieceBytes[pieceOffsets[Int(token)]..<pieceOffsets[Int(token) + 1]])
    }

    /// Concatenates the tokens' bytes and decodes them as UTF-8 (invalid sequences become U+FFFD).
    public func decode(_ tokens: [Int32], renderSpecial: Bool = false) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(tokens.count * 4)
        for t in tokens { appendBytes(of: t, renderSpecial: renderSpecial, to: &out) }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Encoding

    private enum Fragment {
        case text(Int, Int)  // byte range [start, end)
        case token(Int32)
    }

    /// Tokenizes `text`.
    /// - Parameters:
    ///   - parseSpecial: control (type 3) token texts written in `text` become their ids, as llama.cpp's
    ///     `tokenize(special: true)` does. User-defined (type 4) token texts become their ids either way
    ///     (llama.cpp splits them out even when `special` is false).
    ///   - addBOS: prepend BOS; nil means "as the vocabulary says".
    public func encode(_ text: String, parseSpecial: Bool = true, addBOS: Bool? = nil) -> [Int32] {
        var output: [Int32] = []
        if addBOS ?? defaultAddBOS, let bos = bosTokenID { output.append(bos) }
        let bytes = Array(text.utf8)
        if bytes.isEmpty { return output }
        output.reserveCapacity(output.count + bytes.count / 3 + 4)

        let fragments = partition(bytes, parseSpecial: parseSpecial)
        var workspace = MergeWorkspace()
        var cpts: [UInt32] = []
        var flags: [CodepointFlags] = []
        for fragment in fragments {
            switch fragment {
            case .token(let id):
                output.append(id)
            case .text(let start, let end):
                encodeFragment(bytes, start, end, cpts: &cpts, flags: &flags, workspace: &workspace, into: &output)
            }
        }
        return output
    }

    /// llama.cpp's `tokenizer_st_partition`: for each special token (longest first), split every remaining
    /// text fragment around each occurrence of its text.
    private func partition(_ bytes: [UInt8], parseSpecial: Bool) -> [Fragment] {
        var fragments: [Fragment] = [.text(0, bytes.count)]
        var next: [Fragment] = []
        bytes.withUnsafeBufferPointer { text in
            for special in specialTokens {
                if special.needsParseSpecial && !parseSpecial { continue }
                let needle = special.bytes
                let m = needle.count
                guard m > 0, m <= text.count else { continue }
                let first = needle[0]
                var changed = false
                next.removeAll(keepingCapacity: true)
                for fragment in fragments {
                    guard case .text(let start, let end) = fragment, end - start >= m else {
                        next.append(fragment)
                        continue
                    }
                    var cursor = start
                    var pos = start
                    while pos + m <= end {
                        if text[pos] == first && Self.matches(text, at: pos, needle) {
                            if pos > cursor { next.append(.text(cursor, pos)) }
                            next.append(.token(special.id))
                            pos += m
                            cursor = pos
                            changed = true
                        } else {
                            pos += 1
                        }
                    }
                    if cursor < end { next.append(.text(cursor, end)) }
                }
                if changed { swap(&fragments, &next) }
            }
        }
        return fragments
    }

    @inline(__always)
    private static func matches(_ text: UnsafeBufferPointer<UInt8>, at pos: Int, _ needle: [UInt8]) -> Bool {
        for i in 1..<needle.count where text[pos + i] != needle[i] { return false }
        return true
    }

    private func encodeFragment(_ bytes: [UInt8], _ start: Int, _ end: Int,
                                cpts: inout [UInt32], flags: inout [CodepointFlags],
                                workspace: inout MergeWorkspace, into output: inout [Int32]) {
        // Decode the fragment's codepoints (Swift strings are valid UTF-8; fragments start and end on
        // character boundaries because special-token texts are whole characters).
        cpts.removeAll(keepingCapacity: true)
        flags.removeAll(keepingCapacity: true)
        var i = start
        while i < end {
            let b0 = bytes[i]
            var c: UInt32
            var len: Int
            if b0 < 0x80 {
                c = UInt32(b0); len = 1
            } else if b0 < 0xE0 {
                c = UInt32(b0 & 0x1F); len = 2
            } else if b0 < 0xF0 {
                c = UInt32(b0 & 0x0F); len = 3
            } else {
                c = UInt32(b0 & 0x07); len = 4
            }
            if i + len > end { len = end - i }
            for k in 1..<max(len, 1) { c = (c << 6) | UInt32(bytes[i + k] & 0x3F) }
            cpts.append(c)
            flags.append(CodepointFlags.of(c))
            i += max(len, 1)
        }

        let pieces = preTokenizer.split(cpts: cpts, flags: flags)
        var cptIndex = 0
        var byteIndex = start
        for count in pieces {
            var byteCount = 0
            for k in cptIndex..<(cptIndex + count) {
                let c = cpts[k]
                byteCount += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4
            }
            cptIndex += count
            bytePairMerge(bytes, byteIndex, min(byteIndex + byteCount, end), workspace: &workspace, into: &output)
            byteIndex += byteCount
        }
    }

    /// Reusable buffers for `bytePairMerge`.
    struct MergeWorkspace {
        var ids: [Int32] = []
        var next: [Int32] = []
        var prev: [Int32] = []
        var heap: [HeapEntry] = []
    }

    struct HeapEntry {
        /// rank << 32 | left position: the smallest key is the lowest rank, leftmost on ties.
        var key: UInt64
        var right: Int32
        var leftID: Int32
        var rightID: Int32
    }

    /// Merge-by-rank over one pre-tokenized piece, as llama.cpp's `llm_tokenizer_bpe_session::tokenize`.
    private func bytePairMerge(_ bytes: [UInt8], _ start: Int, _ end: Int,
                               workspace w: inout MergeWorkspace, into output: inout [Int32]) {
        let n = end - start
        if n <= 0 { return }
        if n == 1 {
            emit(byteSymbols[Int(bytes[start])], into: &output)
            return
        }
        w.ids.removeAll(keepingCapacity: true)
        w.next.removeAll(keepingCapacity: true)
        w.prev.removeAll(keepingCapacity: true)
        w.heap.removeAll(keepingCapacity: true)
        for k in 0..<n {
            w.ids.append(byteSymbols[Int(bytes[start + k])])
            w.next.append(k + 1 < n ? Int32(k + 1) : -1)
            w.prev.append(Int32(k - 1))
        }
        for k in 0..<(n - 1) { pushPair(Int32(k), Int32(k + 1), &w) }

        while !w.heap.isEmpty {
            let top = Self.heapPop(&w.heap)
            let left = Int(top.key & 0xFFFF_FFFF)
            let right = Int(top.right)
            // Skip outdated pairs: both symbols must still exist, be adjacent and hold the same texts.
            guard w.ids[left] == top.leftID, w.ids[right] == top.rightID, w.next[left] == top.right else { continue }
            let merged = mergeTable[UInt64(UInt32(top.leftID)) << 32 | UInt64(UInt32(top.rightID))]!
            w.ids[left] = Int32(truncatingIfNeeded: merged)
            w.ids[right] = -1
            let after = w.next[right]
            w.next[left] = after
            if after >= 0 { w.prev[Int(after)] = Int32(left) }
            let before = w.prev[left]
            if before >= 0 { pushPair(before, Int32(left), &w) }
            if after >= 0 { pushPair(Int32(left), after, &w) }
        }

        var k: Int32 = 0
        while k >= 0 {
            emit(w.ids[Int(k)], into: &output)
            k = w.next[Int(k)]
        }
    }

    @inline(__always)
    private func pushPair(_ left: Int32, _ right: Int32, _ w: inout MergeWorkspace) {
        let l = w.ids[Int(left)], r = w.ids[Int(right)]
        guard let merged = mergeTable[UInt64(UInt32(l)) << 32 | UInt64(UInt32(r))] else { return }
        let rank = merged >> 32
        Self.heapPush(&w.heap, HeapEntry(key: rank << 32 | UInt64(UInt32(left)), right: right, leftID: l, rightID: r))
    }

    @inline(__always)
    private func emit(_ symbol: Int32, into output: inout [Int32]) {
        if Int(symbol) < tokenTexts.count {
            output.append(symbol)
        } else {
            output.append(contentsOf: syntheticFallback[Int(symbol) - tokenTexts.count])
        }
    }

    private static func heapPush(_ heap: inout [HeapEntry], _ entry: HeapEntry) {
        heap.append(entry)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) >> 1
            if heap[parent].key <= entry.key { break }
            heap[i] = heap[parent]
            i = parent
        }
        heap[i] = entry
    }

    private static func heapPop(_ heap: inout [HeapEntry]) -> HeapEntry {
        let top = heap[0]
        let last = heap.removeLast()
        if heap.isEmpty { return top }
        var i = 0
        let count = heap.count
        while true {
            let l = 2 * i + 1
            if l >= count { break }
            var c = l
            if l + 1 < count && heap[l + 1].key < heap[l].key { c = l + 1 }
            if heap[c].key >= last.key { break }
            heap[i] = heap[c]
            i = c
        }
        heap[i] = last
        return top
    }
}
