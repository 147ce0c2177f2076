/// GPT-2's reversible byte-to-unicode mapping (`bytes_to_unicode`), as llama.cpp's
/// `unicode_byte_to_utf8_map` builds it: printable Latin-1 bytes map to themselves, the other 68 bytes
/// map to U+0100, U+0101, ... in byte order (so a space, 0x20, becomes "Ġ" U+0120).
public enum ByteLevel {
    /// The codepoint each byte is written as in token texts.
    static let byteToScalar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = 256 + n
                n += 1
            }
        }
        return table
    }()

    /// Inverse of `byteToScalar`, indexed by codepoint (0..<0x144); -1 where a codepoint stands for no byte.
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, s) in byteToScalar.enumerated() { table[Int(s)] = Int16(b) }
        return table
    }()

    /// The token text a single byte is written as, e.g. "Ġ" for 0x20.
    static func string(forByte byte: UInt8) -> String {
        String(Character(Unicode.Scalar(byteToScalar[Int(byte)])!))
    }

    /// Encodes raw bytes as a byte-level token text, e.g. " the" -> "Ġthe".
    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(byteToScalar[Int(b)])!) }
        return String(s)
    }

    /// Byte of a byte-level codepoint, or nil if the codepoint is not part of the mapping.
    @inline(__always)
    static func byte(forScalar scalar: UInt32) -> UInt8? {
        guard scalar < 0x144 else { return nil }
        let b = scalarToByte[Int(scalar)]
        return b < 0 ? nil : UInt8(b)
    }
}
