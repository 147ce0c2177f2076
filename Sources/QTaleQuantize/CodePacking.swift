import QTaleCore

/// Builds a ``PackedMatrix`` from one code byte per weight plus per-group binary16 parameters.
///
/// Quantizers choose codes row by row on several threads; writing them one at a time with
/// `PackedMatrix.setCode` would need the array exclusively. So they fill plain `[rows × columns]` byte
/// codes (disjoint rows, any thread) and pack once at the end, 32 codes at a time, in the bit order
/// documented in `QuantizedLayout.swift`.
struct CodeMatrixBuilder {
    let format: QuantizationFormat
    let rows: Int
    let columns: Int
    /// `[rows × columns]`, one code per byte, in `0 ... maxCode`.
    var codes: [UInt8]
    /// `[rows × groupsPerRow]`.
    var scales: [Float16]
    var offsets: [Float16]

    init(format: QuantizationFormat, rows: Int, columns: Int) {
        self.format = format
        self.rows = rows
        self.columns = columns
        codes = [UInt8](repeating: 0, count: rows * columns)
        scales = [Float16](repeating: 0, count: rows * format.groupsPerRow(columns: columns))
        offsets = scales
    }

    var groupsPerRow: Int { format.groupsPerRow(columns: columns) }

    func packed() throws -> PackedMatrix {
        let bytesPerRow = format.codeBytesPerRow(columns: columns)
        var bytes = [UInt8](repeating: 0, count: rows * bytesPerRow)
        let packs = format.packsPerRow(columns: columns)
        let bits = format.bits, bytesPerPack = format.bytesPerPack
        codes.withUnsafeBufferPointer { codes in
            bytes.withUnsafeMutableBufferPointer { bytes in
                var pack = [UInt8](repeating: 0, count: QuantizationFormat.codesPerPack)
                for r in 0..<rows {
                    for p in 0..<packs {
                        let start = p * QuantizationFormat.codesPerPack
                        let count = min(QuantizationFormat.codesPerPack, columns - start)
                        for i in 0..<QuantizationFormat.codesPerPack {
                            pack[i] = i < count ? codes[r * columns + start + i] : 0
                        }
                        Self.pack(pack, bits: bits, into: bytes.baseAddress! + r * bytesPerRow + p * bytesPerPack)
                    }
                }
            }
        }
        return try PackedMatrix(format: format, rows: rows, columns: columns, codes: bytes, scales: scales, offsets: offsets)
    }

    /// Packs 32 codes into one pack of `bits * 4` bytes.
    static func pack(_ c: [UInt8], bits: Int, into out: UnsafeMutablePointer<UInt8>) {
        switch bits {
        case 8:
            for j in 0..<32 { out[j] = c[j] }
        case 4:
            for j in 0..<16 { out[j] = (c[j] & 0x0F) | (c[j + 16] & 0x0F) << 4 }
        default: // 3: low two bits in four quarters, bit 2 as a little-endian UInt32
            for j in 0..<8 {
                out[j] = (c[j] & 3) | (c[j + 8] & 3) << 2 | (c[j + 16] & 3) << 4 | (c[j + 24] & 3) << 6
            }
            var high: UInt32 = 0
            for i in 0..<32 { high |= UInt32((c[i] >> 2) & 1) << UInt32(i) }
            for b in 0..<4 { out[8 + b] = UInt8(truncatingIfNeeded: high >> UInt32(8 * b)) }
        }
    }
}
