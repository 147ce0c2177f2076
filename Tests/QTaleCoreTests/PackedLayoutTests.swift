import QTaleCore
import XCTest

/// Pins the packed quantized layout documented on `QuantizationFormat` byte for byte, and checks the
/// code/weight accessors against an independent packer written from the documentation table.
final class PackedLayoutTests: XCTestCase {
    // MARK: Byte pins, derived by hand from the documented table

    func testEightBitCodesAreOneBytePerCode() throws {
        var m = try PackedMatrix(format: QuantizationFormat(bits: 8, groupSize: 32), rows: 2, columns: 40)
        XCTAssertEqual(m.format.bytesPerPack, 32)
        XCTAssertEqual(m.format.codeBytesPerRow(columns: 40), 64)  // 2 packs of 32 bytes
        XCTAssertEqual(m.codes.count, 128)
        m.setCode(200, row: 0, column: 0)
        m.setCode(7, row: 0, column: 31)
        m.setCode(0xAB, row: 0, column: 33)   // pack 1, byte 1
        m.setCode(9, row: 1, column: 0)       // row 1 starts at byte 64
        m.setCode(255, row: 1, column: 39)    // byte 64 + 32 + 7
        var expected = [UInt8](repeating: 0, count: 128)
        expected[0] = 200
        expected[31] = 7
        expected[33] = 0xAB
        expected[64] = 9
        expected[103] = 255
        XCTAssertEqual(m.codes, expected)
    }

    func testFourBitCodesShareBytesWithTheCodeSixteenAhead() throws {
        var m = try PackedMatrix(format: QuantizationFormat(bits: 4, groupSize: 32), rows: 2, columns: 64)
        XCTAssertEqual(m.format.bytesPerPack, 16)
        XCTAssertEqual(m.format.codeBytesPerRow(columns: 64), 32)
        m.setCode(5, row: 0, column: 0)
        m.setCode(10, row: 0, column: 16)     // byte 0 = 0xA5
        m.setCode(15, row: 0, column: 15)
        m.setCode(3, row: 0, column: 31)      // byte 15 = 0x3F
        m.setCode(12, row: 0, column: 48)     // pack 1, code 16 -> byte 16 high nibble
        m.setCode(1, row: 1, column: 1)       // row 1 starts at byte 32
        m.setCode(9, row: 1, column: 63)      // byte 32 + 16 + 15, high nibble
        var expected = [UInt8](repeating: 0, count: 64)
        expected[0] = 0xA5
        expected[15] = 0x3F
        expected[16] = 0xC0
        expected[33] = 0x01
        expected[63] = 0x90
        XCTAssertEqual(m.codes, expected)

        // Overwriting a nibble clears the old bits and leaves its neighbour alone.
        m.setCode(0, row: 0, column: 16)
        XCTAssertEqual(m.codes[0], 0x05)
        m.setCode(6, row: 0, column: 0)
        XCTAssertEqual(m.codes[0], 0x06)
    }

    func testThreeBitCodesSplitLowPairsAndHighBitWord() throws {
        var m = try PackedMatrix(format: QuantizationFormat(bits: 3, groupSize: 32), rows: 2, columns: 32)
        XCTAssertEqual(m.format.bytesPerPack, 12)
        XCTAssertEqual(m.format.codeBytesPerRow(columns: 32), 12)
        // Codes at columns 0, 8, 16, 24 share byte 0 (low two bits each in bits 0-1, 2-3, 4-5, 6-7).
        m.setCode(5, row: 0, column: 0)    // 101: low 01, high 1 -> word bit 0
        m.setCode(2, row: 0, column: 8)    // 010: low 10, high 0
        m.setCode(7, row: 0, column: 16)   // 111: low 11, high 1 -> word bit 16
        m.setCode(3, row: 0, column: 24)   // 011: low 11, high 0
        m.setCode(6, row: 0, column: 9)    // 110: low 10 -> byte 1 bits 2-3; high -> word bit 9
        m.setCode(4, row: 0, column: 31)   // 100: low 00 -> byte 7 bits 6-7; high -> word bit 31
        m.setCode(1, row: 1, column: 7)    // row 1 starts at byte 12: byte 12+7 bits 0-1
        var expected = [UInt8](repeating: 0, count: 24)
        expected[0] = 0x01 | 0x08 | 0x30 | 0xC0   // 0xF9
        expected[1] = 0x08
        // High-bit word = bits 0, 9, 16, 31 = 0x8001_0201, little-endian at bytes 8-11.
        expected[8] = 0x01
        expected[9] = 0x02
        expected[10] = 0x01
        expected[11] = 0x80
        expected[19] = 0x01
        XCTAssertEqual(m.codes[0], 0xF9)
        XCTAssertEqual(m.codes, expected)

        // Overwriting clears both the low pair and the high bit.
        m.setCode(0, row: 0, column: 16)
        XCTAssertEqual(m.codes[0], 0xC9)
        XCTAssertEqual(m.codes[10], 0x00)
        XCTAssertEqual(m.code(row: 0, column: 16), 0)
        XCTAssertEqual(m.code(row: 0, column: 0), 5)
        XCTAssertEqual(m.code(row: 0, column: 31), 4)
    }

    // MARK: Round trips against an independent packer

    /// Packs `codes` (`rows × columns`) following the documentation table, written without the module's code.
    static func pack(_ codes: [[Int]], bits: Int, columns: Int) -> [UInt8] {
        let packs = (columns + 31) / 32
        let packBytes = bits * 4
        var out: [UInt8] = []
        for row in codes {
            for p in 0..<packs {
                var c = [Int](repeating: 0, count: 32)
                for i in 0..<32 where p * 32 + i < columns { c[i] = row[p * 32 + i] }
                var bytes = [UInt8](repeating: 0, count: packBytes)
                switch bits {
                case 8:
                    for j in 0..<32 { bytes[j] = UInt8(c[j]) }
                case 4:
                    for j in 0..<16 { bytes[j] = UInt8(c[j] | c[j + 16] << 4) }
                default:
                    for j in 0..<8 {
                        bytes[j] = UInt8((c[j] & 3) | (c[j + 8] & 3) << 2 | (c[j + 16] & 3) << 4 | (c[j + 24] & 3) << 6)
                    }
                    var word: UInt32 = 0
                    for i in 0..<32 where c[i] & 4 != 0 { word |= 1 << UInt32(i) }
                    for k in 0..<4 { bytes[8 + k] = UInt8(truncatingIfNeeded: word >> UInt32(8 * k)) }
                }
                out += bytes
            }
        }
        return out
    }

    func testRandomCodesRoundTripForEveryWidthAndPartialShapes() throws {
        var rng = SplitMix(seed: 42)
        // (bits, group, rows, columns, expected groups per row)
        let cases: [(Int, Int, Int, Int, Int)] = [
            (8, 64, 3, 80, 2), (4, 64, 3, 80, 2), (3, 64, 3, 80, 2),
            (8, 128, 2, 576, 5), (4, 128, 2, 576, 5), (3, 128, 2, 576, 5),
            (3, 32, 1, 7, 1), (4, 32, 5, 33, 2),
        ]
        for (bits, group, rows, columns, groups) in cases {
            let format = try QuantizationFormat(bits: bits, groupSize: group)
            var m = try PackedMatrix(format: format, rows: rows, columns: columns)
            let packs = (columns + 31) / 32
            XCTAssertEqual(m.groupsPerRow, groups, "\(format) K=\(columns)")
            XCTAssertEqual(format.groupsPerRow(columns: columns), groups)
            XCTAssertEqual(format.packsPerRow(columns: columns), packs)
            XCTAssertEqual(format.codeBytesPerRow(columns: columns), packs * bits * 4, "\(format) K=\(columns)")
            XCTAssertEqual(m.codes.count, rows * packs * bits * 4)
            XCTAssertEqual(m.scales.count, rows * groups)
            XCTAssertEqual(m.offsets.count, rows * groups)
            XCTAssertEqual(format.maxCode, (1 << bits) - 1)

            let codes = (0..<rows).map { _ in (0..<columns).map { _ in Int(rng.next() % UInt64(1 << bits)) } }
            for r in 0..<rows { for c in 0..<columns { m.setCode(codes[r][c], row: r, column: c) } }
            XCTAssertEqual(m.codes, Self.pack(codes, bits: bits, columns: columns), "\(format) K=\(columns): packed bytes")
            for r in 0..<rows {
                for c in 0..<columns where m.code(row: r, column: c) != codes[r][c] {
                    XCTFail("\(format) K=\(columns): code(\(r), \(c)) = \(m.code(row: r, column: c)), set \(codes[r][c])")
                }
            }
        }
    }

    func testWeightIsScaleTimesCodePlusOffsetPerGroup() throws {
        let format = try QuantizationFormat(bits: 4, groupSize: 128)
        var m = try PackedMatrix(format: format, rows: 2, columns: 576)
        XCTAssertEqual(m.groupsPerRow, 5)
        for r in 0..<2 {
            for g in 0..<5 {
                m.scales[r * 5 + g] = Float16(Float(g + 1) * 0.25 + Float(r))        // exact in binary16
                m.offsets[r * 5 + g] = Float16(-Float(g) * 0.5 - 2 * Float(r))
            }
        }
        m.setCode(3, row: 0, column: 0)
        m.setCode(15, row: 0, column: 127)
        m.setCode(7, row: 0, column: 128)
        m.setCode(9, row: 1, column: 575)   // last, partial group (columns 512..<576)
        m.setCode(1, row: 1, column: 512)
        // scale(g) = (g+1)/4 + r, offset(g) = -g/2 - 2r
        XCTAssertEqual(m.weight(row: 0, column: 0), 0.25 * 3 + 0)
        XCTAssertEqual(m.weight(row: 0, column: 127), 0.25 * 15 + 0)
        XCTAssertEqual(m.weight(row: 0, column: 128), 0.5 * 7 - 0.5)
        XCTAssertEqual(m.weight(row: 0, column: 200), -0.5)                 // code 0: the offset alone
        XCTAssertEqual(m.weight(row: 1, column: 575), (1.25 + 1) * 9 + (-2 - 2))
        XCTAssertEqual(m.weight(row: 1, column: 512), 2.25 - 4)
        XCTAssertEqual(m.weight(row: 1, column: 511), -1.5 - 2)             // group 3
        XCTAssertEqual(m.scale(row: 1, group: 4), Float16(2.25))
        XCTAssertEqual(m.offset(row: 1, group: 4), Float16(-4))

        let all = m.dequantized()
        XCTAssertEqual(all.count, 2 * 576)
        XCTAssertEqual(all[576 + 575], 16.25)
        XCTAssertEqual(all[128], 3.0)
    }

    func testHostQuantizedMatrixReadsTheSameWeightsAsPackedMatrix() throws {
        var rng = SplitMix(seed: 7)
        for bits in [3, 4, 8] {
            let format = try QuantizationFormat(bits: bits, groupSize: 64)
            var m = try PackedMatrix(format: format, rows: 3, columns: 80)
            for r in 0..<3 { for c in 0..<80 { m.setCode(Int(rng.next() % UInt64(1 << bits)), row: r, column: c) } }
            for i in m.scales.indices {
                m.scales[i] = Float16(Float(rng.next() % 64) / 32 + 0.03125)
                m.offsets[i] = Float16(-Float(rng.next() % 64) / 16)
            }
            let store = HostBufferStore()
            func upload<T>(_ values: [T]) throws -> BufferHandle {
                let h = try store.allocate(byteCount: values.count * MemoryLayout<T>.stride)
                values.withUnsafeBytes { store.write($0, to: h, byteOffset: 0) }
                return h
            }
            let q = QuantizedMatrix(format: format, rows: 3, columns: 80, codes: try upload(m.codes),
                                    scales: try upload(m.scales), offsets: try upload(m.offsets))
            let host = HostQuantizedMatrix(q, in: store)
            XCTAssertEqual(q.byteCount, 3 * (3 * bits * 4 + 4 * 2))
            for r in 0..<3 {
                for c in 0..<80 {
                    let expected = Float(m.scales[r * 2 + c / 64]) * Float(m.code(row: r, column: c)) + Float(m.offsets[r * 2 + c / 64])
                    XCTAssertEqual(host.weight(row: r, column: c), expected, "w\(bits) (\(r), \(c))")
                    XCTAssertEqual(m.weight(row: r, column: c), expected, "w\(bits) (\(r), \(c))")
                }
            }
        }
    }

    // MARK: Invalid formats and shapes

    func testUnsupportedFormatsThrowNamingTheProblem() {
        assertInvalidArgument(try QuantizationFormat(bits: 5, groupSize: 32), contains: "quantization to 5 bits is not supported")
        assertInvalidArgument(try QuantizationFormat(bits: 2, groupSize: 32), contains: "2 bits")
        assertInvalidArgument(try QuantizationFormat(bits: 4, groupSize: 48), contains: "group size 48 must be a positive multiple of 32")
        assertInvalidArgument(try QuantizationFormat(bits: 4, groupSize: 0), contains: "group size 0 must be a positive multiple of 32")
        assertInvalidArgument(try QuantizationFormat(bits: 8, groupSize: -32), contains: "group size -32")
        XCTAssertEqual(try QuantizationFormat(bits: 3, groupSize: 96).description, "w3g96")
    }

    func testBadPackedMatrixShapesAndArraySizesThrow() throws {
        let format = try QuantizationFormat(bits: 4, groupSize: 32)
        assertInvalidArgument(try PackedMatrix(format: format, rows: 0, columns: 32), contains: "shape 0×32 is out of range")
        assertInvalidArgument(try PackedMatrix(format: format, rows: 4, columns: -1), contains: "shape 4×-1 is out of range")
        assertInvalidArgument(try PackedMatrix(format: format, rows: 2, columns: 64, codes: [UInt8](repeating: 0, count: 63),
                                               scales: [Float16](repeating: 0, count: 4), offsets: [Float16](repeating: 0, count: 4)),
                              contains: "needs 64 code bytes and 4 scales; got 63 and 4")
        assertInvalidArgument(try PackedMatrix(format: format, rows: 2, columns: 64, codes: [UInt8](repeating: 0, count: 64),
                                               scales: [Float16](repeating: 0, count: 4), offsets: [Float16](repeating: 0, count: 3)),
                              contains: "needs 64 code bytes")
    }

    func assertInvalidArgument<T>(_ expression: @autoclosure () throws -> T, contains phrase: String,
                                  file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try expression()
            XCTFail("expected an error containing \"\(phrase)\"", file: file, line: line)
        } catch let error as QTaleError {
            guard case .invalidArgument = error else {
                return XCTFail("expected .invalidArgument, got \(error)", file: file, line: line)
            }
            XCTAssertTrue(error.description.contains(phrase), "\"\(error)\" does not contain \"\(phrase)\"", file: file, line: line)
        } catch {
            XCTFail("expected a QTaleError, got \(error)", file: file, line: line)
        }
    }
}

/// SplitMix64, for test data independent of the module under test.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
