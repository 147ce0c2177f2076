import Foundation
import QTaleCore
import QTaleGGUF
import QTaleTestSupport
import XCTest

/// Little-endian byte builders and GGUF block decoders written independently of `QTaleGGUF`.
enum Bytes {
    static func u16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    static func u32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func u64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func readU16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
    static func readU32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * $1) } }
    static func readU64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * $1) } }

    /// IEEE binary16 bits to Float, decoded by hand (no `Float16` involved).
    static func half(_ bits: UInt16) -> Float {
        let sign: Float = bits & 0x8000 != 0 ? -1 : 1
        let exponent = Int((bits >> 10) & 0x1F)
        let fraction = Float(bits & 0x3FF)
        switch exponent {
        case 0: return sign * fraction * powf(2, -24)
        case 31: return fraction == 0 ? sign * .infinity : .nan
        default: return sign * (1 + fraction / 1024) * powf(2, Float(exponent - 15))
        }
    }

    /// Decodes GGUF Q4_0 / Q4_1 / Q8_0 blocks from ggml's definitions.
    static func dequantize(rawType: UInt32, data: [UInt8], elements: Int) -> [Float] {
        var out: [Float] = []
        for b in 0..<(elements / 32) {
            switch rawType {
            case 2: // Q4_0: f16 d, 16 bytes; low nibbles are elements 0..15, high 16..31; w = d * (q - 8)
                let base = b * 18, d = half(readU16(data, base))
                let q = data[(base + 2)..<(base + 18)]
                out += q.map { d * Float(Int($0 & 0xF) - 8) } + q.map { d * Float(Int($0 >> 4) - 8) }
            case 3: // Q4_1: f16 d, f16 m, 16 bytes; w = d * q + m
                let base = b * 20, d = half(readU16(data, base)), m = half(readU16(data, base + 2))
                let q = data[(base + 4)..<(base + 20)]
                out += q.map { d * Float($0 & 0xF) + m } + q.map { d * Float($0 >> 4) + m }
            case 8: // Q8_0: f16 d, 32 int8; w = d * q
                let base = b * 34, d = half(readU16(data, base))
                out += data[(base + 2)..<(base + 34)].map { d * Float(Int8(bitPattern: $0)) }
            default:
                fatalError("no test decoder for type \(rawType)")
            }
        }
        return out
    }
}

enum GGUFFixtures {
    /// A fresh file path in the per-process temporary folder.
    static func path(_ name: String) -> String {
        TemporaryFiles.path("\(name)-\(UUID().uuidString.prefix(8)).gguf")
    }

    static func write(_ bytes: [UInt8], name: String) throws -> String {
        let p = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    /// A small synthetic model's bytes and the end of its header (where tensor data begins).
    static func smallModel() throws -> (bytes: [UInt8], headerEnd: Int, dataStart: Int) {
        var shape = SyntheticModel.Shape()
        shape.layers = 1
        shape.dModel = 32
        shape.ffn = 32
        shape.heads = 2
        shape.kvHeads = 1
        let bytes = SyntheticModel.writer(shape: shape, seed: 3).bytes()
        let (headerEnd, dataStart) = headerLayout(bytes)
        return (bytes, headerEnd, dataStart)
    }

    /// Walks a well-formed GGUF header (test-side parser) and returns the header's end and the aligned data start.
    static func headerLayout(_ b: [UInt8], alignment: Int = 32) -> (headerEnd: Int, dataStart: Int) {
        var at = 8
        let tensorCount = Int(Bytes.readU64(b, at)); at += 8
        let keyCount = Int(Bytes.readU64(b, at)); at += 8
        func skipString() { at += 8 + Int(Bytes.readU64(b, at)) }
        func skipValue(_ type: UInt32) {
            switch type {
            case 0, 1, 7: at += 1
            case 2, 3: at += 2
            case 4, 5, 6: at += 4
            case 10, 11, 12: at += 8
            case 8: skipString()
            case 9:
                let element = Bytes.readU32(b, at); at += 4
                let n = Int(Bytes.readU64(b, at)); at += 8
                for _ in 0..<n { skipValue(element) }
            default: fatalError("bad type")
            }
        }
        for _ in 0..<keyCount {
            skipString()
            let type = Bytes.readU32(b, at); at += 4
            skipValue(type)
        }
        for _ in 0..<tensorCount {
            skipString()
            let dims = Int(Bytes.readU32(b, at)); at += 4 + 8 * dims + 4 + 8
        }
        return (at, (at + alignment - 1) / alignment * alignment)
    }
}

/// Asserts that `expression` throws `QTaleError` of the `expected` kind whose description contains every phrase.
func assertQTaleError<T>(_ expression: @autoclosure () throws -> T, kind expected: String, contains phrases: [String],
                         file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try expression()
        XCTFail("expected a QTaleError containing \(phrases), but it succeeded", file: file, line: line)
    } catch let error as QTaleError {
        let kind: String
        switch error {
        case .invalidModel: kind = "invalidModel"
        case .invalidArgument: kind = "invalidArgument"
        case .engine: kind = "engine"
        case .io: kind = "io"
        }
        XCTAssertEqual(kind, expected, "\(error)", file: file, line: line)
        for phrase in phrases {
            XCTAssertTrue(error.description.contains(phrase), "\"\(error)\" does not contain \"\(phrase)\"", file: file, line: line)
        }
    } catch {
        XCTFail("expected a QTaleError, got \(type(of: error)): \(error)", file: file, line: line)
    }
}
