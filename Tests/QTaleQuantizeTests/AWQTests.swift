import Foundation
import QTaleCore
@testable import QTaleQuantize
import XCTest

/// AWQ's pieces: candidate scales, the scale-folding identity, the arg-min loop, and the clipping
/// search against a float64 brute force.
final class AWQTests: XCTestCase {
    var rng = SeededGenerator(seed: 31)

    func gaussian() -> Float {
        let u = max(Double(rng.next() >> 11) / Double(1 << 53), 1e-300), v = Double(rng.next() >> 11) / Double(1 << 53)
        return Float(sqrt(-2 * log(u)) * cos(2 * .pi * v))
    }

    /// Activations with a few loud channels (AWQ's salient inputs) and weights with heavy tails.
    func activations(tokens: Int, columns: Int) -> [Float] {
        (0..<(tokens * columns)).map { i in gaussian() * (i % columns % 23 == 3 ? 12 : 1) + 0.3 }
    }

    func weights(rows: Int, columns: Int) -> [Float] {
        (0..<(rows * columns)).map { _ in
            let g = gaussian()
            return 0.02 * g * (abs(g) > 2.2 ? 3 : 1)
        }
    }

    func matmul(_ x: [Float], tokens: Int, _ w: [Float], rows: Int, columns: Int) -> [Double] {
        var y = [Double](repeating: 0, count: tokens * rows)
        for t in 0..<tokens {
            for r in 0..<rows {
                var s = 0.0
                for c in 0..<columns { s += Double(x[t * columns + c]) * Double(w[r * columns + c]) }
                y[t * rows + r] = s
            }
        }
        return y
    }

    // MARK: Scale search

    func testActivationMagnitudeIsMeanAbsolute() throws {
        let tokens = 301, columns = 37
        let x = activations(tokens: tokens, columns: columns)
        let s = try AWQScaleSearch.activationMagnitude(x, tokens: tokens, columns: columns)
        for c in 0..<columns {
            let expected = (0..<tokens).reduce(0.0) { $0 + Double(abs(x[$1 * columns + c])) } / Double(tokens)
            XCTAssertEqual(Double(s[c]), expected, accuracy: 1e-6 * expected)
        }
    }

    func testCandidateScalesMatchFormula() {
        var magnitude = (0..<50).map { _ in abs(gaussian()) * 3 }
        magnitude[7] = 0  // a dead input: 0^α clamps to 1e-4 for α > 0
        magnitude[8] = 40
        let ratios = AWQScaleSearch.ratios()
        XCTAssertEqual(ratios.count, 20)
        XCTAssertEqual(ratios[1], 0.05, accuracy: 1e-15)
        XCTAssertEqual(ratios.last!, 0.95, accuracy: 1e-15)
        let candidates = AWQScaleSearch.candidateScales(activationMagnitude: magnitude)
        XCTAssertEqual(candidates.count, 20)
        XCTAssertEqual(candidates[0], [Float](repeating: 1, count: 50), "α = 0 scales nothing")
        for (ratio, s) in zip(ratios, candidates) {
            let raw = magnitude.map { max(pow(Double($0), ratio), 1e-4) }
            let norm = sqrt(raw.max()! * raw.min()!)
            for c in 0..<50 { XCTAssertEqual(Double(s[c]), raw[c] / norm, accuracy: 1e-6 * raw[c] / norm) }
            XCTAssertEqual(Double(s.max()!) * Double(s.min()!), 1, accuracy: 1e-5, "geometrically centred on 1")
        }
        // AutoAWQ's duo scaling.
        let wMean = (0..<50).map { _ in Float.random(in: 0.1...1, using: &rng) }
        let duo = AWQScaleSearch.candidateScale(activationMagnitude: magnitude, ratio: 0.3, weightMagnitude: wMean)
        let raw = (0..<50).map { max(pow(Double(magnitude[$0]), 0.3) / (pow(Double(wMean[$0]), 0.7) + 1e-4), 1e-4) }
        let norm = sqrt(raw.max()! * raw.min()!)
        for c in 0..<50 { XCTAssertEqual(Double(duo[c]), raw[c] / norm, accuracy: 1e-6 * raw[c] / norm) }
    }

    /// `(W·diag(s))·(diag(s)⁻¹x) = W·x`: scaling the weight columns and dividing the inputs (what the
    /// previous op absorbs) leaves the float product unchanged.
    func testScaleFoldingIdentity() throws {
        let tokens = 17, rows = 24, columns = 96
        let x = activations(tokens: tokens, columns: columns)
        let w = weights(rows: rows, columns: columns)
        let magnitude = try AWQScaleSearch.activationMagnitude(x, tokens: tokens, columns: columns)
        for s in AWQScaleSearch.candidateScales(activationMagnitude: magnitude) {
            let scaledW = (0..<(rows * columns)).map { w[$0] * s[$0 % columns] }
            let scaledX = (0..<(tokens * columns)).map { x[$0] / s[$0 % columns] }
            let reference = matmul(x, tokens: tokens, w, rows: rows, columns: columns)
            let folded = matmul(scaledX, tokens: tokens, scaledW, rows: rows, columns: columns)
            let scale = reference.map { abs($0) }.max()!
            for (a, b) in zip(reference, folded) { XCTAssertEqual(a, b, accuracy: 1e-5 * scale) }
        }
    }

    func testScaledDequantizedIsQuantizedScaledWeightOverScale() throws {
        let rows = 10, columns = 80  // groups of 32: 32, 32, 16
        let quantizer = try GroupQuantizer(format: QuantizationFormat(bits: 3, groupSize: 32))
        let w = weights(rows: rows, columns: columns)
        let ones = [Float](repeating: 1, count: columns)
        XCTAssertEqual(try AWQScaleSearch.scaledDequantized(weight: w, rows: rows, columns: columns, scales: ones, quantizer: quantizer),
                       try RoundToNearest.fakeQuantize(w, rows: rows, columns: columns, quantizer: quantizer))
        let s = (0..<columns).map { _ in Float.random(in: 0.2...5, using: &rng) }
        let got = try AWQScaleSearch.scaledDequantized(weight: w, rows: rows, columns: columns, scales: s, quantizer: quantizer)
        let q = try RoundToNearest.fakeQuantize((0..<(rows * columns)).map { w[$0] * s[$0 % columns] },
                                                rows: rows, columns: columns, quantizer: quantizer)
        XCTAssertEqual(got, (0..<(rows * columns)).map { q[$0] / s[$0 % columns] })
    }

    /// The loop scores every candidate once, passes the scaled-dequantized weights in linear order and
    /// keeps the first strict minimum.
    func testSearchBestScaleKeepsFirstStrictMinimum() throws {
        let quantizer = try GroupQuantizer(format: QuantizationFormat(bits: 4, groupSize: 32))
        let a = AWQScaleSearch.Linear(weight: weights(rows: 4, columns: 64), rows: 4, columns: 64)
        let b = AWQScaleSearch.Linear(weight: weights(rows: 6, columns: 64), rows: 6, columns: 64)
        let candidates: [[Float]] = (0..<5).map { (i: Int) -> [Float] in
            (0..<64).map { (c: Int) -> Float in 1 + 0.1 * Float(i) * Float(c % 3) }
        }
        let scripted: [Double] = [3, 2, 1, 1, 5]
        var calls = 0
        let result = try AWQScaleSearch.searchBestScale(candidates: candidates, linears: [a, b], quantizer: quantizer) { ws in
            XCTAssertEqual(ws.count, 2)
            XCTAssertEqual(ws[1], try AWQScaleSearch.scaledDequantized(weight: b.weight, rows: 6, columns: 64,
                                                                       scales: candidates[calls], quantizer: quantizer))
            defer { calls += 1 }
            return scripted[calls]
        }
        XCTAssertEqual(calls, 5)
        XCTAssertEqual(result.index, 2)
        XCTAssertEqual(result.scales, candidates[2])
        XCTAssertEqual(result.losses, scripted)
        XCTAssertThrowsError(try AWQScaleSearch.searchBestScale(candidates: candidates, linears: [a], quantizer: quantizer) { _ in .nan })
    }

    /// On activations with loud channels, the searched scale beats plain RTN (α = 0) on the output error.
    func testScaleSearchLowersOutputErrorOnSalientChannels() throws {
        let tokens = 128, rows = 48, columns = 128
        let x = activations(tokens: tokens, columns: columns)
        let w = weights(rows: rows, columns: columns)
        let quantizer = try GroupQuantizer(format: QuantizationFormat(bits: 3, groupSize: 64))
        let reference = matmul(x, tokens: tokens, w, rows: rows, columns: columns)
        let magnitude = try AWQScaleSearch.activationMagnitude(x, tokens: tokens, columns: columns)
        let result = try AWQScaleSearch.searchBestScale(
            candidates: AWQScaleSearch.candidateScales(activationMagnitude: magnitude),
            linears: [.init(weight: w, rows: rows, columns: columns)], quantizer: quantizer
        ) { ws in
            let y = self.matmul(x, tokens: tokens, ws[0], rows: rows, columns: columns)
            return zip(y, reference).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / Double(y.count)
        }
        print("AWQ scale search: best α \(Double(result.index) / 20), output MSE \(result.losses[result.index]) vs RTN \(result.losses[0])")
        XCTAssertGreaterThan(result.index, 0)
        XCTAssertLessThan(result.losses[result.index], 0.8 * result.losses[0])
    }

    // MARK: Clip search

    /// The float64 brute force: every candidate's error `mean_t (Σ_k x[t,k](q_k − w_k))²` per group and
    /// the first strict minimum.
    func bruteForceClip(_ w: [Float], rows: Int, columns: Int, x: [Float], tokens: Int,
                        quantizer: GroupQuantizer) -> (maxima: [Float], errors: [Double], unclipped: [Double]) {
        let gs = quantizer.format.groupSize
        let groups = quantizer.format.groupsPerRow(columns: columns)
        var maxima: [Float] = [], errors: [Double] = [], unclipped: [Double] = []
        for r in 0..<rows {
            for g in 0..<groups {
                let range = (g * gs)..<min(columns, (g + 1) * gs)
                let values = range.map { w[r * columns + $0] }
                let orgMax = values.map { abs($0) }.max()!
                var best = Double.infinity, bestMax: Float = 0
                for i in 0..<10 {
                    let m = orgMax * Float(1 - Double(i) / 20)
                    let p = quantizer.parameters(for: values.map { min(max($0, -m), m) })
                    var e = 0.0
                    for t in 0..<tokens {
                        var s = 0.0
                        for (j, k) in range.enumerated() {
                            s += Double(x[t * columns + k]) * (Double(p.quantize(min(max(values[j], -m), m))) - Double(values[j]))
                        }
                        e += s * s
                    }
                    e /= Double(tokens)
                    if i == 0 { unclipped.append(e) }
                    if e < best { best = e; bestMax = m }
                }
                maxima.append(bestMax)
                errors.append(best)
            }
        }
        return (maxima, errors, unclipped)
    }

    func testClipSearchMatchesFloat64BruteForce() throws {
        let rows = 7, columns = 112, tokens = 72  // groups of 32: 32, 32, 32, 16
        let w = weights(rows: rows, columns: columns)
        let x = activations(tokens: tokens, columns: columns)
        for bits in [3, 4] {
            let quantizer = try GroupQuantizer(format: QuantizationFormat(bits: bits, groupSize: 32))
            let brute = bruteForceClip(w, rows: rows, columns: columns, x: x, tokens: tokens, quantizer: quantizer)
            for evaluation in [AWQClipSearch.Evaluation.gram, .direct] {
                let result = try AWQClipSearch.search(weight: w, rows: rows, columns: columns, inputs: x, tokens: tokens,
                                                      quantizer: quantizer, gridSize: 20, maxShrink: 0.5,
                                                      sampleTokens: nil, evaluation: evaluation)
                for i in brute.errors.indices {
                    XCTAssertEqual(result.unclippedErrors[i], brute.unclipped[i], accuracy: 1e-5 * brute.unclipped[i])
                    XCTAssertEqual(result.errors[i], brute.errors[i], accuracy: 1e-5 * brute.errors[i])
                    if evaluation == .gram { XCTAssertEqual(result.maxima[i], brute.maxima[i]) }
                }
                XCTAssertGreaterThan(result.shrinkSteps.filter { $0 > 0 }.count, 0, "some groups should clip")
            }
        }
    }

    /// On a bigger layer (automatic evaluation, sampled tokens): no group's error exceeds its unclipped
    /// error, the clipped RTN matrix is what clamping the weight first gives, and the output error drops.
    func testClipSearchNeverIncreasesErrorAndFolds() throws {
        let rows = 64, columns = 256, tokens = 1100  // 1100 / 512 → every 2nd token: 550 sampled
        let w = weights(rows: rows, columns: columns)
        let x = activations(tokens: tokens, columns: columns)
        let quantizer = try GroupQuantizer(format: QuantizationFormat(bits: 3, groupSize: 128))
        let sampled = try AWQClipSearch.sampleTokens(x, tokens: tokens, columns: columns)
        XCTAssertEqual(sampled.tokens, 550)
        XCTAssertEqual(Array(sampled.values[columns..<(2 * columns)]), Array(x[(2 * columns)..<(3 * columns)]))
        let result = try AWQClipSearch.search(weight: w, rows: rows, columns: columns, inputs: x, tokens: tokens, quantizer: quantizer)
        for (e, u) in zip(result.errors, result.unclippedErrors) { XCTAssertLessThanOrEqual(e, u) }
        let clipped = try AWQClipSearch.clipped(w, rows: rows, columns: columns, maxima: result.maxima, groupSize: 128)
        let viaMaxima = try RoundToNearest.fakeQuantize(w, rows: rows, columns: columns, quantizer: quantizer, clipMaxima: result.maxima)
        XCTAssertEqual(viaMaxima, try RoundToNearest.fakeQuantize(clipped, rows: rows, columns: columns, quantizer: quantizer))
        let plain = try RoundToNearest.fakeQuantize(w, rows: rows, columns: columns, quantizer: quantizer)
        let reference = matmul(sampled.values, tokens: sampled.tokens, w, rows: rows, columns: columns)
        func mse(_ q: [Float]) -> Double {
            let y = matmul(sampled.values, tokens: sampled.tokens, q, rows: rows, columns: columns)
            return zip(y, reference).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / Double(y.count)
        }
        let clippedCount = result.shrinkSteps.filter { $0 > 0 }.count
        print("AWQ clip search: \(clippedCount)/\(result.shrinkSteps.count) groups clipped; output MSE \(mse(viaMaxima)) vs unclipped \(mse(plain))")
        XCTAssertLessThan(mse(viaMaxima), mse(plain))
    }

    func testSampleTokensStride() throws {
        let x = (0..<(2000 * 3)).map { Float($0) }
        let s = try AWQClipSearch.sampleTokens(x, tokens: 2000, columns: 3)  // stride 3
        XCTAssertEqual(s.tokens, 667)
        XCTAssertEqual(Array(s.values[3..<6]), [9, 10, 11])
        XCTAssertEqual(try AWQClipSearch.sampleTokens(x, tokens: 2000, columns: 3, count: 4000).tokens, 2000)
    }
}
