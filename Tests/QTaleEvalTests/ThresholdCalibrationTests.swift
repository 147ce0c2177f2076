import Foundation
import QTaleCore
import QTaleData
import QTaleEval
import QTaleModel
import QTaleTestSupport
import XCTest

/// Threshold calibration (largest θ within an accuracy tolerance of dense) and the target-ratio
/// bisection: the rules on made-up accuracy curves, then end to end on the synthetic model.
final class ThresholdCalibrationTests: XCTestCase {
    let grid = try! ThresholdGrid.even(count: 19)

    /// Accuracy 0.60 up to θ 0.43, a dip to 0.55 until 0.6, then a recovery to 0.60 (noise, not headroom).
    func dipping(_ θ: Float) -> SweepPoint {
        let t = Double(θ)
        return .fake(t, acc: t <= 0.43 ? 0.60 : t <= 0.6 ? 0.55 : 0.60, ratio: 1 - t / 2)
    }

    func testPicksTheLargestThetaBeforeTheFirstFailureAndRefinesIt() throws {
        var measured: [Double] = []
        let result = try ThresholdCalibration.calibrate(dense: .fake(nil, acc: 0.60, ratio: 1), grid: grid, tolerance: 1,
                                                        resolution: 0.005) { θ in
            measured.append(Double(θ))
            return dipping(θ)
        }
        XCTAssertEqual(result.mode, "tolerance")
        XCTAssertLessThanOrEqual(result.threshold, 0.43)
        XCTAssertGreaterThan(result.threshold, 0.43 - 0.005)
        let failing = try XCTUnwrap(result.first_failing_threshold)
        XCTAssertGreaterThan(failing, 0.43)
        XCTAssertLessThanOrEqual(failing - result.threshold, 0.005 + 1e-9)
        XCTAssertEqual(result.saturated, false)
        // The grid stopped at its first failure (0.45): the recovery above 0.6 is never measured.
        XCTAssertFalse(measured.contains { $0 > 0.45 + 1e-6 }, "\(measured)")
        XCTAssertEqual(result.trace.filter { $0.phase == "grid" }.count, 9)
        XCTAssertEqual(result.trace.first?.phase, "dense")
        XCTAssertEqual(result.point.threshold, result.threshold)
        XCTAssertEqual(result.trace.last { $0.passed == true }.map { $0.point.threshold ?? -1 }, result.threshold)
    }

    func testToleranceIsInAccuracyPoints() throws {
        // A 5-point dip passes a tolerance of 5 points, so the recovery keeps every grid θ passing.
        let result = try ThresholdCalibration.calibrate(dense: .fake(nil, acc: 0.60, ratio: 1), grid: grid, tolerance: 5, measure: dipping)
        XCTAssertEqual(result.threshold, 0.95, accuracy: 1e-6)
        XCTAssertEqual(result.saturated, true)
        XCTAssertNil(result.first_failing_threshold)
        XCTAssertEqual(result.trace.count, 20, "dense + 19 grid points, no bisection")
    }

    func testFallsBackToThetaZeroWhenNothingPasses() throws {
        let result = try ThresholdCalibration.calibrate(dense: .fake(nil, acc: 0.60, ratio: 1), grid: grid, tolerance: 0,
                                                        resolution: 0.01) { θ in
            .fake(Double(θ), acc: θ == 0 ? 0.60 : 0.40, ratio: 1 - Double(θ))
        }
        XCTAssertEqual(result.threshold, 0)
        XCTAssertEqual(result.point.acc, 0.60)
        XCTAssertEqual(result.trace.last?.phase, "fallback")
        XCTAssertLessThanOrEqual(try XCTUnwrap(result.first_failing_threshold), 0.01)
    }

    func testInvalidSettingsAreErrors() {
        let dense = SweepPoint.fake(nil, acc: 0.5, ratio: 1)
        XCTAssertThrowsError(try ThresholdCalibration.calibrate(dense: dense, grid: grid, tolerance: -0.1, measure: dipping)) {
            XCTAssertTrue("\($0)".contains("--tolerance"), "\($0)")
        }
        XCTAssertThrowsError(try ThresholdCalibration.calibrate(dense: dense, grid: [], tolerance: 1, measure: dipping))
        XCTAssertThrowsError(try ThresholdCalibration.calibrate(dense: dense, grid: [1.0], tolerance: 1, measure: dipping))
        XCTAssertThrowsError(try ExecutionRatioTarget.search(target: 0, measure: dipping))
        XCTAssertThrowsError(try ExecutionRatioTarget.search(target: 1.5, measure: dipping))
    }

    func testTargetRatioBisection() throws {
        // ratio(θ) = max(0.2, 1 − θ²): monotone, with an always-on floor of 0.2.
        let curve: (Float) -> SweepPoint = { θ in .fake(Double(θ), acc: 0.5, ratio: max(0.2, 1 - Double(θ * θ))) }
        let result = try ExecutionRatioTarget.search(target: 0.6, ratioTolerance: 0.001, measure: curve)
        XCTAssertEqual(result.reached, true)
        XCTAssertEqual(result.point.execution_ratio, 0.6, accuracy: 0.001)
        XCTAssertEqual(result.threshold, 0.4.squareRoot(), accuracy: 0.002)
        XCTAssertLessThan(result.trace.count, 20)
        // Below the floor: the closest point, not reached.
        let floor = try ExecutionRatioTarget.search(target: 0.1, ratioTolerance: 0.001, resolution: 0.001, measure: curve)
        XCTAssertEqual(floor.reached, false)
        XCTAssertEqual(floor.point.execution_ratio, 0.2, accuracy: 1e-9)
        // Ratio 1 is θ = 0.
        XCTAssertEqual(try ExecutionRatioTarget.search(target: 1, measure: curve).threshold, 0)
    }

    // MARK: End to end on the synthetic model

    func testCalibrationOnTheSyntheticModelPicksAnInteriorTheta() throws {
        let model = try ThresholdFixture.model()
        // Questions the dense model gets right: accuracy 1, and tolerance 0 fails at the first flipped answer.
        let questions = try ThresholdFixture.questionsDenseGetsRight(model: model)
        let evaluator = try ThresholdEvaluator(model: model, routers: ThresholdFixture.routers(),
                                               sets: [EvaluationSet(task: .arcEasy, data: "synthetic", questions: questions)], contextLength: 128)
        let dense = try evaluator.evaluate(threshold: nil)
        XCTAssertEqual(dense.acc, 1)
        let result = try ThresholdCalibration.calibrate(dense: dense, grid: grid, tolerance: 0, resolution: 0.005) {
            try evaluator.evaluate(threshold: $0)
        }
        XCTAssertEqual(result.saturated, false, "θ 0.95 skips enough blocks to flip an answer: \(result.trace.map(\.point.summary))")
        XCTAssertGreaterThan(result.threshold, 0, "some θ above 0 keeps every answer")
        XCTAssertLessThan(result.threshold, 0.95)
        // Within tolerance (here: no answer lost), every grid θ below passes, and a failure lies within the resolution above.
        XCTAssertGreaterThanOrEqual(result.point.acc, dense.acc)
        for step in result.trace where step.phase == "grid" && step.point.threshold! <= result.threshold {
            XCTAssertEqual(step.passed, true)
        }
        let failing = try XCTUnwrap(result.first_failing_threshold)
        let failure = try XCTUnwrap(result.trace.first { $0.point.threshold == failing })
        XCTAssertEqual(failure.passed, false)
        XCTAssertLessThan(failure.point.acc, 1)
        XCTAssertLessThanOrEqual(failing - result.threshold, 0.005 + 1e-6)
        // The next grid θ above the answer fails or was never reached.
        if let next = grid.map(Double.init).first(where: { $0 > result.threshold + 1e-6 }),
           let step = result.trace.first(where: { $0.phase == "grid" && abs(($0.point.threshold ?? -1) - next) < 1e-6 }) {
            XCTAssertEqual(step.passed, false)
        }
        XCTAssertLessThan(result.point.execution_ratio, 1, "the chosen θ skips something")
        XCTAssertEqual(result.point, try evaluator.evaluate(threshold: Float(result.threshold)).withTimesOf(result.point), "reproducible")
    }

    func testTargetRatioOnTheSyntheticModel() throws {
        let model = try ThresholdFixture.model()
        let evaluator = try ThresholdEvaluator(model: model, routers: ThresholdFixture.routers(),
                                               sets: [EvaluationSet(task: .arcEasy, data: "synthetic", questions: ThresholdFixture.questions(answers: [Int](repeating: 0, count: 10)))],
                                               contextLength: 128)
        let result = try ExecutionRatioTarget.search(target: 0.7, ratioTolerance: 0.01) { try evaluator.evaluate(threshold: $0) }
        XCTAssertEqual(result.reached, true, "\(result.trace.map(\.point.summary))")
        XCTAssertEqual(result.point.execution_ratio, 0.7, accuracy: 0.01)
        XCTAssertLessThanOrEqual(evaluator.evaluations, 30)
    }
}

extension SweepPoint {
    /// The same point with `other`'s timings, for comparing two runs' figures.
    func withTimesOf(_ other: SweepPoint) -> SweepPoint {
        var copy = self
        copy.seconds = other.seconds
        copy.tokens_per_second = other.tokens_per_second
        copy.tasks = zip(tasks, other.tasks).map { var t = $0; t.seconds = $1.seconds; return t }
        return copy
    }
}
