import Foundation
import QTaleCore
import QTaleGGUF
import XCTest

/// GGUF quantized blocks become `PackedMatrix` values without loss; float tensors read back exactly.
final class GGUFConversionTests: XCTestCase {
    var rng = SplitMix(seed: 2024)

    func uniform() -> Float { Float(Double(rng.next() >> 11) / Double(1 << 53)) * 2 - 1 }

    /// Hand-built Q4_0 blocks: f16 d followed by 16 nibble bytes.
    func q4_0Blocks(count: Int) -> [UInt8] {
        var data: [UInt8] = []
        let scales: [UInt16] = [0x3C00, 0x3400, 0xB800, 0x2E66, 0x0000, 0x4900]  // 1, 0.25, -0.5, ~0.1, 0, 10
        for b in 0..<count {
            data += Bytes.u16(scales[b % scales.count])
            data += (0..<16).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        }
        return data
    }

    func roundTrip(_ writer: GGUFWriter) throws -> GGUFFile {
        let path = GGUFFixtures.path("conversion")
        try writer.write(to: path)
        return try GGUFFile(path: path)
    }

    func testQuantizedTensorsConvertLosslessly() throws {
        var w = GGUFWriter()
        let q41Values = (0..<(5 * 96)).map { _ in uniform() * 3 }
        let q80Values = (0..<(4 * 64)).map { _ in uniform() * 0.7 }
        w.addQuantized("q41", type: .q4_1, rows: 5, columns: 96, values: q41Values)
        w.addQuantized("q80", type: .q8_0, rows: 4, columns: 64, values: q80Values)
        w.tensors.append(GGUFWriter.Tensor(name: "q40", dimensions: [64, 3], rawType: 2, data: q4_0Blocks(count: 6)))
        // A 3-D tensor: rows are the product of the outer dimensions.
        w.tensors.append(GGUFWriter.Tensor(name: "q40_3d", dimensions: [32, 2, 3], rawType: 2, data: q4_0Blocks(count: 6)))
        let gguf = try roundTrip(w)

        let expectations: [(String, UInt32, Int, Int, Int)] = [  // name, raw type, rows, columns, bits
            ("q41", 3, 5, 96, 4), ("q80", 8, 4, 64, 8), ("q40", 2, 3, 64, 4), ("q40_3d", 2, 6, 32, 4),
        ]
        for (name, rawType, rows, columns, bits) in expectations {
            let info = try XCTUnwrap(gguf.tensor(named: name), name)
            XCTAssertEqual(info.type.rawValue, rawType, name)
            XCTAssertEqual(info.rows, rows, name)
            XCTAssertEqual(info.columns, columns, name)
            let written = try XCTUnwrap(w.tensors.first { $0.name == name }).data
            XCTAssertEqual(info.byteCount, written.count, name)
            XCTAssertEqual(Array(gguf.data(of: info)), written, name)

            let m = try gguf.packedMatrix(info)
            XCTAssertEqual(m.format.bits, bits, name)
            XCTAssertEqual(m.format.groupSize, 32, name)
            XCTAssertEqual(m.rows, rows, name)
            XCTAssertEqual(m.columns, columns, name)
            let expected = Bytes.dequantize(rawType: rawType, data: written, elements: rows * columns)
            let actual = m.dequantized()
            XCTAssertEqual(actual.count, expected.count, name)
            var mismatches = 0
            for i in expected.indices where actual[i] != expected[i] {
                if mismatches < 5 { XCTFail("\(name)[\(i / columns)][\(i % columns)]: \(actual[i]) ≠ \(expected[i])") }
                mismatches += 1
            }
            XCTAssertEqual(mismatches, 0, name)
            // floats(_:) dequantizes the same way.
            XCTAssertEqual(try gguf.floats(info), expected, name)
        }
    }

    func testQ4_1ScalesOffsetsAndCodesAreCopiedVerbatim() throws {
        var w = GGUFWriter()
        // One block with chosen d, m and nibbles: d = 0.5 (0x3800), m = -1.0 (0xBC00).
        let nibbles: [UInt8] = (0..<16).map { UInt8($0) | UInt8(15 - $0) << 4 }
        w.tensors.append(GGUFWriter.Tensor(name: "b", dimensions: [32, 1], rawType: 3,
                                           data: Bytes.u16(0x3800) + Bytes.u16(0xBC00) + nibbles))
        let gguf = try roundTrip(w)
        let m = try gguf.packedMatrix(XCTUnwrap(gguf.tensor(named: "b")))
        XCTAssertEqual(m.scales.map(\.bitPattern), [0x3800])
        XCTAssertEqual(m.offsets.map(\.bitPattern), [0xBC00])
        XCTAssertEqual(m.codes, nibbles)
        XCTAssertEqual(m.code(row: 0, column: 3), 3)
        XCTAssertEqual(m.code(row: 0, column: 19), 12)       // high nibble of byte 3 = 15 - 3
        XCTAssertEqual(m.weight(row: 0, column: 3), 0.5)     // 0.5 * 3 - 1
        XCTAssertEqual(m.weight(row: 0, column: 16), 6.5)    // 0.5 * 15 - 1
    }

    func testQ8_0AndQ4_0UseSymmetricOffsets() throws {
        var w = GGUFWriter()
        let q8: [Int8] = (0..<32).map { Int8($0 * 8 - 128) }   // -128 ... 120
        w.tensors.append(GGUFWriter.Tensor(name: "q8", dimensions: [32], rawType: 8,
                                           data: Bytes.u16(0x3400) + q8.map { UInt8(bitPattern: $0) }))  // d = 0.25
        w.tensors.append(GGUFWriter.Tensor(name: "q4", dimensions: [32], rawType: 2,
                                           data: Bytes.u16(0x4000) + [UInt8](repeating: 0xF0, count: 16)))  // d = 2
        let gguf = try roundTrip(w)
        let m8 = try gguf.packedMatrix(XCTUnwrap(gguf.tensor(named: "q8")))
        XCTAssertEqual(m8.codes, q8.map { UInt8(Int($0) + 128) })
        XCTAssertEqual(Float(m8.offsets[0]), -32)             // -128 * 0.25
        XCTAssertEqual(m8.weight(row: 0, column: 0), -32)     // 0.25 * -128
        XCTAssertEqual(m8.weight(row: 0, column: 31), 30)     // 0.25 * 120
        let m4 = try gguf.packedMatrix(XCTUnwrap(gguf.tensor(named: "q4")))
        XCTAssertEqual(Float(m4.offsets[0]), -16)             // -8 * 2
        XCTAssertEqual(m4.weight(row: 0, column: 0), -16)     // 2 * (0 - 8)
        XCTAssertEqual(m4.weight(row: 0, column: 16), 14)     // 2 * (15 - 8)
    }

    func testFloatTensorsReadBackExactly() throws {
        var w = GGUFWriter()
        let f32: [Float] = [0, -0.0, 1, -2.5, .pi, Float.leastNormalMagnitude / 4, 3.4e38, -1e-7]  // includes a subnormal
        w.add("f32", dimensions: [4, 2], floats: f32)
        // binary16 bit patterns and their values: 1, -2, 65504 (max), 2^-24 (smallest subnormal), 0.333251953125, -0
        let f16Bits: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3555, 0x8000]
        let f16Values: [Float] = [1, -2, 65504, 5.9604645e-08, 0.333251953125, -0.0]
        w.tensors.append(GGUFWriter.Tensor(name: "f16", dimensions: [6], rawType: 1, data: f16Bits.flatMap(Bytes.u16)))
        // bfloat16 bit patterns: 1, -3, 3.140625, 2^-126, the largest finite bf16, -0.0078125
        let bf16Bits: [UInt16] = [0x3F80, 0xC040, 0x4049, 0x0080, 0x7F7F, 0xBC00]
        let bf16Values: [Float] = [1, -3, 3.140625, Float.leastNormalMagnitude, 3.38953139e38, -0.0078125]
        w.tensors.append(GGUFWriter.Tensor(name: "bf16", dimensions: [3, 2], rawType: 30, data: bf16Bits.flatMap(Bytes.u16)))
        let gguf = try roundTrip(w)

        let t32 = try XCTUnwrap(gguf.tensor(named: "f32"))
        XCTAssertEqual(t32.type, .f32)
        XCTAssertEqual(t32.byteCount, 32)
        XCTAssertEqual(try gguf.floats(t32).map(\.bitPattern), f32.map(\.bitPattern))
        let t16 = try XCTUnwrap(gguf.tensor(named: "f16"))
        XCTAssertEqual(t16.type, .f16)
        XCTAssertEqual(t16.byteCount, 12)
        XCTAssertEqual(try gguf.floats(t16).map(\.bitPattern), f16Values.map(\.bitPattern))
        XCTAssertEqual(f16Bits.map(Bytes.half), f16Values)  // the test decoder agrees with the literals
        let tb = try XCTUnwrap(gguf.tensor(named: "bf16"))
        XCTAssertEqual(tb.type, .bf16)
        XCTAssertEqual(tb.rows, 2)
        XCTAssertEqual(tb.columns, 3)
        XCTAssertEqual(try gguf.floats(tb).map(\.bitPattern), bf16Values.map(\.bitPattern))

        assertQTaleError(try gguf.packedMatrix(t32), kind: "invalidModel",
                         contains: ["tensor 'f32' is F32, not a quantized type"])
        assertQTaleError(try gguf.packedMatrix(tb), kind: "invalidModel", contains: ["'bf16' is BF16"])
    }
}
