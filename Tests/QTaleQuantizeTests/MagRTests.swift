import Foundation
import QTaleCore
import QTaleCPU
@testable import QTaleQuantize
import XCTest

/// `a · bᵀ` in float64, one row at a time: the multiplier MagR is checked with.
private final class MagRFloat64Multiplier: MatrixMultiplying {
    func multiplyTransposed(_ a: UnsafeBufferPointer<Float>, rows m: Int,
                            _ b: UnsafeBufferPointer<Float>, rows n: Int, inner k: Int,
                            into out: UnsafeMutableBufferPointer<Float>) throws {
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for l in 0..<k { s += Double(a[i * k + l]) * Double(b[j * k + l]) }
                out[i * n + j] = Float(s)
            }
        }
    }
}

/// MagR lowers the weights' per-channel (per-group) maxima while the layer's output on the calibration
/// activations barely moves.
final class MagRTests: XCTestCase {
    struct Layer {
        var tokens: Int, rows: Int, columns: Int
        var x: [Float]       // [tokens × columns]
        var weight: [Float]  // [rows × columns]
        var gram: [Float]    // XᵀX
    }

    /// Activations with the low effective rank of a transformer's hidden states (16 strong directions,
    /// a few loud channels, small isotropic noise) and weights with a few outliers per row.
    func makeLayer(tokens: Int = 192, rows: Int = 48, columns: Int = 160, seed: UInt64) -> Layer {
        var rng = SeededGenerator(seed: seed)
        func gaussian() -> Float {
            let u = max(Double(rng.next() >> 11) / Double(1 << 53), 1e-300), v = Double(rng.next() >> 11) / Double(1 << 53)
            return Float(sqrt(-2 * log(u)) * cos(2 * .pi * v))
        }
        let rank = 16
        let basis = (0..<(rank * columns)).map { _ in gaussian() }
        let loud = Set((0..<columns).filter { $0 % 37 == 5 })
        var x = [Float](repeating: 0, count: tokens * columns)
        for t in 0..<tokens {
            let z = (0..<rank).map { _ in gaussian() }
            for c in 0..<columns {
                var s: Float = 0
                for r in 0..<rank { s += z[r] * basis[r * columns + c] }
                x[t * columns + c] = (loud.contains(c) ? 6 : 1) * s / 4 + 0.05 * gaussian()
            }
        }
        var weight = (0..<(rows * columns)).map { _ in 0.02 * gaussian() }
        for r in 0..<rows {
            for j in 0..<3 { weight[r * columns + (r * 13 + j * 53) % columns] = (j % 2 == 0 ? 1 : -1) * (0.08 + 0.04 * Float(j)) }
        }
        var gram = [Float](repeating: 0, count: columns * columns)
        for i in 0..<columns {
            for j in 0..<columns {
                var s = 0.0
                for t in 0..<tokens { s += Double(x[t * columns + i]) * Double(x[t * columns + j]) }
                gram[i * columns + j] = Float(s)
            }
        }
        return Layer(tokens: tokens, rows: rows, columns: columns, x: x, weight: weight, gram: gram)
    }

    /// ‖X Mᵀ‖_F for a `[rows × columns]` matrix M.
    func outputNorm(_ layer: Layer, _ m: [Float]) -> Double {
        var s = 0.0
        for t in 0..<layer.tokens {
            for r in 0..<layer.rows {
                var y = 0.0
                for c in 0..<layer.columns { y += Double(layer.x[t * layer.columns + c]) * Double(m[r * layer.columns + c]) }
                s += y * y
            }
        }
        return sqrt(s)
    }

    /// The largest |w| of every row (`segment = nil`) or every segment of every row.
    func maxima(_ w: [Float], rows: Int, columns: Int, segment: Int?) -> [Float] {
        let length = segment ?? columns
        var out: [Float] = []
        for r in 0..<rows {
            var start = 0
            while start < columns {
                let end = min(columns, start + length)
                out.append(w[(r * columns + start)..<(r * columns + end)].map { abs($0) }.max()!)
                start = end
            }
        }
        return out
    }

    /// MagR's objective `½‖X̃(W′ − W)ᵀ‖² + α Σ ‖·‖∞` with `X̃ᵀX̃ = G/λ`.
    func objective(_ layer: Layer, _ adjusted: [Float], alpha: Float, segment: Int?, lambda: Double) -> Double {
        let d = zip(adjusted, layer.weight).map { $0 - $1 }
        let quadratic = pow(outputNorm(layer, d), 2) / lambda / 2
        let penalty = maxima(adjusted, rows: layer.rows, columns: layer.columns, segment: segment).reduce(0.0) { $0 + Double($1) }
        return quadratic + Double(alpha) * penalty
    }

    func check(_ granularity: MagR.Granularity, segment: Int?, seed: UInt64, meanRatioBelow: Double) throws {
        let layer = makeLayer(seed: seed)
        let magr = MagR(granularity: granularity)
        let adjusted = try magr.preprocess(weight: layer.weight, rows: layer.rows, columns: layer.columns,
                                          gram: layer.gram, multiplier: MagRFloat64Multiplier())
        let before = maxima(layer.weight, rows: layer.rows, columns: layer.columns, segment: segment)
        let after = maxima(adjusted, rows: layer.rows, columns: layer.columns, segment: segment)
        let ratios = zip(after, before).map { Double($0 / $1) }
        let meanRatio = ratios.reduce(0, +) / Double(ratios.count)
        let difference = zip(adjusted, layer.weight).map { $0 - $1 }
        let relativeOutputError = outputNorm(layer, difference) / outputNorm(layer, layer.weight)
        let relativeWeightChange = sqrt(difference.reduce(0.0) { $0 + Double($1 * $1) }
            / layer.weight.reduce(0.0) { $0 + Double($1 * $1) })
        print("MagR \(granularity), α \(magr.alpha): ℓ∞ after/before mean \(String(format: "%.3f", meanRatio)), "
              + "max \(String(format: "%.3f", ratios.max()!)); ‖X(W′−W)ᵀ‖/‖XWᵀ‖ \(String(format: "%.4f", relativeOutputError)); "
              + "‖W′−W‖/‖W‖ \(String(format: "%.3f", relativeWeightChange))")
        XCTAssertLessThan(meanRatio, meanRatioBelow, "MagR should shrink the maxima")
        XCTAssertLessThanOrEqual(ratios.max()!, 1.0 + 1e-6, "no maximum grows")
        XCTAssertLessThan(relativeOutputError, 0.02, "the layer output is kept")

        // Proximal gradient descent with step 1/L never raises the objective: W′ beats W, and 200
        // iterations beat 20.
        let lambda = layer.gram.withUnsafeBufferPointer { MagR.largestEigenvalue(ofSymmetric: $0, size: layer.columns) }
        var short = magr
        short.iterations = 20
        let early = try short.preprocess(weight: layer.weight, rows: layer.rows, columns: layer.columns,
                                         gram: layer.gram, multiplier: MagRFloat64Multiplier())
        let f0 = objective(layer, layer.weight, alpha: magr.alpha, segment: segment, lambda: lambda)
        let f20 = objective(layer, early, alpha: magr.alpha, segment: segment, lambda: lambda)
        let f200 = objective(layer, adjusted, alpha: magr.alpha, segment: segment, lambda: lambda)
        XCTAssertLessThan(f20, f0)
        XCTAssertLessThanOrEqual(f200, f20 * (1 + 1e-5))
    }

    func testPerChannelShrinksMaximaAndKeepsOutput() throws {
        try check(.perChannel, segment: nil, seed: 21, meanRatioBelow: 0.5)
    }

    /// Groups of 64 over 160 inputs: 64, 64 and a short last group of 32. The group penalty α = 1e-4 is
    /// ten times weaker than the per-channel one, so the maxima shrink less.
    func testPerGroupShrinksMaximaAndKeepsOutput() throws {
        try check(.perGroup(64), segment: 64, seed: 22, meanRatioBelow: 0.9)
    }

    /// The engine path (the CPU engine's `.linear`) gives the float64 path's result.
    func testEngineMultiplierMatchesFloat64() throws {
        let layer = makeLayer(tokens: 96, rows: 40, columns: 96, seed: 23)
        let magr = MagR(granularity: .perChannel, iterations: 40)
        let reference = try magr.preprocess(weight: layer.weight, rows: layer.rows, columns: layer.columns,
                                            gram: layer.gram, multiplier: MagRFloat64Multiplier())
        let engine = try magr.preprocess(weight: layer.weight, rows: layer.rows, columns: layer.columns,
                                         gram: layer.gram, multiplier: EngineMatrixMultiplier(engine: CPUEngine(threads: 2)))
        let worst = zip(reference, engine).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(worst, 1e-5)
    }

    /// Power iteration finds the top eigenvalue of `H diag(d) H` (H a Householder reflection).
    func testLargestEigenvalue() {
        var rng = SeededGenerator(seed: 24)
        let n = 70
        let u = (0..<n).map { _ in Double.random(in: -1...1, using: &rng) }
        let uu = u.reduce(0) { $0 + $1 * $1 }
        let d = (0..<n).map { i in i == 17 ? 9.0 : Double.random(in: 0...6, using: &rng) }
        var a = [Float](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<n {
                // (I − 2uuᵀ/uᵀu) diag(d) (I − 2uuᵀ/uᵀu)
                var s = 0.0
                for k in 0..<n {
                    let hik = (i == k ? 1 : 0) - 2 * u[i] * u[k] / uu
                    let hjk = (j == k ? 1 : 0) - 2 * u[j] * u[k] / uu
                    s += hik * d[k] * hjk
                }
                a[i * n + j] = Float(s)
            }
        }
        let lambda = a.withUnsafeBufferPointer { MagR.largestEigenvalue(ofSymmetric: $0, size: n) }
        XCTAssertEqual(lambda, 9, accuracy: 9e-5)
        let zero = [Float](repeating: 0, count: 9)
        XCTAssertEqual(zero.withUnsafeBufferPointer { MagR.largestEigenvalue(ofSymmetric: $0, size: 3) }, 0)
    }

    func testDefaults() {
        XCTAssertEqual(MagR(granularity: .perChannel).alpha, 1e-3)
        XCTAssertEqual(MagR(granularity: .perGroup(128)).alpha, 1e-4)
        XCTAssertEqual(MagR(granularity: .perChannel).iterations, 200)
        XCTAssertEqual(MagR.rangeShrink(bits: 4, groupSize: nil), 1.0)
        XCTAssertEqual(MagR.rangeShrink(bits: 3, groupSize: nil), 0.9)
        XCTAssertEqual(MagR.rangeShrink(bits: 3, groupSize: 128), 0.95)
        XCTAssertEqual(MagR.rangeShrink(bits: 4, groupSize: 128), 0.95)
    }

    /// A Gram matrix of zeros (no calibration signal) leaves the weight as it is.
    func testZeroGramLeavesWeight() throws {
        let w: [Float] = [0.5, -1, 2, 0.25, 3, -4]
        let out = try MagR(granularity: .perChannel).preprocess(weight: w, rows: 2, columns: 3,
                                                                gram: [Float](repeating: 0, count: 9),
                                                                multiplier: MagRFloat64Multiplier())
        XCTAssertEqual(out, w)
    }
}
