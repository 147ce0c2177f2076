import Foundation
import QTaleCore
@testable import QTaleQuantize
import XCTest

/// The ℓ1-ball projection against a float64 reference: the soft-threshold level found by bisection on
/// `Σ max(|v_i| − θ, 0) = radius`, and the projection's optimality (KKT) conditions.
final class L1BallProjectionTests: XCTestCase {
    /// θ with `Σ max(|v_i| − θ, 0) = radius` by 200 float64 bisection steps (0 inside the ball).
    func bisectionThreshold(_ v: [Float], radius: Double) -> Double {
        let mags = v.map { Double(abs($0)) }
        if mags.reduce(0, +) <= radius { return 0 }
        var lo = 0.0, hi = mags.max()!
        for _ in 0..<200 {
            let mid = (lo + hi) / 2
            let excess = mags.reduce(0.0) { $0 + max($1 - mid, 0) }
            if excess > radius { lo = mid } else { hi = mid }
        }
        return (lo + hi) / 2
    }

    /// Random vectors of mixed lengths, scales and radii, a third of them inside the ball.
    func cases(count: Int, seed: UInt64) -> [(v: [Float], radius: Float)] {
        var rng = SeededGenerator(seed: seed)
        return (0..<count).map { c in
            let n = [1, 2, 3, 7, 31, 32, 100, 128, 577, 1536][c % 10]
            let scale = Float.random(in: 1e-3...10, using: &rng)
            let heavy = c % 4 == 0  // a few large outliers, like weight rows
            let v = (0..<n).map { i -> Float in
                let x = Float.random(in: -1...1, using: &rng) * scale
                return heavy && i % 17 == 0 ? x * 20 : x
            }
            let l1 = v.reduce(0) { $0 + abs($1) }
            let radius: Float = switch c % 3 {
            case 0: l1 * Float.random(in: 1.0...3.0, using: &rng) + 1e-6  // inside
            case 1: l1 * Float.random(in: 0.01...0.99, using: &rng)        // outside
            default: max(l1 * 1e-5, 1e-7)                                    // far outside (MagR's regime)
            }
            return (v, radius)
        }
    }

    func testThresholdMatchesBisectionAndSorting() {
        var worst = 0.0
        for (v, radius) in cases(count: 600, seed: 11) {
            let reference = bisectionThreshold(v, radius: Double(radius))
            let filtered = Double(L1BallProjection.threshold(v, radius: radius))
            let sorted = Double(L1BallProjection.thresholdBySorting(v, radius: radius))
            if reference == 0 {
                XCTAssertEqual(filtered, 0)
                XCTAssertEqual(sorted, 0)
                continue
            }
            // θ is a float32 result: compare relative to the largest magnitude, the scale it lives at.
            let scale = Double(v.map { abs($0) }.max()!)
            worst = max(worst, abs(filtered - reference) / scale, abs(sorted - reference) / scale)
        }
        XCTAssertLessThan(worst, 1e-6)
    }

    /// The projection `u` of `v` satisfies: `‖u‖₁ ≤ radius`; `u = v` inside the ball; otherwise
    /// `‖u‖₁ = radius`, `u_i = sign(v_i)(|v_i| − θ)` where `|v_i| > θ` and `u_i = 0` where `|v_i| ≤ θ`
    /// for one θ > 0 (the KKT conditions of `min ½‖u − v‖²` s.t. `‖u‖₁ ≤ radius`).
    func testProjectionSatisfiesKKTConditions() {
        for (v, radius) in cases(count: 300, seed: 12) {
            var u = v
            L1BallProjection.project(&u, radius: radius)
            let l1v = v.reduce(0.0) { $0 + Double(abs($1)) }
            let l1u = u.reduce(0.0) { $0 + Double(abs($1)) }
            let scale = Double(v.map { abs($0) }.max()!)
            if l1v <= Double(radius) {
                XCTAssertEqual(u, v, "a vector inside the ball is its own projection")
                continue
            }
            XCTAssertEqual(l1u, Double(radius), accuracy: 1e-5 * l1v + 1e-6 * Double(radius))
            let theta = bisectionThreshold(v, radius: Double(radius))
            for (x, y) in zip(v, u) {
                XCTAssertTrue(y == 0 || (y > 0) == (x > 0), "the projection keeps signs")
                XCTAssertEqual(Double(abs(y)), max(Double(abs(x)) - theta, 0), accuracy: 2e-6 * scale)
            }
        }
    }

    /// Row- and segment-wise projection equals projecting each piece on its own.
    func testRowsAndSegmentsProjectIndependently() {
        var rng = SeededGenerator(seed: 13)
        let rows = 9, columns = 100  // segments of 32: 32, 32, 32, 4
        let m = (0..<(rows * columns)).map { _ in Float.random(in: -1...1, using: &rng) }
        for segment in [nil, 32] as [Int?] {
            var projected = m
            L1BallProjection.projectRows(&projected, rows: rows, columns: columns, segmentLength: segment, radius: 0.5)
            let length = segment ?? columns
            for r in 0..<rows {
                var start = 0
                while start < columns {
                    let end = min(columns, start + length)
                    var piece = Array(m[(r * columns + start)..<(r * columns + end)])
                    L1BallProjection.project(&piece, radius: 0.5)
                    XCTAssertEqual(Array(projected[(r * columns + start)..<(r * columns + end)]), piece)
                    start = end
                }
            }
        }
    }

    /// The ℓ∞ prox as MagR computes it (a clip at θ) equals the reference's `z − α·Proj(z/α)`.
    func testProximalOperatorMatchesMoreauForm() {
        for (index, (v, _)) in cases(count: 120, seed: 14).enumerated() {
            let l1 = v.reduce(0) { $0 + abs($1) }
            let alpha: Float = index % 2 == 0 ? l1 * 0.05 : l1 * 2  // outside and inside the ball
            var prox = v
            MagR.proximalLInfinity(&prox, rows: 1, columns: v.count, segmentLength: nil, alpha: alpha)
            var projected = v.map { $0 / alpha }
            L1BallProjection.project(&projected, radius: 1)
            let scale = v.map { abs($0) }.max()!
            for i in v.indices {
                XCTAssertEqual(prox[i], v[i] - alpha * projected[i], accuracy: 1e-5 * scale)
            }
        }
    }
}
