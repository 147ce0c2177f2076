import Foundation
import QTaleTestSupport
import XCTest

/// `qtale eval` end to end on the synthetic model: dense and routed runs write their JSON, routing is
/// reported, and bad flags or data end with a message and a nonzero status.
final class CLIEvalTests: XCTestCase {
    var data: String { ThresholdCLITests.data }

    func testEvalWritesAccuracyAndTelemetry() throws {
        let dense = try CLI.run(["eval", "-m", ThresholdCLITests.model, "--task", "arc_easy", "--data", data, "--threads", "1", "--no-progress"])
        XCTAssertEqual(dense.status, 0, dense.summary)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(dense.stdout.utf8)) as? [String: Any], dense.summary)
        XCTAssertTrue(dense.stderr.contains("arc_easy: acc"), dense.summary)
        let results = try XCTUnwrap((json["results"] as? [String: Any])?["arc_easy"] as? [String: Any])
        XCTAssertEqual(results["n"] as? Int, 6)
        XCTAssertNotNil(results["acc"] as? Double)
        XCTAssertEqual((json["execution"] as? [String: Any])?["execution_ratio"] as? Double, 1)

        let out = TemporaryFiles.path("eval-\(UUID().uuidString.prefix(6)).json")
        let routed = try CLI.run(["eval", "-m", ThresholdCLITests.model, "--task", "arc_easy", "--data", data, "--threads", "1",
                                  "--no-progress", "--exec-ratio", "0.5", "--always-on-blocks", "0", "--json", out])
        XCTAssertEqual(routed.status, 0, routed.summary)
        XCTAssertEqual(routed.stdout, "", "the JSON went to --json")
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any])
        let execution = try XCTUnwrap(report["execution"] as? [String: Any])
        let ratio = try XCTUnwrap(execution["execution_ratio"] as? Double)
        XCTAssertEqual(ratio, 0.5, accuracy: 0.1, "--exec-ratio 0.5 must show in the report")
        XCTAssertLessThan(try XCTUnwrap(execution["flops_ratio"] as? Double), 0.7)
    }

    func testEvalRefusesBadInput() throws {
        let model = ThresholdCLITests.model
        try CLI.expectFailure(["eval", "-m", model, "--task", "nope", "--data", data], stderrContains: ["nope"])
        try CLI.expectFailure(["eval", "-m", model, "--task", "arc_easy", "--data", "/no/such.jsonl"], stderrContains: ["/no/such.jsonl"])
        try CLI.expectFailure(["eval", "-m", model, "--task", "arc_easy", "--data", data, "--limit", "0"], stderrContains: ["--limit"])
        let broken = TemporaryFiles.path("broken-arc.jsonl")
        try "{\"id\": 1, \"question\": ".write(toFile: broken, atomically: true, encoding: .utf8)
        try CLI.expectFailure(["eval", "-m", model, "--task", "arc_easy", "--data", broken], stderrContains: ["broken-arc.jsonl"])
    }
}
