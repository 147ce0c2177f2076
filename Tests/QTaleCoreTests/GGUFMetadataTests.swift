import Foundation
import QTaleCore
import QTaleGGUF
import XCTest

/// Metadata values, key order, alignment and tensor lookup survive a write/read round trip.
final class GGUFMetadataTests: XCTestCase {
    func testMetadataValuesReadBackAsWritten() throws {
        var w = GGUFWriter()
        w.add("a.uint", .uint32(4_000_000_000))
        w.add("a.int", .int32(-123_456))
        w.add("a.float", .float32(0.1))
        w.add("a.true", .bool(true))
        w.add("a.false", .bool(false))
        w.add("a.string", .string("héllo, wörld ✓"))
        w.add("a.empty", .string(""))
        w.add("a.strings", .strings(["x", "", "<|im_start|>", "ĠThe"]))
        w.add("a.ints", .int32s([3, -1, Int32.max, Int32.min]))
        w.add("a.floats", .floats([1.5, -0.25]))
        w.add("a.no_items", .strings([]))
        w.add("general.name", .string("meta-test"))
        w.add(name: "t", floats: [1, 2, 3])
        let path = GGUFFixtures.path("metadata")
        try w.write(to: path)
        let gguf = try GGUFFile(path: path)

        XCTAssertEqual(gguf.version, 3)
        XCTAssertEqual(gguf.metadataKeys, ["a.uint", "a.int", "a.float", "a.true", "a.false", "a.string", "a.empty",
                                           "a.strings", "a.ints", "a.floats", "a.no_items", "general.name"])
        let m = gguf.metadata
        XCTAssertEqual(m["a.uint"]?.int, 4_000_000_000)
        guard case .uint(4_000_000_000)? = m["a.uint"] else { return XCTFail("a.uint: \(String(describing: m["a.uint"]))") }
        guard case .int(-123_456)? = m["a.int"] else { return XCTFail("a.int: \(String(describing: m["a.int"]))") }
        XCTAssertEqual(m["a.float"]?.double, Double(Float(0.1)))
        XCTAssertEqual(m["a.true"]?.bool, true)
        XCTAssertEqual(m["a.false"]?.bool, false)
        XCTAssertEqual(m["a.string"]?.string, "héllo, wörld ✓")
        XCTAssertEqual(m["a.empty"]?.string, "")
        XCTAssertEqual(m["a.strings"]?.array?.compactMap(\.string), ["x", "", "<|im_start|>", "ĠThe"])
        XCTAssertEqual(m["a.ints"]?.array?.compactMap(\.int), [3, -1, Int(Int32.max), Int(Int32.min)])
        XCTAssertEqual(m["a.floats"]?.array?.compactMap(\.double), [1.5, -0.25])
        XCTAssertEqual(m["a.no_items"]?.array?.count, 0)
        XCTAssertEqual(m["general.name"]?.string, "meta-test")
        // Accessors of the wrong kind give nil rather than a conversion.
        XCTAssertNil(m["a.string"]?.int)
        XCTAssertNil(m["a.uint"]?.string)
        XCTAssertNil(m["a.true"]?.int)
        XCTAssertNil(m["a.missing"])
        XCTAssertEqual(m["a.strings"]?.description, "[4 items]")
    }

    func testVersionTwoIsAccepted() throws {
        var w = GGUFWriter()
        w.add("k", .uint32(7))
        let path = try GGUFFixtures.write(w.bytes(version: 2), name: "v2")
        let gguf = try GGUFFile(path: path)
        XCTAssertEqual(gguf.version, 2)
        XCTAssertEqual(gguf.metadata["k"]?.int, 7)
        XCTAssertEqual(gguf.tensors.count, 0)
    }

    func testTensorDataIsAlignedAndFoundByName() throws {
        for alignment in [32, 64, 256] {
            var w = GGUFWriter()
            w.alignment = alignment
            if alignment != 32 { w.add("general.alignment", .uint32(UInt32(alignment))) }
            w.add("pad", .string("xyz"))  // makes the header length odd
            w.add("first", dimensions: [3], floats: [1, 2, 3])          // 12 bytes, padded to the alignment
            w.add("second", dimensions: [5, 2], floats: (0..<10).map(Float.init))
            w.tensors.append(GGUFWriter.Tensor(name: "third", dimensions: [32, 1], rawType: 8,
                                               data: Bytes.u16(0x3C00) + (0..<32).map { UInt8($0) }))
            let bytes = w.bytes()
            let path = try GGUFFixtures.write(bytes, name: "aligned")
            let gguf = try GGUFFile(path: path)
            XCTAssertEqual(gguf.alignment, alignment)
            let (headerEnd, _) = GGUFFixtures.headerLayout(bytes)
            let dataStart = (headerEnd + alignment - 1) / alignment * alignment
            XCTAssertEqual(gguf.tensors.map(\.name), ["first", "second", "third"])
            // Sizes 12, 40 and 34 bytes, each padded up to the alignment.
            let padded = [12, 40].map { ($0 + alignment - 1) / alignment * alignment }
            XCTAssertEqual(gguf.tensors.map(\.fileOffset), [dataStart, dataStart + padded[0], dataStart + padded[0] + padded[1]],
                           "alignment \(alignment)")
            for t in gguf.tensors { XCTAssertEqual(t.fileOffset % alignment, 0, "\(t.name) at alignment \(alignment)") }

            let second = try XCTUnwrap(gguf.tensor(named: "second"))
            XCTAssertEqual(second.dimensions, [5, 2])
            XCTAssertEqual(second.rows, 2)
            XCTAssertEqual(second.columns, 5)
            XCTAssertEqual(second.elementCount, 10)
            XCTAssertEqual(second.byteCount, 40)
            XCTAssertEqual(try gguf.floats(second), (0..<10).map(Float.init))
            XCTAssertEqual(try gguf.floats(XCTUnwrap(gguf.tensor(named: "first"))), [1, 2, 3])
            let third = try XCTUnwrap(gguf.tensor(named: "third"))
            XCTAssertEqual(third.type, .q8_0)
            XCTAssertEqual(third.byteCount, 34)
            XCTAssertNil(gguf.tensor(named: "fourth"))
            XCTAssertNil(gguf.tensor(named: "Second"))
        }
    }

    func testTensorTypeNamesAndBlockSizes() {
        let expected: [(UInt32, String, Int, Int)] = [(0, "F32", 1, 4), (1, "F16", 1, 2), (2, "Q4_0", 32, 18),
                                                      (3, "Q4_1", 32, 20), (8, "Q8_0", 32, 34), (30, "BF16", 1, 2)]
        XCTAssertEqual(GGUFTensorType.allCases.count, expected.count)
        for (raw, name, elements, bytes) in expected {
            guard let t = GGUFTensorType(rawValue: raw) else { XCTFail("type \(raw) missing"); continue }
            XCTAssertEqual(t.description, name)
            XCTAssertEqual(t.block.elements, elements, name)
            XCTAssertEqual(t.block.bytes, bytes, name)
        }
    }
}

extension GGUFWriter {
    /// A 1-D float32 tensor (test shorthand).
    mutating func add(name: String, floats: [Float]) { add(name, dimensions: [floats.count], floats: floats) }
}
