import Foundation
import QTaleCore
import QTaleGGUF
import QTaleTestSupport
import XCTest

/// Malformed GGUF files raise a `QTaleError` that names the problem; none crashes the reader.
final class GGUFMalformedInputTests: XCTestCase {
    func load(_ bytes: [UInt8], _ name: String) throws -> GGUFFile {
        try GGUFFile(path: GGUFFixtures.write(bytes, name: name))
    }

    /// A header with no tensors and the given raw key/value section.
    func header(keys: Int, body: [UInt8], tensors: UInt64 = 0) -> [UInt8] {
        Array("GGUF".utf8) + Bytes.u32(3) + Bytes.u64(tensors) + Bytes.u64(UInt64(keys)) + body
    }

    func string(_ s: String) -> [UInt8] { Bytes.u64(UInt64(s.utf8.count)) + Array(s.utf8) }

    func testBadMagic() throws {
        var bytes = try GGUFFixtures.smallModel().bytes
        bytes.replaceSubrange(0..<4, with: Array("GGUX".utf8))
        assertQTaleError(try load(bytes, "magic"), kind: "invalidModel", contains: ["is not a GGUF file", "bad magic 47475558"])
        assertQTaleError(try load(Array("PK\u{3}\u{4}0000000000000000000000".utf8), "zip"), kind: "invalidModel",
                         contains: ["is not a GGUF file", "bad magic 504b0304"])
    }

    func testUnsupportedVersion() throws {
        var w = GGUFWriter()
        w.add("k", .uint32(1))
        assertQTaleError(try load(w.bytes(version: 7), "v7"), kind: "invalidModel",
                         contains: ["GGUF version 7 is not supported", "2 and 3"])
        assertQTaleError(try load(w.bytes(version: 1), "v1"), kind: "invalidModel", contains: ["GGUF version 1 is not supported"])
    }

    func testTruncatedHeader() throws {
        let (bytes, headerEnd, _) = try GGUFFixtures.smallModel()
        for cut in [0, 3, 10, 30, headerEnd / 2, headerEnd - 1] {
            let path = try GGUFFixtures.write(Array(bytes[..<cut]), name: "cut\(cut)")
            assertQTaleError(try GGUFFile(path: path), kind: "invalidModel", contains: ["'\(path)'", "truncated"])
        }
        // The first cuts end inside the fixed fields: the message says where.
        assertQTaleError(try load(Array(bytes[..<3]), "cut3b"), kind: "invalidModel",
                         contains: ["the header ends inside a field of 4 bytes at byte 0 of 3"])
        assertQTaleError(try load(Array(bytes[..<10]), "cut10b"), kind: "invalidModel",
                         contains: ["the header ends inside a field of 8 bytes at byte 8 of 10"])
    }

    func testTensorDataBeyondTheEndOfTheFile() throws {
        let (bytes, headerEnd, _) = try GGUFFixtures.smallModel()
        let full = try load(bytes, "full")
        let last = try XCTUnwrap(full.tensors.max { $0.fileOffset < $1.fileOffset })
        for cut in [headerEnd, last.fileOffset + 10, last.fileOffset + last.byteCount - 1] {
            assertQTaleError(try load(Array(bytes[..<cut]), "data\(cut)"), kind: "invalidModel",
                             contains: ["lies beyond the end of the file (\(cut) bytes)", "truncated or corrupt"])
        }
        // An offset field pointing far away.
        var w = GGUFWriter()
        w.add("t", dimensions: [4], floats: [1, 2, 3, 4])
        var far = w.bytes()
        let offsetField = GGUFFixtures.headerLayout(far).headerEnd - 8
        far.replaceSubrange(offsetField..<offsetField + 8, with: Bytes.u64(UInt64.max - 3))
        assertQTaleError(try load(far, "far"), kind: "invalidModel", contains: ["tensor 't': data at offset", "beyond the end of the file"])
    }

    func testDimensionsThatOverflowOrAreOutOfRange() throws {
        var w = GGUFWriter()
        let big = Int(Int32.max)
        w.tensors.append(GGUFWriter.Tensor(name: "huge", dimensions: [big, big, big], rawType: 0, data: []))
        assertQTaleError(try load(w.bytes(), "overflow"), kind: "invalidModel",
                         contains: ["tensor 'huge': dimensions [2147483647, 2147483647, 2147483647] overflow"])

        w.tensors = [GGUFWriter.Tensor(name: "wide", dimensions: [1 << 31], rawType: 0, data: [])]
        assertQTaleError(try load(w.bytes(), "dim31"), kind: "invalidModel", contains: ["tensor 'wide' has dimension 2147483648, out of range"])
        w.tensors = [GGUFWriter.Tensor(name: "zero", dimensions: [4, 0], rawType: 0, data: [])]
        assertQTaleError(try load(w.bytes(), "dim0"), kind: "invalidModel", contains: ["tensor 'zero' has dimension 0, out of range"])
        w.tensors = [GGUFWriter.Tensor(name: "five", dimensions: [1, 1, 1, 1, 1], rawType: 0, data: [0, 0, 0, 0])]
        assertQTaleError(try load(w.bytes(), "dims5"), kind: "invalidModel", contains: ["tensor 'five' has 5 dimensions (1 to 4 allowed)"])
        w.tensors = [GGUFWriter.Tensor(name: "none", dimensions: [], rawType: 0, data: [0, 0, 0, 0])]
        assertQTaleError(try load(w.bytes(), "dims0"), kind: "invalidModel", contains: ["tensor 'none' has 0 dimensions"])
        w.tensors = [GGUFWriter.Tensor(name: "ragged", dimensions: [40, 1], rawType: 8, data: [UInt8](repeating: 0, count: 68))]
        assertQTaleError(try load(w.bytes(), "ragged"), kind: "invalidModel", contains: ["tensor 'ragged'", "multiple of 32, got 40"])
    }

    func testUnknownTensorTypesAreNamed() throws {
        for (raw, phrase) in [(UInt32(12), "tensor type Q4_K (type 12)"), (14, "tensor type Q6_K (type 14)"), (200, "an unknown type 200")] {
            var w = GGUFWriter()
            w.tensors.append(GGUFWriter.Tensor(name: "w", dimensions: [256, 2], rawType: raw,
                                               data: [UInt8](repeating: 0, count: 512)))
            assertQTaleError(try load(w.bytes(), "type\(raw)"), kind: "invalidModel",
                             contains: ["tensor 'w' has \(phrase)", "which qtale does not read", "supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1"])
        }
    }

    func testDuplicateTensorsAndBadAlignment() throws {
        var w = GGUFWriter()
        w.add("t", dimensions: [2], floats: [1, 2])
        w.add("t", dimensions: [2], floats: [3, 4])
        assertQTaleError(try load(w.bytes(), "dup"), kind: "invalidModel", contains: ["tensor 't' appears twice"])
        for bad in [48, 0] {
            var a = GGUFWriter()
            a.add("general.alignment", .uint32(UInt32(bad)))
            assertQTaleError(try load(a.bytes(), "align\(bad)"), kind: "invalidModel",
                             contains: ["general.alignment \(bad) is not a power of two"])
        }
    }

    func testMalformedMetadata() throws {
        assertQTaleError(try load(header(keys: 1, body: string("k") + Bytes.u32(13) + [UInt8](repeating: 0, count: 16)), "vtype"),
                         kind: "invalidModel", contains: ["unknown metadata value type 13"])
        let nested = string("deep") + Bytes.u32(9) + Bytes.u32(9) + Bytes.u64(1) + Bytes.u32(9) + Bytes.u64(1)
        assertQTaleError(try load(header(keys: 1, body: nested + [UInt8](repeating: 0, count: 16)), "nested"),
                         kind: "invalidModel", contains: ["nested metadata arrays are too deep"])
        assertQTaleError(try load(header(keys: 1, body: Bytes.u64(1 << 40) + Array("key".utf8)), "strlen"),
                         kind: "invalidModel", contains: ["string length 1099511627776 is impossible for a file of 35 bytes"])
        assertQTaleError(try load(header(keys: 1 << 40, body: []), "keys"), kind: "invalidModel",
                         contains: ["metadata count 1099511627776 is impossible for a file of 24 bytes"])
        assertQTaleError(try load(header(keys: 0, body: [UInt8](repeating: 0, count: 64), tensors: 1 << 33), "tensors"),
                         kind: "invalidModel", contains: ["tensor count 8589934592 is impossible for a file of 88 bytes"])
        let array = string("arr") + Bytes.u32(9) + Bytes.u32(4) + Bytes.u64(1_000_000) + Bytes.u32(1)
        assertQTaleError(try load(header(keys: 1, body: array), "arrlen"), kind: "invalidModel",
                         contains: ["array length 1000000 is impossible"])
    }

    func testMissingPathsAndNonFiles() throws {
        assertQTaleError(try GGUFFile(path: "/no/such/file.gguf"), kind: "io",
                         contains: ["cannot open '/no/such/file.gguf'", "No such file or directory"])
        assertQTaleError(try GGUFFile(path: TemporaryFiles.directory), kind: "io", contains: ["is not a regular file"])
        assertQTaleError(try load([], "empty"), kind: "invalidModel", contains: ["truncated", "at byte 0 of 0"])
    }

    // MARK: Corruption sweeps: every outcome is a load or a QTaleError, never a crash

    /// Loads `bytes` and reads every tensor; returns whether it loaded. Fails on any error that is not a `QTaleError`.
    func loadAndReadEverything(_ bytes: [UInt8], path: String, what: String) -> Bool {
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
            let gguf = try GGUFFile(path: path)
            for t in gguf.tensors {
                _ = try gguf.floats(t)
                if [.q4_0, .q4_1, .q8_0].contains(t.type) { _ = try gguf.packedMatrix(t) }
            }
            return true
        } catch is QTaleError {
            return false
        } catch {
            XCTFail("\(what): not a QTaleError: \(error)")
            return false
        }
    }

    func testRandomSingleByteCorruptionsOfTheHeaderNeverCrash() throws {
        let (bytes, headerEnd, _) = try GGUFFixtures.smallModel()
        var rng = SplitMix(seed: 99)
        let path = GGUFFixtures.path("fuzz")
        var loaded = 0, refused = 0
        for trial in 0..<200 {
            var corrupt = bytes
            let at = Int(rng.next() % UInt64(headerEnd))
            let value = UInt8(truncatingIfNeeded: rng.next())
            corrupt[at] = value == bytes[at] ? ~value : value
            if loadAndReadEverything(corrupt, path: path, what: "trial \(trial): byte \(at) = \(corrupt[at])") {
                loaded += 1
            } else {
                refused += 1
            }
        }
        // The sweep exercised both paths (a sanity check on the fixture, not a property of the reader).
        XCTAssertGreaterThan(loaded, 0)
        XCTAssertGreaterThan(refused, 0)
    }

    func testEveryByteOfTheTensorInfosSetToExtremesNeverCrashes() throws {
        let (bytes, headerEnd, _) = try GGUFFixtures.smallModel()
        let full = try load(bytes, "sweep-full")
        // Tensor infos are the tail of the header: name, dimension count, dimensions, type, offset.
        let infoBytes = full.tensors.reduce(0) { $0 + 8 + $1.name.utf8.count + 4 + 8 * $1.dimensions.count + 4 + 8 }
        let path = GGUFFixtures.path("sweep")
        var refused = 0
        for at in (headerEnd - infoBytes)..<headerEnd {
            for value: UInt8 in [0x00, 0x7F, 0xFF] where bytes[at] != value {
                var corrupt = bytes
                corrupt[at] = value
                if !loadAndReadEverything(corrupt, path: path, what: "byte \(at) = \(value)") { refused += 1 }
            }
        }
        XCTAssertGreaterThan(refused, 0)
    }
}
