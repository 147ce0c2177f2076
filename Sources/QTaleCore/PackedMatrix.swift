/// A quantized matrix in host memory, in the ``QuantizationFormat`` layout.
///
/// Model loaders and quantizers produce it; ``ComputeEngine/upload(_:)`` moves it to an engine.
/// It is also the bit-exact serialisation unit: `codes`, `scales` and `offsets` are written as they are.
public struct PackedMatrix: Sendable, Equatable {
    public let format: QuantizationFormat
    public let rows: Int
    public let columns: Int
    public var codes: [UInt8]
    public var scales: [Float16]
    public var offsets: [Float16]

    /// An all-zero matrix of the given shape.
    public init(format: QuantizationFormat, rows: Int, columns: Int) throws {
        guard rows > 0, columns > 0, rows <= 1 << 24, columns <= 1 << 24 else {
            throw QTaleError.invalidArgument("quantized matrix shape \(rows)×\(columns) is out of range")
        }
        self.format = format
        self.rows = rows
        self.columns = columns
        codes = [UInt8](repeating: 0, count: rows * format.codeBytesPerRow(columns: columns))
        scales = [Float16](repeating: 0, count: rows * format.groupsPerRow(columns: columns))
        offsets = scales
    }

    public init(format: QuantizationFormat, rows: Int, columns: Int,
                codes: [UInt8], scales: [Float16], offsets: [Float16]) throws {
        try self.init(format: format, rows: rows, columns: columns)
        guard codes.count == self.codes.count, scales.count == self.scales.count, offsets.count == self.offsets.count else {
            throw QTaleError.invalidArgument(
                "\(format) matrix \(rows)×\(columns) needs \(self.codes.count) code bytes and \(self.scales.count) scales; got \(codes.count) and \(scales.count)")
        }
        self.codes = codes
        self.scales = scales
        self.offsets = offsets
    }

    public var groupsPerRow: Int { format.groupsPerRow(columns: columns) }

    /// `top`'s rows followed by `bottom`'s (the same format and columns), or nil when they differ.
    public static func stacking(_ top: PackedMatrix, _ bottom: PackedMatrix) throws -> PackedMatrix? {
        guard top.format == bottom.format, top.columns == bottom.columns else { return nil }
        return try PackedMatrix(format: top.format, rows: top.rows + bottom.rows, columns: top.columns,
                                codes: top.codes + bottom.codes, scales: top.scales + bottom.scales,
                                offsets: top.offsets + bottom.offsets)
    }

    /// The code of weight (`row`, `column`).
    public func code(row: Int, column: Int) -> Int {
        let pack = row * format.codeBytesPerRow(columns: columns) + (column / 32) * format.bytesPerPack
        return codes.withUnsafeBufferPointer { Self.code(in: $0.baseAddress! + pack, index: column % 32, bits: format.bits) }
    }

    /// Sets the code of weight (`row`, `column`); `code` must be in `0...maxCode`.
    public mutating func setCode(_ code: Int, row: Int, column: Int) {
        precondition(code >= 0 && code <= format.maxCode, "code out of range")
        let pack = row * format.codeBytesPerRow(columns: columns) + (column / 32) * format.bytesPerPack
        let i = column % 32
        let c = UInt8(code)
        switch format.bits {
        case 8:
            codes[pack + i] = c
        case 4:
            let shift = i < 16 ? 0 : 4
            let j = pack + i % 16
            codes[j] = codes[j] & ~(0x0F << shift) | (c << shift)
        default: // 3
            let shift = 2 * (i / 8)
            let j = pack + i % 8
            codes[j] = codes[j] & ~(0x03 << shift) | ((c & 3) << shift)
            let k = pack + 8 + i / 8
            let bit = UInt8(1) << (i % 8)
            codes[k] = c & 4 != 0 ? codes[k] | bit : codes[k] & ~bit
        }
    }

    /// Reads code `index` (0..<32) of the pack at `pack`.
    @inlinable
    public static func code(in pack: UnsafePointer<UInt8>, index i: Int, bits: Int) -> Int {
        switch bits {
        case 8: return Int(pack[i])
        case 4: return Int(i < 16 ? pack[i] & 0x0F : pack[i - 16] >> 4)
        default:
            let low = Int(pack[i % 8] >> (2 * (i / 8))) & 3
            let high = Int(pack[8 + i / 8] >> (i % 8)) & 1
            return low | high << 2
        }
    }

    public func scale(row: Int, group: Int) -> Float16 { scales[row * groupsPerRow + group] }
    public func offset(row: Int, group: Int) -> Float16 { offsets[row * groupsPerRow + group] }

    /// The dequantized weight, in float32 as every engine computes it.
    public func weight(row: Int, column: Int) -> Float {
        let g = row * groupsPerRow + column / format.groupSize
        return Float(scales[g]) * Float(code(row: row, column: column)) + Float(offsets[g])
    }

    /// The whole matrix dequantized, row-major `[rows][columns]`. For tests and quantizers, not inference.
    public func dequantized() -> [Float] {
        var out = [Float](repeating: 0, count: rows * columns)
        for r in 0..<rows { for c in 0..<columns { out[r * columns + c] = weight(row: r, column: c) } }
        return out
    }
}
