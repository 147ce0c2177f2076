import Foundation
import QTaleConformance
import QTaleModel
import XCTest

/// `qtale conformance`: the catalog the engine tests run, as a command for hosts without a toolchain.
final class CLIConformanceTests: XCTestCase {
    func testRunsTheChosenOpsAndReportsEveryCase() throws {
        let json = FileManager.default.temporaryDirectory.appendingPathComponent("conformance-\(UUID()).json").path
        defer { try? FileManager.default.removeItem(atPath: json) }
        let r = try CLI.run(["conformance", "--backend", "cpu", "--threads", "1", "--ops", "rope", "attention", "--json", json])
        XCTAssertEqual(r.status, 0, r.summary)
        let expected = ConformanceCatalog.all.filter { ["rope", "attention"].contains($0.op) }
        XCTAssertTrue(r.stdout.contains("\(expected.count)/\(expected.count) cases pass on cpu"), r.summary)

        let rows = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [[String: Any]])
        XCTAssertEqual(rows.compactMap { $0["parameters"] as? String }, expected.map(\.parameters))
        for row in rows {
            let nmse = try XCTUnwrap(row["nmse"] as? Double), bound = try XCTUnwrap(row["maxNMSE"] as? Double)
            XCTAssertEqual(row["passed"] as? Bool, true)
            XCTAssertLessThanOrEqual(nmse, bound)
        }
        // The attention cases compare real outputs: float32 against float64 is never exact.
        XCTAssertTrue(rows.contains { $0["op"] as? String == "attention" && ($0["nmse"] as? Double ?? 0) > 0 }, r.stdout)
    }

    /// On CPU devices OpenCL's decode matmuls share blocks of rows between work-groups through a counter;
    /// with PoCL held to one worker thread the work-groups run one after another, and each block must
    /// still be taken once (a design that waited for another work-group would hang here).
    func testOpenCLDecodeMatmulsRunOnOneWorkerThread() throws {
        let probe = try XCTUnwrap(EngineRegistry.entries.first { $0.name == "opencl" }).probe()
        guard probe.isAvailable else {
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail("OpenCL must run in CI") }
            throw XCTSkip("opencl engine unavailable: \(probe.unavailableReason ?? "no device")")
        }
        let r = try CLI.run(["conformance", "--backend", "opencl", "--ops", "matmul"], timeout: 300,
                            environment: ["POCL_MAX_PTHREAD_COUNT": "1"])
        XCTAssertEqual(r.status, 0, r.summary)
        let cases = ConformanceCatalog.all.filter { $0.op == "matmul" }.count
        XCTAssertTrue(r.stdout.contains("\(cases)/\(cases) cases pass on opencl"), r.summary)
    }

    func testUnknownOpIsAUsageError() throws {
        try CLI.expectFailure(["conformance", "--ops", "matmull"], status: 64,
                              stderrContains: ["unknown op 'matmull'", "matmul"])
    }
}
