import Foundation
import QTaleTestSupport
import XCTest

/// `qtale sweep` and `qtale calibrate-threshold` on the synthetic model with random routers: they run end
/// to end and write their files, and invalid flags end with a message and a nonzero status.
final class ThresholdCLITests: XCTestCase {
    static let model = try! SyntheticModel.write(seed: 4712)

    /// A small ARC-format file.
    static let data: String = {
        let path = TemporaryFiles.path("threshold-arc.jsonl")
        let stems = ["The sun is hot and", "In the water there is", "Her cat likes to", "A tree grows", "The winter was", "Birds fly over the"]
        let lines = stems.enumerated().map { i, stem in
            #"{"id":"q\#(i)","question":{"stem":"\#(stem)","choices":[{"text":"bright","label":"A"},{"text":"a fish","label":"B"},{"text":"the sea","label":"C"}]},"answerKey":"\#(["A", "B", "C"][i % 3])"}"#
        }
        try! lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    var common: [String] {
        ["-m", Self.model, "--threads", "1", "--random-routers", "3", "--router-hidden", "16", "--always-on-blocks", "0",
         "--task", "arc_easy", "--data", Self.data, "--no-progress"]
    }

    func json(_ text: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    func testSweepWritesJSONAndPlot() throws {
        let out = TemporaryFiles.path("sweep-\(UUID().uuidString.prefix(8)).json"), svg = out + ".svg"
        let result = try CLI.run(["sweep"] + common + ["--thresholds", "0.9", "0", "0.8", "--json", out, "--plot", svg])
        XCTAssertEqual(result.status, 0, result.summary)
        XCTAssertEqual(result.stdout, "", "the JSON went to --json")
        let sweep = try json(String(contentsOfFile: out, encoding: .utf8))
        let points = try XCTUnwrap(sweep["points"] as? [[String: Any]])
        XCTAssertEqual(points.compactMap { $0["threshold"] as? Double }, [0, 0.8, 0.9])
        let ratios = points.compactMap { $0["execution_ratio"] as? Double }
        XCTAssertEqual(ratios.first, 1)
        XCTAssertGreaterThanOrEqual(ratios[1], ratios[2])
        XCTAssertNotNil(sweep["dense"] as? [String: Any])
        XCTAssertEqual((sweep["run"] as? [String: Any])?["routers"] as? String, "random seed 3 (hidden 16)")
        let plot = try String(contentsOfFile: svg, encoding: .utf8)
        XCTAssertEqual(plot.components(separatedBy: "<polyline").count - 1, 1)
        XCTAssertTrue(result.stderr.contains("θ 0.8000"), result.stderr)
    }

    func testCalibrateWritesTheAnswerToStdout() throws {
        let result = try CLI.run(["calibrate-threshold"] + common + ["--grid", "3", "--tolerance", "100"])
        XCTAssertEqual(result.status, 0, result.summary)
        let calibration = try json(result.stdout)
        XCTAssertEqual(calibration["threshold"] as? Double, 0.75, "every θ passes a 100-point tolerance: the largest grid θ")
        XCTAssertEqual(calibration["saturated"] as? Bool, true)
        XCTAssertEqual((calibration["trace"] as? [Any])?.count, 4)
        XCTAssertTrue(result.stderr.contains("θ = 0.7500"), result.stderr)

        let target = try CLI.run(["calibrate-threshold"] + common + ["--target-ratio", "1"])
        XCTAssertEqual(target.status, 0, target.summary)
        XCTAssertEqual(try json(target.stdout)["threshold"] as? Double, 0)
    }

    func testInvalidFlags() throws {
        let base = ["sweep"] + common
        try CLI.expectFailure(base + ["--thresholds", "0.5", "1.5"], status: 64, stderrContains: ["--thresholds: 1.5 is outside [0, 1)"])
        try CLI.expectFailure(base + ["--thresholds"], stderrContains: ["--thresholds"])
        try CLI.expectFailure(base + ["--thresholds", "0.5", "--grid", "4"], status: 64, stderrContains: ["only one of --thresholds and --grid"])
        try CLI.expectFailure(base + ["--grid", "0"], status: 64, stderrContains: ["--grid must be between 1 and 10000"])
        try CLI.expectFailure(base + ["--plot", "x.png"], status: 64, stderrContains: ["--plot must end in .svg"])
        try CLI.expectFailure(["sweep", "-m", Self.model, "--random-routers", "1", "--task", "arc_easy"], status: 64,
                              stderrContains: ["one --data per --task"])
        try CLI.expectFailure(["sweep", "-m", Self.model, "--random-routers", "1"], status: 64, stderrContains: ["at least one --task"])
        try CLI.expectFailure(["sweep", "-m", Self.model, "--task", "arc_easy", "--data", Self.data, "--threads", "1", "--no-progress"],
                              status: 1, stderrContains: ["no routers", "--routers FILE or --random-routers SEED"])
        try CLI.expectFailure(base + ["--routers", "/nonexistent.safetensors"], status: 64, stderrContains: ["only one of --routers and --random-routers"])

        let calibrate = ["calibrate-threshold"] + common
        try CLI.expectFailure(calibrate + ["--tolerance=-1"], status: 64, stderrContains: ["--tolerance must be ≥ 0"])
        try CLI.expectFailure(calibrate + ["--target-ratio", "0"], status: 64, stderrContains: ["--target-ratio must be in (0, 1]"])
        try CLI.expectFailure(calibrate + ["--target-ratio", "0.5", "--tolerance", "1"], status: 64, stderrContains: ["only one of --tolerance and --target-ratio"])
        try CLI.expectFailure(calibrate + ["--resolution", "0"], status: 64, stderrContains: ["--resolution must be in (0, 1)"])
        try CLI.expectFailure(calibrate + ["--thresholds", "0.2", "1"], status: 64, stderrContains: ["outside [0, 1)"])
        // A negative value reads as an option, so the list is empty.
        try CLI.expectFailure(calibrate + ["--thresholds", "-0.1"], status: 64, stderrContains: ["Missing value for '--thresholds"])
        try CLI.expectFailure(["calibrate-threshold", "-m", Self.model, "--random-routers", "1", "--task", "arc_easy", "--data",
                               "/nonexistent/arc.jsonl", "--threads", "1"], status: 1, stderrContains: ["does not exist"])
    }
}
