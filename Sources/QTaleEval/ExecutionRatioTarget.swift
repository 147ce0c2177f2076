import Foundation
import QTaleCore

/// Finds the router threshold θ at which the execution ratio on the calibration tokens hits a target
/// (method.md §2(b): "the execution ratio is monotone in θ, so a target ratio can also be hit by bisection").
///
/// A higher θ executes fewer blocks: θ = 0 runs every block (ratio 1) and θ → 1 runs only the always-on
/// blocks and positions. Each step measures the calibration set at the middle θ and keeps the half whose
/// ends bracket the target. Strictly, the ratio is monotone only block by block for fixed inputs: a
/// skipped block changes what later routers see, so over a whole set it is monotone up to small wiggles,
/// and with finitely many tokens it moves in steps. Hence the stopping rule: stop at the first θ whose
/// ratio is within `ratioTolerance` of the target, or when the bracket is narrower than `resolution` (or
/// after `maxSteps`), and return the measured θ whose ratio came closest (the lower θ on a tie, i.e. the
/// one executing more).
public enum ExecutionRatioTarget {
    /// - Parameters:
    ///   - target: the execution ratio wanted, in (0, 1].
    ///   - ratioTolerance: how close counts as reached (≥ 0).
    ///   - resolution: the narrowest θ bracket worth splitting (> 0).
    ///   - dense: the model without routing, if measured (recorded for comparison only).
    public static func search(target: Double, ratioTolerance: Double = 0.005, resolution: Double = 1e-4, maxSteps: Int = 30,
                              metric: AccuracyMetric = .acc, dense: SweepPoint? = nil, measure: (Float) throws -> SweepPoint,
                              progress: (CalibrationResult.Step) -> Void = { _ in }) throws -> CalibrationResult {
        guard target > 0 && target <= 1 else { throw QTaleError.invalidArgument("--target-ratio must be in (0, 1], got \(target)") }
        guard ratioTolerance >= 0 && ratioTolerance.isFinite else {
            throw QTaleError.invalidArgument("--ratio-tolerance must be ≥ 0, got \(ratioTolerance)")
        }
        guard resolution > 0 && resolution < 1 else { throw QTaleError.invalidArgument("--resolution must be in (0, 1), got \(resolution)") }
        guard maxSteps >= 1 else { throw QTaleError.invalidArgument("the bisection needs at least one step") }
        var trace: [CalibrationResult.Step] = dense.map { [CalibrationResult.Step(phase: "dense", passed: nil, point: $0)] } ?? []
        var best: SweepPoint? = nil
        func better(_ a: SweepPoint, than b: SweepPoint) -> Bool {
            let da = abs(a.execution_ratio - target), db = abs(b.execution_ratio - target)
            return da < db || (da == db && (a.threshold ?? 0) < (b.threshold ?? 0))
        }
        func step(_ phase: String, _ θ: Double) throws -> SweepPoint {
            let point = try measure(Float(θ))
            trace.append(CalibrationResult.Step(phase: phase, passed: nil, point: point))
            progress(trace.last!)
            if best == nil || better(point, than: best!) { best = point }
            return point
        }

        if target >= 1 {
            // Only θ = 0 is sure to execute everything.
            _ = try step("bisection", 0)
        } else {
            var lo = 0.0, hi = 1.0
            for _ in 0..<maxSteps {
                let mid = (lo + hi) / 2
                let point = try step("bisection", mid)
                if abs(point.execution_ratio - target) <= ratioTolerance { break }
                if point.execution_ratio > target { lo = mid } else { hi = mid }
                if hi - lo <= resolution { break }
            }
        }
        let chosen = best!
        return CalibrationResult(run: nil, mode: "target-ratio", metric: metric.rawValue, tolerance: nil, target_ratio: target,
                                 ratio_tolerance: ratioTolerance, threshold: chosen.threshold ?? 0, point: chosen, dense: dense,
                                 first_failing_threshold: nil, saturated: nil,
                                 reached: abs(chosen.execution_ratio - target) <= ratioTolerance + 1e-12, trace: trace)
    }
}
