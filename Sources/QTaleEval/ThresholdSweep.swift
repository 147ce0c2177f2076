import Foundation
import QTaleCore

/// Accuracy against execution ratio over a list of router thresholds θ (method.md §2(b)): the curve a
/// threshold is picked from, and the evidence that lowering θ buys back accuracy with executed blocks.
///
/// Every θ runs the same questions on the same weights (``ThresholdEvaluator``); the dense model (no
/// routers) is measured once as the reference. `qtale sweep` writes this as JSON and as an SVG plot.
public struct ThresholdSweep: Codable, Sendable {
    public var run: SweepRun
    /// The model without routing; nil when the sweep was asked to skip it.
    public var dense: SweepPoint?
    /// One point per θ, in ascending θ.
    public var points: [SweepPoint]

    public init(run: SweepRun, dense: SweepPoint?, points: [SweepPoint]) {
        self.run = run
        self.dense = dense
        self.points = points
    }

    /// Measures the dense reference (when `includeDense`) and then every θ of `thresholds` (sorted,
    /// duplicates dropped). `progress(done, total)` counts questions over the whole sweep.
    public static func measure(_ evaluator: ThresholdEvaluator, thresholds: [Float], includeDense: Bool = true,
                               run: SweepRun, progress: (Int, Int) -> Void = { _, _ in }) throws -> ThresholdSweep {
        let grid = try ThresholdGrid.validated(thresholds)
        let perPoint = evaluator.questionCount
        let total = perPoint * (grid.count + (includeDense ? 1 : 0))
        var finished = 0
        func step(_ threshold: Float?) throws -> SweepPoint {
            let point = try evaluator.evaluate(threshold: threshold) { progress(finished + $0, total) }
            finished += perPoint
            return point
        }
        let dense = includeDense ? try step(nil) : nil
        var points: [SweepPoint] = []
        for θ in grid { points.append(try step(θ)) }
        return ThresholdSweep(run: run, dense: dense, points: points)
    }

    /// The plot: per task, `metric` in percent (y) against that task's execution ratio (x), each point
    /// labelled with its θ, and the task's dense accuracy as a dashed line in the same colour.
    public func plot(metric: AccuracyMetric, title: String? = nil) -> SVGLinePlot {
        var plot = SVGLinePlot(title: title ?? "\(metric.rawValue) against execution ratio (\(URL(fileURLWithPath: run.model).lastPathComponent))",
                               xLabel: "execution ratio (executed share of token × block pairs)",
                               yLabel: "\(metric.rawValue) (%)")
        // Execution ratios end at 1: show the axis up to just past it, from a tenth below the lowest point.
        let lowest = points.flatMap { $0.tasks.map(\.execution_ratio) }.filter(\.isFinite).min() ?? 0
        plot.xRange = max(0, (floor((lowest - 0.02) * 10) / 10))...1.02
        for (i, task) in run.tasks.enumerated() {
            let color = SVGLinePlot.palette[i % SVGLinePlot.palette.count]
            let points: [SVGLinePlot.Point] = points.compactMap { p in
                guard i < p.tasks.count else { return nil }
                let label = p.threshold.map { "θ " + Self.label($0) }
                return SVGLinePlot.Point(x: p.tasks[i].execution_ratio, y: 100 * p.tasks[i].accuracy(metric), label: label)
            }
            plot.series.append(SVGLinePlot.Series(name: "\(task.task) (n \(task.n))", points: points, color: color))
            if let dense, i < dense.tasks.count {
                plot.referenceLines.append(SVGLinePlot.ReferenceLine(
                    name: String(format: "%@ dense %.1f", task.task, 100 * dense.tasks[i].accuracy(metric)),
                    y: 100 * dense.tasks[i].accuracy(metric), color: color))
            }
        }
        return plot
    }

    /// θ as short text: `0.35`, `0.8125`.
    static func label(_ θ: Double) -> String {
        var text = String(format: "%.4f", θ)
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text += "0" }
        return text
    }
}

/// Lists of thresholds θ.
public enum ThresholdGrid {
    /// `count` evenly spaced θ strictly inside (0, 1): i / (count + 1) for i = 1 ... count
    /// (19 gives 0.05, 0.10, ..., 0.95; 9 gives 0.1, ..., 0.9).
    public static func even(count: Int) throws -> [Float] {
        guard count >= 1 && count <= 10_000 else { throw QTaleError.invalidArgument("a θ grid needs between 1 and 10000 points, got \(count)") }
        return (1...count).map { Float(Double($0) / Double(count + 1)) }
    }

    /// `thresholds` sorted ascending without duplicates; every θ must lie in [0, 1) (θ = 1 would be
    /// `p_exec > 1`, which no router passes) and the list must not be empty.
    public static func validated(_ thresholds: [Float]) throws -> [Float] {
        guard !thresholds.isEmpty else { throw QTaleError.invalidArgument("the list of thresholds is empty") }
        if let bad = thresholds.first(where: { !($0 >= 0 && $0 < 1) }) {
            throw QTaleError.invalidArgument("threshold \(bad) is outside [0, 1)")
        }
        return Array(Set(thresholds)).sorted()
    }
}
