import ArgumentParser
import Foundation
import QTaleCore
import QTaleEval
import QTaleModel

struct CalibrateThreshold: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate-threshold",
        abstract: "Pick the router threshold θ on a calibration set: the largest θ within an accuracy tolerance, or a target execution ratio.",
        discussion: """
            Tolerance mode (default, --tolerance 0.5): measures the model without routing, then the θ grid \
            in ascending order up to the first θ whose accuracy falls more than --tolerance points (0.5 = half \
            a percentage point) below dense, then bisects between the last passing and that failing θ down to \
            --resolution. The answer is the largest θ such that it and every grid θ below it pass (accuracy is \
            not monotone in θ, so a later recovery is not trusted); a failing θ lies within --resolution \
            above it. With several --task, accuracy is the mean over tasks. --metric picks acc (default: \
            reported by lm-eval for every task) or acc_norm.
            Target-ratio mode (--target-ratio r): bisects θ until the execution ratio over the calibration \
            tokens is within --ratio-tolerance of r (the ratio falls as θ rises).
            stdout (or --json) gets the JSON (θ, its figures, the dense reference and every step); stderr a \
            progress bar, each step, and the answer.
            """)

    @OptionGroup var engine: EngineOptions
    @OptionGroup(title: "Routers") var routerSource: RouterSourceOptions
    @OptionGroup(title: "Calibration tasks") var taskSet: TaskSetOptions
    @OptionGroup(title: "Coarse grid (tolerance mode)") var grid: ThresholdGridOptions

    @Option(help: "Accuracy points the routed model may lose against the dense one (tolerance mode; default 0.5).")
    var tolerance: Double?

    @Option(name: .customLong("target-ratio"), help: "Instead: find θ whose execution ratio on the calibration tokens is this, in (0, 1].")
    var targetRatio: Double?

    @Option(name: .customLong("ratio-tolerance"), help: "How close to --target-ratio counts as reached.")
    var ratioTolerance = 0.005

    @Option(help: "Stop bisecting when the θ bracket is this narrow (default 0.005; 0.0001 with --target-ratio).")
    var resolution: Double?

    @Option(help: "The accuracy compared: acc or acc_norm.")
    var metric: AccuracyMetric = .acc

    @Option(help: "Write the JSON result to this file instead of stdout.")
    var json: String?

    @Flag(name: .customLong("no-progress"), help: "Do not draw the progress bar.")
    var noProgress = false

    func validate() throws {
        guard tolerance == nil || targetRatio == nil else { throw ValidationError("use only one of --tolerance and --target-ratio") }
        if let tolerance { guard tolerance >= 0 && tolerance.isFinite else { throw ValidationError("--tolerance must be ≥ 0 (accuracy points)") } }
        if let targetRatio { guard targetRatio > 0 && targetRatio <= 1 else { throw ValidationError("--target-ratio must be in (0, 1]") } }
        guard ratioTolerance >= 0 && ratioTolerance.isFinite else { throw ValidationError("--ratio-tolerance must be ≥ 0") }
        if let resolution { guard resolution > 0 && resolution < 1 else { throw ValidationError("--resolution must be in (0, 1)") } }
        if targetRatio != nil, !grid.thresholds.isEmpty || grid.grid != nil {
            throw ValidationError("--thresholds and --grid apply to tolerance mode, not --target-ratio")
        }
    }

    func run() throws {
        let thresholds = try grid.values()
        let sets = try taskSet.load()
        let model = try engine.load()
        let (routers, source) = try routerSource.load(for: model)
        let evaluator = try ThresholdEvaluator(model: model, routers: routers, sets: sets, contextLength: taskSet.contextLength(for: model))
        let perPoint = evaluator.questionCount
        // An upper bound on settings measured: dense, the grid, the bisection, the θ = 0 fallback.
        let resolution = self.resolution ?? (targetRatio == nil ? 0.005 : 1e-4)
        let bisection = Int(ceil(log2(1 / resolution))) + 1
        let bound = targetRatio == nil ? 2 + thresholds.count + bisection : 1 + min(30, bisection)
        let bar = ProgressBar("calibrate θ", total: bound * perPoint, unit: "questions", enabled: !noProgress)
        var finished = 0
        let measure: (Float?) throws -> SweepPoint = { θ in
            let point = try evaluator.evaluate(threshold: θ) { bar.update(finished + $0, status: θ.map { String(format: "θ %.4f", $0) } ?? "dense") }
            finished += perPoint
            return point
        }
        // On a terminal, clear the bar's line before a step's line; the bar redraws below it.
        let clear = isatty(2) != 0 ? "\r\u{1B}[K" : ""
        let report: (CalibrationResult.Step) -> Void = { step in
            if !noProgress { Console.status(clear + "\(step.phase): \(step.point.summary)\(step.passed.map { $0 ? "  pass" : "  FAIL" } ?? "")") }
        }
        let dense = try measure(nil)
        report(CalibrationResult.Step(phase: "dense", passed: nil, point: dense))
        var result: CalibrationResult
        if let targetRatio {
            result = try ExecutionRatioTarget.search(target: targetRatio, ratioTolerance: ratioTolerance, resolution: resolution,
                                                     metric: metric, dense: dense, measure: { try measure($0) }, progress: report)
        } else {
            result = try ThresholdCalibration.calibrate(dense: dense, grid: thresholds, metric: metric, tolerance: tolerance ?? 0.5,
                                                        resolution: resolution, measure: { try measure($0) }, progress: report)
        }
        bar.update(bar.total)
        result.run = evaluator.run(threads: engine.threads, routerSource: source, metric: metric)

        let p = result.point
        if let targetRatio {
            Console.status(String(format: "θ = %.4f: execution ratio %.4f (target %.4f%@) | %@ %.4f (dense %.4f) | FLOPs %.3f of dense | %d settings measured",
                                  result.threshold, p.execution_ratio, targetRatio, result.reached == true ? ", reached" : ", NOT reached: closest found",
                                  metric.rawValue, p.accuracy(metric), dense.accuracy(metric), p.flops_ratio, result.trace.count))
        } else {
            Console.status(String(format: "θ = %.4f: %@ %.4f (dense %.4f, %+.2f points, tolerance %.2f) | execution ratio %.4f | FLOPs %.3f of dense | %@ | %d settings measured",
                                  result.threshold, metric.rawValue, p.accuracy(metric), dense.accuracy(metric),
                                  100 * (p.accuracy(metric) - dense.accuracy(metric)), tolerance ?? 0.5, p.execution_ratio, p.flops_ratio,
                                  result.saturated == true ? "every grid θ passed (extend the grid)"
                                      : String(format: "θ %.4f fails", result.first_failing_threshold ?? .nan),
                                  result.trace.count))
        }
        if let json {
            try Console.writeJSON(result, to: json)
        } else {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            Console.out(String(decoding: try encoder.encode(result), as: UTF8.self) + "\n")
        }
    }
}
