import Foundation
import QTaleCore
import QTaleData
import QTaleEval
import QTaleModel
import QTaleTestSupport
import XCTest

/// The θ sweep on a synthetic model with random routers: cost falls as θ rises, θ = 0 is the dense
/// model, and the figures are those `qtale eval` would report at each θ.
final class ThresholdSweepTests: XCTestCase {
    func makeEvaluator(questions: [MultipleChoiceQuestion]? = nil) throws -> ThresholdEvaluator {
        let model = try ThresholdFixture.model()
        let set = EvaluationSet(task: .arcEasy, data: "synthetic", questions: questions ?? ThresholdFixture.questions(answers: [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]))
        return try ThresholdEvaluator(model: model, routers: ThresholdFixture.routers(), sets: [set], contextLength: 128)
    }

    func run(_ evaluator: ThresholdEvaluator) -> SweepRun {
        evaluator.run(threads: 2, routerSource: "random seed 9", metric: .acc)
    }

    func testExecutionRatioFallsAsThresholdRisesAndThetaZeroIsDense() throws {
        let evaluator = try makeEvaluator()
        var calls = 0, last = 0
        let thresholds: [Float] = [0.95, 0, 0.5, 0.7, 0.8, 0.85, 0.9, 0.99, 0.8]
        let sweep = try ThresholdSweep.measure(evaluator, thresholds: thresholds, run: run(evaluator)) { done, total in
            XCTAssertEqual(total, 9 * 10)
            XCTAssertGreaterThan(done, last)
            (calls, last) = (calls + 1, done)
        }
        XCTAssertEqual(last, 90, "progress reaches the total")
        XCTAssertEqual(sweep.points.map(\.threshold), [0, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99], "sorted, duplicates dropped")
        let ratios = sweep.points.map(\.execution_ratio)
        for (a, b) in zip(ratios, ratios.dropFirst()) { XCTAssertGreaterThanOrEqual(a, b, "execution ratio must not rise with θ: \(ratios)") }
        XCTAssertLessThan(ratios.last!, 0.5, "θ 0.99 must skip most blocks: \(ratios)")
        XCTAssertGreaterThan(Set(ratios).count, 3, "the grid should see several ratios: \(ratios)")

        // θ = 0 executes every block: the dense model's predictions, with the routers' FLOPs on top.
        let dense = try XCTUnwrap(sweep.dense)
        let zero = sweep.points[0]
        XCTAssertNil(dense.threshold)
        XCTAssertEqual(zero.execution_ratio, 1)
        XCTAssertEqual(zero.acc, dense.acc)
        XCTAssertEqual(zero.acc_norm, dense.acc_norm)
        XCTAssertEqual(zero.tokens_processed, dense.tokens_processed)
        XCTAssertEqual(zero.flops_dense, dense.flops_dense)
        XCTAssertGreaterThan(zero.flops_ratio, 1)
        XCTAssertEqual(dense.flops_ratio, 1)
        // FLOPs follow the execution ratio.
        XCTAssertLessThan(sweep.points.last!.flops_ratio, zero.flops_ratio)
    }

    func testPointsAgreeWithTheEvaluatorRunDirectly() throws {
        let evaluator = try makeEvaluator()
        let point = try evaluator.evaluate(threshold: 0.85)
        let session = try evaluator.model.makeSession(contextLength: 128, policy: .routed(evaluator.routers, threshold: 0.85))
        let direct = try MultipleChoiceEvaluator(task: .arcEasy, model: evaluator.model, session: session).run(evaluator.sets[0].questions)
        XCTAssertEqual(point.threshold, 0.85)
        XCTAssertEqual(point.acc, direct.accuracy)
        XCTAssertEqual(point.acc_norm, direct.normalisedAccuracy)
        XCTAssertEqual(point.execution_ratio, direct.telemetry.executionRatio)
        XCTAssertEqual(point.tasks.map(\.n), [10])
        XCTAssertEqual(point.tokens_processed, direct.tokensProcessed)
    }

    func testSeveralTasksAverageAccuracyAndPoolTheRatio() throws {
        let model = try ThresholdFixture.model()
        let a = EvaluationSet(task: .arcEasy, data: "a", questions: ThresholdFixture.questions(answers: [0, 1, 2, 3]))
        let b = EvaluationSet(task: .openBookQA, data: "b", questions: ThresholdFixture.questions(answers: [3, 3, 3, 3, 3, 3]))
        let evaluator = try ThresholdEvaluator(model: model, routers: ThresholdFixture.routers(), sets: [a, b], contextLength: 128)
        XCTAssertEqual(evaluator.questionCount, 10)
        let point = try evaluator.evaluate(threshold: 0.85)
        XCTAssertEqual(point.tasks.map(\.task), ["arc_easy", "openbookqa"])
        XCTAssertEqual(point.acc, (point.tasks[0].acc + point.tasks[1].acc) / 2, accuracy: 1e-12)
        let tokens = point.tasks.map { Double($0.tokens_processed) }
        XCTAssertEqual(point.execution_ratio, (point.tasks[0].execution_ratio * tokens[0] + point.tasks[1].execution_ratio * tokens[1]) / (tokens[0] + tokens[1]),
                       accuracy: 1e-12)

        let sweep = ThresholdSweep(run: evaluator.run(threads: 2, routerSource: "x", metric: .acc), dense: try evaluator.evaluate(threshold: nil),
                                   points: [point])
        let plot = sweep.plot(metric: .acc)
        XCTAssertEqual(plot.series.count, 2)
        XCTAssertEqual(plot.referenceLines.count, 2)
        XCTAssertEqual(plot.series[1].points.first?.label, "θ 0.85")
        // The JSON reads back.
        let decoded = try JSONDecoder().decode(ThresholdSweep.self, from: JSONEncoder().encode(sweep))
        XCTAssertEqual(decoded.points, sweep.points)
        XCTAssertEqual(decoded.run.tasks.map(\.n), [4, 6])
    }

    func testBadInputsAreErrors() throws {
        let model = try ThresholdFixture.model()
        XCTAssertThrowsError(try ThresholdEvaluator(model: model, routers: ThresholdFixture.routers(), sets: [], contextLength: 128))
        let wrong = try RouterSet.random(configuration: RouterConfiguration(hidden: 4), dModel: 64, layers: 5, seed: 1)
        XCTAssertThrowsError(try ThresholdEvaluator(model: model, routers: wrong,
                                                    sets: [EvaluationSet(task: .arcEasy, data: "", questions: ThresholdFixture.questions(answers: [0]))],
                                                    contextLength: 128)) { XCTAssertTrue("\($0)".contains("5 blocks"), "\($0)") }
        XCTAssertThrowsError(try ThresholdGrid.validated([])) { XCTAssertTrue("\($0)".contains("empty"), "\($0)") }
        XCTAssertThrowsError(try ThresholdGrid.validated([0.5, 1])) { XCTAssertTrue("\($0)".contains("outside [0, 1)"), "\($0)") }
        XCTAssertThrowsError(try ThresholdGrid.validated([-0.1]))
        XCTAssertThrowsError(try ThresholdGrid.validated([.nan]))
        XCTAssertThrowsError(try ThresholdGrid.even(count: 0))
        XCTAssertThrowsError(try EvaluationSet.load(task: .arcEasy, data: "/nonexistent/arc.jsonl")) {
            XCTAssertTrue("\($0)".contains("does not exist"), "\($0)")
        }
    }

    func testEvenGrid() throws {
        let grid = try ThresholdGrid.even(count: 19)
        XCTAssertEqual(grid.count, 19)
        XCTAssertEqual(grid.first!, 0.05, accuracy: 1e-7)
        XCTAssertEqual(grid[9], 0.5, accuracy: 1e-7)
        XCTAssertEqual(grid.last!, 0.95, accuracy: 1e-7)
        XCTAssertEqual(try ThresholdGrid.even(count: 1), [0.5])
    }
}
