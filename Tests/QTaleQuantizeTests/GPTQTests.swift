import QTaleCore
import QTaleQuantize
import XCTest

/// GPTQ against RTN on layers with correlated inputs, its reduction to RTN when the Hessian has no
/// off-diagonal part, dead inputs, and its own loss identity.
final class GPTQTests: XCTestCase {
    struct Layer {
        let rows: Int, columns: Int, tokens: Int
        let w: [Float]
        let x: [Float]
        let hessian: [Double]
    }

    /// `X = Z·A`: Gaussian tokens mixed by a random matrix, so inputs are strongly correlated (as real
    /// activations are); a few input channels are larger, and W has outliers.
    static func layer(rows: Int, columns: Int, tokens: Int, seed: UInt64) -> Layer {
        var generator = SeededGenerator(seed: seed)
        let z = TestMatrices.gaussian(tokens * columns, &generator).map(Double.init)
        var a = TestMatrices.gaussian(columns * columns, &generator).map { Double($0) / Double(columns).squareRoot() }
        for i in 0..<columns { a[i * columns + i] += 0.3 }
        var x = TestMatrices.multiply(z, a, m: tokens, k: columns, n: columns).map(Float.init)
        for t in 0..<tokens { for c in stride(from: 0, to: columns, by: 17) { x[t * columns + c] *= 4 } }
        var w = TestMatrices.gaussian(rows * columns, &generator).map { $0 * 0.02 }
        for k in stride(from: 5, to: w.count, by: 97) { w[k] *= 6 }
        return Layer(rows: rows, columns: columns, tokens: tokens, w: w, x: x,
                     hessian: TestMatrices.hessian(x, tokens: tokens, columns: columns))
    }

    func testGPTQBeatsRTNOnCorrelatedInputsAtThreeBits() throws {
        let layer = Self.layer(rows: 48, columns: 320, tokens: 640, seed: 20)
        for groupSize in [64, 128] {
            let quantizer = try GroupQuantizer(format: QuantizationFormat(bits: 3, groupSize: groupSize))
            let rtn = try RoundToNearest.quantize(layer.w, rows: layer.rows, columns: layer.columns, quantizer: quantizer)
            let rtnError = TestMatrices.outputError(layer.w, rtn.dequantized(), x: layer.x, rows: layer.rows,
                                                    columns: layer.columns, tokens: layer.tokens)
            for actOrder in [false, true] {
                let result = try GPTQ.quantize(layer.w, rows: layer.rows, columns: layer.columns, hessian: layer.hessian,
                                               quantizer: quantizer, options: GPTQ.Options(actOrder: actOrder))
                let error = TestMatrices.outputError(layer.w, result.matrix.dequantized(), x: layer.x, rows: layer.rows,
                                                     columns: layer.columns, tokens: layer.tokens)
                print("w3 g\(groupSize) act-order \(actOrder): GPTQ/RTN output error \(error / rtnError)")
                XCTAssertLessThan(error, 0.8 * rtnError, "g\(groupSize), act-order \(actOrder)")
                XCTAssertEqual(result.deadColumns, 0)
            }
        }
    }

    /// `W − Ŵ = Err·U` and `U H Uᵀ = I`, so `tr((W − Ŵ) H (W − Ŵ)ᵀ) = 2 · squaredError` with the
    /// dampened H: checks the whole sweep (intra-block and lazy updates, groups, permutation).
    func testLossEstimateEqualsTheHessianWeightedError() throws {
        let layer = Self.layer(rows: 9, columns: 352, tokens: 400, seed: 21)
        let n = layer.columns
        var damped = layer.hessian
        let mean = (0..<n).map { damped[$0 * n + $0] }.reduce(0, +) / Double(n)
        for i in 0..<n { damped[i * n + i] += 0.01 * mean }
        for (bits, groupSize, actOrder, staticGroups) in [(3, 64, false, false), (4, 128, true, true), (3, 96, false, false),
                                                          (3, 256, false, false), (8, 32, false, true)] {
            let quantizer = try GroupQuantizer(format: QuantizationFormat(bits: bits, groupSize: groupSize))
            let result = try GPTQ.quantize(layer.w, rows: layer.rows, columns: n, hessian: layer.hessian, quantizer: quantizer,
                                           options: GPTQ.Options(actOrder: actOrder, staticGroups: staticGroups))
            let q = result.matrix.dequantized()
            var trace = 0.0
            for r in 0..<layer.rows {
                let d = (0..<n).map { Double(layer.w[r * n + $0]) - Double(q[r * n + $0]) }
                for i in 0..<n { var s = 0.0; for j in 0..<n { s += damped[i * n + j] * d[j] }; trace += d[i] * s }
            }
            XCTAssertEqual(trace / (2 * result.squaredError), 1, accuracy: 2e-3, "w\(bits) g\(groupSize) act-order \(actOrder)")
        }
    }

    /// With a diagonal Hessian no error reaches another column, so GPTQ is RTN, bit for bit, in every mode
    /// (a non-uniform diagonal makes act-order permute).
    func testDiagonalHessianGivesRTN() throws {
        var generator = SeededGenerator(seed: 22)
        let rows = 13, columns = 288
        let w = TestMatrices.gaussian(rows * columns, &generator)
        var identity = [Double](repeating: 0, count: columns * columns)
        var diagonal = identity
        for i in 0..<columns {
            identity[i * columns + i] = 1
            diagonal[i * columns + i] = Double.random(in: 0.5...2, using: &generator)
        }
        for (bits, groupSize) in [(3, 64), (4, 128), (8, 32)] {
            let quantizer = try GroupQuantizer(format: QuantizationFormat(bits: bits, groupSize: groupSize), rangeShrink: 0.95)
            let rtn = try RoundToNearest.quantize(w, rows: rows, columns: columns, quantizer: quantizer)
            for (hessian, actOrder, staticGroups) in [(identity, false, false), (identity, false, true),
                                                      (diagonal, true, true), (diagonal, false, false)] {
                let result = try GPTQ.quantize(w, rows: rows, columns: columns, hessian: hessian, quantizer: quantizer,
                                               options: GPTQ.Options(actOrder: actOrder, staticGroups: staticGroups))
                XCTAssertEqual(result.matrix, rtn, "w\(bits) g\(groupSize) act-order \(actOrder) static \(staticGroups)")
            }
        }
    }

    /// Inputs that are always zero: their Hessian row and column are zero; GPTQ zeroes their weights
    /// (which then quantize to the grid point nearest 0) instead of failing the factorisation.
    func testDeadInputsAreZeroedAndDoNotBreakTheFactorisation() throws {
        var layer = Self.layer(rows: 8, columns: 128, tokens: 300, seed: 23)
        let dead = [0, 7, 64, 127]
        var x = layer.x
        for t in 0..<layer.tokens { for c in dead { x[t * layer.columns + c] = 0 } }
        layer = Layer(rows: layer.rows, columns: layer.columns, tokens: layer.tokens, w: layer.w, x: x,
                      hessian: TestMatrices.hessian(x, tokens: layer.tokens, columns: layer.columns))
        for c in dead { XCTAssertEqual(layer.hessian[c * layer.columns + c], 0) }
        let quantizer = try GroupQuantizer(format: QuantizationFormat(bits: 3, groupSize: 64))
        for actOrder in [false, true] {
            let result = try GPTQ.quantize(layer.w, rows: layer.rows, columns: layer.columns, hessian: layer.hessian,
                                           quantizer: quantizer, options: GPTQ.Options(actOrder: actOrder))
            XCTAssertEqual(result.deadColumns, dead.count)
            XCTAssertTrue(result.squaredError.isFinite)
            for r in 0..<layer.rows {
                for c in dead {
                    let g = c / 64
                    XCTAssertLessThanOrEqual(abs(result.matrix.weight(row: r, column: c)),
                                             Float(result.matrix.scale(row: r, group: g)) / 2 + 1e-6, "row \(r) column \(c)")
                }
            }
        }
    }

    func testInvalidInputsAreRejected() throws {
        let quantizer = try GroupQuantizer(format: QuantizationFormat(bits: 4, groupSize: 32))
        XCTAssertThrowsError(try GPTQ.quantize([Float](repeating: 0, count: 6), rows: 2, columns: 3, hessian: [Double](repeating: 0, count: 4),
                                               quantizer: quantizer))
        XCTAssertThrowsError(try GPTQ.quantize([Float](repeating: 0, count: 64), rows: 2, columns: 32,
                                               hessian: [Double](repeating: 0, count: 1024), quantizer: quantizer,
                                               options: GPTQ.Options(blockSize: 100)))
        // NaN in the Hessian: the factorisation reports it.
        var h = [Double](repeating: 0, count: 1024)
        for i in 0..<32 { h[i * 32 + i] = 1 }
        h[5 * 32 + 5] = .nan
        XCTAssertThrowsError(try GPTQ.quantize([Float](repeating: 1, count: 64), rows: 2, columns: 32, hessian: h, quantizer: quantizer))
    }

    /// The largest SmolLM2 shape (down_proj, 576 × 1536) takes well under a few seconds.
    func testDownProjSizeIsFast() throws {
        var generator = SeededGenerator(seed: 24)
        let rows = 576, columns = 1536
        let w = TestMatrices.gaussian(rows * columns, &generator).map { $0 * 0.02 }
        // A well-conditioned dense Hessian built cheaply: I + rank-32 term.
        let b = TestMatrices.gaussian(columns * 32, &generator)
        var h = [Double](repeating: 0, count: columns * columns)
        for i in 0..<columns { for j in 0...i {
            var s = 0.0
            for k in 0..<32 { s += Double(b[i * 32 + k]) * Double(b[j * 32 + k]) }
            h[i * columns + j] = s / 32; h[j * columns + i] = s / 32
        } }
        for i in 0..<columns { h[i * columns + i] += 1 }
        let quantizer = try GroupQuantizer(format: QuantizationFormat(bits: 3, groupSize: 64))
        for actOrder in [false, true] {
            let start = ContinuousClock.now
            let result = try GPTQ.quantize(w, rows: rows, columns: columns, hessian: h, quantizer: quantizer,
                                           options: GPTQ.Options(actOrder: actOrder))
            let seconds = (ContinuousClock.now - start) / .seconds(1)
            print("GPTQ w3 g64 \(rows) × \(columns), act-order \(actOrder): \(seconds) s")
            XCTAssertTrue(result.squaredError.isFinite)
            XCTAssertLessThan(seconds, 8)
        }
    }
}
