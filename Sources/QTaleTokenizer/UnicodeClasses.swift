/// Per-codepoint classes as llama.cpp's unicode tables see them (src/unicode-data.cpp), packed into a byte.
///
/// llama.cpp does not use the platform's Unicode data: its `\p{L}`, `\p{N}`, `\p{P}` and `\s` come from
/// tables generated from one Unicode version. Using the same tables keeps pre-tokenization identical.
/// (Swift's `Unicode.Scalar.Properties.isWhitespace` is the same White_Space set; the letter/number tables
/// can differ from Swift's `generalCategory` for codepoints assigned after llama.cpp's Unicode version.)
struct CodepointFlags: OptionSet, Sendable {
    let rawValue: UInt8

    static let letter = CodepointFlags(rawValue: 1 << 0)       // \p{L}
    static let number = CodepointFlags(rawValue: 1 << 1)       // \p{N}
    static let punctuation = CodepointFlags(rawValue: 1 << 2)  // \p{P}
    static let whitespace = CodepointFlags(rawValue: 1 << 3)   // \s (llama.cpp's unicode_set_whitespace)
    /// Set for every codepoint inside the fragment; "out of range" positions have no flags at all
    /// (llama.cpp's `flags.as_uint() == 0`).
    static let defined = CodepointFlags(rawValue: 1 << 7)

    /// Classes of the 128 ASCII codepoints, precomputed.
    private static let asciiTable: [CodepointFlags] = (0..<128).map { lookupSlow(UInt32($0)) }

    @inline(__always)
    static func of(_ cpt: UInt32) -> CodepointFlags {
        if cpt < 128 { return asciiTable[Int(cpt)] }
        return lookupSlow(cpt)
    }

    private static func lookupSlow(_ cpt: UInt32) -> CodepointFlags {
        var flags: CodepointFlags = .defined
        if isWhitespace(cpt) { flags.insert(.whitespace) }
        switch tableClass(cpt) {
        case 1: flags.insert(.letter)
        case 2: flags.insert(.number)
        case 3: flags.insert(.punctuation)
        default: break
        }
        return flags
    }

    /// llama.cpp's `unicode_set_whitespace`.
    @inline(__always)
    static func isWhitespace(_ cpt: UInt32) -> Bool {
        switch cpt {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    /// Binary search of the collapsed range table: 0 other, 1 letter, 2 number, 3 punctuation.
    private static func tableClass(_ cpt: UInt32) -> UInt32 {
        let table = LlamaUnicodeTable.ranges
        if cpt >= 0x110000 { return 0 }
        var lo = 0
        var hi = table.count - 1
        // Find the last entry whose start <= cpt.
        while lo < hi {
            let mid = (lo + hi + 1) >> 1
            if (table[mid] >> 2) <= cpt { lo = mid } else { hi = mid - 1 }
        }
        return table[lo] & 3
    }
}
