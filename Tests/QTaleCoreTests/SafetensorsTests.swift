import Foundation
import QTaleCore
import QTaleSafetensors
import QTaleTestSupport
import XCTest

final class SafetensorsTests: XCTestCase {
    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = TemporaryFiles.path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testRoundTripKeepsValuesShapesAndMetadata() throws {
        var w = SafetensorsWriter()
        w.metadata = ["format": "qtale-routers", "hidden": "512"]
        w.add("a.weight", floats: [1, -2.5, 3e-8, .infinity], shape: [2, 2])
        w.add("codes", dtype: .u8, shape: [3], bytes: [7, 0, 255])
        let path = TemporaryFiles.path("roundtrip.safetensors")
        try w.write(to: path)
        let f = try SafetensorsFile(path: path)
        XCTAssertEqual(f.metadata, ["format": "qtale-routers", "hidden": "512"])
        let a = try f.tensor("a.weight")
        XCTAssertEqual(a.shape, [2, 2])
        XCTAssertEqual(try f.floats(a), [1, -2.5, 3e-8, .infinity])
        XCTAssertEqual(f.bytes(try f.tensor("codes")), [7, 0, 255])
        // The data section starts 8-byte aligned.
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual((8 + Int(raw.withUnsafeBytes { $0.load(as: UInt64.self) })) % 8, 0)
        XCTAssertThrowsError(try f.tensor("missing")) { XCTAssertTrue("\($0)".contains("no tensor 'missing'")) }
    }

    func testMalformedFilesAreRejectedWithReasons() throws {
        var w = SafetensorsWriter()
        w.add("x", floats: [1, 2, 3, 4], shape: [4])
        let good = try w.bytes()
        let cases: [(String, [UInt8], String)] = [
            ("short", [1, 2, 3], "too short"),
            ("huge-header", withUnsafeBytes(of: UInt64(1 << 40)) { Array($0) } + [0, 0], "header length"),
            ("truncated", Array(good.dropLast(3)), "outside"),
            ("not-json", withUnsafeBytes(of: UInt64(4)) { Array($0) } + Array("nope".utf8), "not a JSON object"),
        ]
        for (name, bytes, phrase) in cases {
            XCTAssertThrowsError(try SafetensorsFile(path: write(bytes, name))) { error in
                XCTAssertTrue("\(error)".contains(phrase), "\(name): \(error)")
            }
        }
        func header(_ json: String, data: Int) -> [UInt8] {
            withUnsafeBytes(of: UInt64(json.utf8.count)) { Array($0) } + Array(json.utf8) + [UInt8](repeating: 0, count: data)
        }
        let wrong: [(String, [UInt8], String)] = [
            ("dtype", header(#"{"x":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#, data: 2), "dtype F8_E4M3"),
            ("size", header(#"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: 8), "needs 12"),
            ("shape", header(#"{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: 4), "invalid shape"),
        ]
        for (name, bytes, phrase) in wrong {
            XCTAssertThrowsError(try SafetensorsFile(path: write(bytes, name))) { error in
                XCTAssertTrue("\(error)".contains(phrase), "\(name): \(error)")
            }
        }
    }
}
