import Foundation
import QTaleCore

/// What a threshold search found, and every setting it measured on the way.
public struct CalibrationResult: Codable, Sendable {
    /// One measured setting.
    public struct Step: Codable, Sendable {
        /// `dense`, `grid`, `bisection`, or `fallback` (θ = 0, measured when no grid θ passed).
        public var phase: String
        /// Whether the point kept accuracy within tolerance of the dense model (tolerance mode only).
        public var passed: Bool?
        public var point: SweepPoint

        public init(phase: String, passed: Bool?, point: SweepPoint) {
            self.phase = phase
            self.passed = passed
            self.point = point
        }
    }

    public var run: SweepRun?
    /// `tolerance` (largest θ within the accuracy tolerance) or `target-ratio`.
    public var mode: String
    public var metric: String
    /// Accuracy points (0.5 = half a percentage point), tolerance mode.
    public var tolerance: Double?
    /// The execution ratio asked for, and how close counts as reached, target-ratio mode.
    public var target_ratio: Double?
    public var ratio_tolerance: Double?
    /// The chosen θ and its measurement.
    public var threshold: Double
    public var point: SweepPoint
    /// The model without routing (the reference in tolerance mode).
    public var dense: SweepPoint?
    /// Tolerance mode: the smallest θ measured above the chosen one that failed (nil when every grid θ
    /// passed). The chosen θ and this one are at most the bisection resolution apart.
    public var first_failing_threshold: Double?
    /// Tolerance mode: every grid θ passed, so a larger θ might pass too (extend the grid).
    /// Target-ratio mode: whether a point within `ratio_tolerance` of the target was found.
    public var saturated: Bool?
    public var reached: Bool?
    public var trace: [Step]
}

/// Picks the router threshold θ after training and quantization (method.md §2(b)): the largest θ (fewest
/// executed blocks) whose accuracy on a calibration set stays within a tolerance of the same model
/// without routing.
///
/// Accuracy is not monotone in θ (a few questions flip either way as blocks drop out), so "the largest
/// passing θ" needs a rule. The rule here: θ passes iff `100 · (dense − accuracy(θ)) ≤ tolerance`, and
/// the chosen θ is the largest one such that **it and every grid θ below it pass**:
///
/// 1. measure the grid in ascending order and stop at the first failure (θs above a failure are never
///    chosen, however they score, because a curve that dips and recovers is noise, not headroom);
/// 2. bisect between the last passing θ and the first failing one until they are `resolution` apart,
///    keeping the passing end. If the first grid θ already fails, bisection starts from θ = 0, which
///    executes every block (p_exec > 0 always holds) and so reproduces the dense model's accuracy.
///
/// The result passes, every grid θ below it passes, and a failing θ lies at most `resolution` above it.
/// When every grid θ passes, the largest is returned with `saturated` set.
public enum ThresholdCalibration {
    /// Whether `point` keeps `metric` within `tolerance` accuracy points of `dense`.
    public static func passes(_ point: SweepPoint, dense: SweepPoint, metric: AccuracyMetric, tolerance: Double) -> Bool {
        100 * (dense.accuracy(metric) - point.accuracy(metric)) <= tolerance + 1e-9
    }

    /// Runs the search.
    /// - Parameters:
    ///   - dense: the model without routing, already measured.
    ///   - grid: the coarse θ grid (any order; each in [0, 1)).
    ///   - tolerance: accuracy points, ≥ 0.
    ///   - resolution: bisection stops when the passing and failing θ are this close (> 0).
    ///   - measure: evaluates the calibration set at θ.
    ///   - progress: runs after each measured θ.
    public static func calibrate(dense: SweepPoint, grid: [Float], metric: AccuracyMetric = .acc, tolerance: Double,
                                 resolution: Double = 0.005, measure: (Float) throws -> SweepPoint,
                                 progress: (CalibrationResult.Step) -> Void = { _ in }) throws -> CalibrationResult {
        guard tolerance >= 0 && tolerance.isFinite else { throw QTaleError.invalidArgument("--tolerance must be ≥ 0, got \(tolerance)") }
        guard resolution > 0 && resolution < 1 else { throw QTaleError.invalidArgument("--resolution must be in (0, 1), got \(resolution)") }
        let grid = try ThresholdGrid.validated(grid)
        var trace = [CalibrationResult.Step(phase: "dense", passed: true, point: dense)]
        func step(_ phase: String, _ θ: Double) throws -> (Bool, SweepPoint) {
            let point = try measure(Float(θ))
            let ok = passes(point, dense: dense, metric: metric, tolerance: tolerance)
            trace.append(CalibrationResult.Step(phase: phase, passed: ok, point: point))
            progress(trace.last!)
            return (ok, point)
        }

        // 1. The grid, ascending, up to the first failure. θ = 0 is the implicit passing start.
        var lo = 0.0, loPoint: SweepPoint? = nil
        var hi: Double? = nil
        for θ in grid.map(Double.init) {
            let (ok, point) = try step("grid", θ)
            if ok { (lo, loPoint) = (θ, point) } else { hi = θ; break }
        }
        // 2. Bisection between the last pass and the first failure.
        if var failing = hi {
            while failing - lo > resolution {
                let mid = (lo + failing) / 2
                let (ok, point) = try step("bisection", mid)
                if ok { (lo, loPoint) = (mid, point) } else { failing = mid }
            }
            hi = failing
        }
        // Nothing passed above 0: measure θ = 0 itself so the answer carries real figures.
        let chosen: SweepPoint
        if let loPoint {
            chosen = loPoint
        } else {
            chosen = try step("fallback", 0).1
        }
        return CalibrationResult(run: nil, mode: "tolerance", metric: metric.rawValue, tolerance: tolerance, target_ratio: nil,
                                 ratio_tolerance: nil, threshold: chosen.threshold ?? lo, point: chosen, dense: dense,
                                 first_failing_threshold: hi.map { ($0 * 1e6).rounded() / 1e6 }, saturated: hi == nil,
                                 reached: nil, trace: trace)
    }
}
