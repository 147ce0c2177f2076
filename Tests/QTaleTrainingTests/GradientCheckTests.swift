import QTaleCore
import QTaleReference
import QTaleTestSupport
import XCTest

/// Finite-difference checks of every backward op's float64 specification (``ReferenceGradients``).
///
/// For each op `f`, a random scalar loss `L = Σ R ⊙ f(inputs)` is differentiated by central differences,
/// element by element of every differentiable input, and compared with the backward op given `dY = R`.
/// Shapes are small and odd: GQA heads, head dimensions that are not powers of two, partial RoPE,
/// gates with zeros and fractions. The error reported is `max |analytic − numeric| / max |numeric|` per input.
final class GradientCheckTests: XCTestCase {
    typealias G = ReferenceGradients
    typealias Matrix = ReferenceGradients.Matrix

    /// Largest relative error allowed (central differences in float64 reach ~1e-9 here).
    static let tolerance = 1e-6

    func testRMSNormBackward() {
        var random = TestRandom(seed: 1)
        let x = Self.matrix(5, 13, &random, range: -3...3), g = Self.vector(13, &random, range: 0.5...1.5)
        let r = Self.matrix(5, 13, &random)
        let epsilon = 1e-5
        let (dx, dg) = G.rmsNormBackward(x, weight: g, epsilon: epsilon, outputGradient: r)
        check("rms_norm dX", dx, at: x, loss: r) { G.rmsNorm($0, weight: g, epsilon: epsilon) }
        check("rms_norm dG", [dg], at: [g], loss: r) { G.rmsNorm(x, weight: $0[0], epsilon: epsilon) }
    }

    func testLinearBackward() {
        var random = TestRandom(seed: 2)
        let x = Self.matrix(5, 11, &random), w = Self.matrix(7, 11, &random), b = Self.vector(7, &random)
        let r = Self.matrix(5, 7, &random)
        let (dx, dw, db) = G.linearBackward(x, weight: w, outputGradient: r)
        check("linear dX", dx, at: x, loss: r) { G.linear($0, weight: w, bias: b) }
        check("linear dW", dw, at: w, loss: r) { G.linear(x, weight: $0, bias: b) }
        check("linear db", [db], at: [b], loss: r) { G.linear(x, weight: w, bias: $0[0]) }
    }

    /// The frozen quantized linears: the forward multiplies by the dequantized weight (3-bit codes,
    /// K = 45, not a multiple of 32), the backward gives only `dX`.
    func testMatmulBackwardThroughDequantizedWeights() throws {
        var random = TestRandom(seed: 3)
        for bits in [3, 4] {
            var packed = try PackedMatrix(format: QuantizationFormat(bits: bits, groupSize: 32), rows: 9, columns: 45)
            for n in 0..<9 { for k in 0..<45 { packed.setCode(Int(random.next() % UInt64(packed.format.maxCode + 1)), row: n, column: k) } }
            for i in packed.scales.indices {
                packed.scales[i] = Float16(random.uniform(0.05, 0.2))
                packed.offsets[i] = Float16(random.uniform(-1, 0))
            }
            let w = (0..<9).map { n in (0..<45).map { Double(packed.weight(row: n, column: $0)) } }
            let x = Self.matrix(4, 45, &random), r = Self.matrix(4, 9, &random)
            let dx = G.matmulBackward(outputGradient: r, weight: w)
            check("matmul w\(bits) dX", dx, at: x, loss: r) { G.linear($0, weight: w) }
        }
    }

    func testRopeBackward() {
        var random = TestRandom(seed: 4)
        let positions = [0, 5, 17, 1000]
        for (headDim, ropeDims) in [(8, 6), (6, 6)] {
            let x = Self.matrix(4, 3 * headDim, &random), r = Self.matrix(4, 3 * headDim, &random)
            let dx = G.ropeBackward(r, positions: positions, headDim: headDim, ropeDims: ropeDims, base: 10000)
            check("rope head \(headDim) dims \(ropeDims) dX", dx, at: x, loss: r) {
                G.rope($0, positions: positions, headDim: headDim, ropeDims: ropeDims, base: 10000)
            }
        }
    }

    func testSwiGLUAndSiLUBackward() {
        var random = TestRandom(seed: 5)
        let gate = Self.matrix(3, 7, &random, range: -6...6), up = Self.matrix(3, 7, &random), r = Self.matrix(3, 7, &random)
        let (dGate, dUp) = G.swiGLUBackward(gate: gate, up: up, outputGradient: r)
        check("swiglu dGate", dGate, at: gate, loss: r) { G.swiGLU(gate: $0, up: up) }
        check("swiglu dUp", dUp, at: up, loss: r) { G.swiGLU(gate: gate, up: $0) }
        check("silu dX", G.siluBackward(gate, outputGradient: r), at: gate, loss: r) { G.silu($0) }
    }

    func testGatedResidualBackward() {
        var random = TestRandom(seed: 6)
        let block = Self.matrix(5, 9, &random), residual = Self.matrix(5, 9, &random), r = Self.matrix(5, 9, &random)
        let gate = [1, 0, 1, 0.25, 0]
        let (dBlock, dResidual, dGate) = G.gatedResidualBackward(block: block, residual: residual, gate: gate, outputGradient: r)
        check("gated_residual dBlock", dBlock, at: block, loss: r) { G.gatedResidual(block: $0, residual: residual, gate: gate) }
        check("gated_residual dResidual", dResidual, at: residual, loss: r) { G.gatedResidual(block: block, residual: $0, gate: gate) }
        check("gated_residual dw", [dGate], at: [gate], loss: r) { G.gatedResidual(block: block, residual: residual, gate: $0[0]) }
    }

    /// Gated attention with grouped-query heads (4 query heads on 2 key heads), head dimension 3,
    /// hard gates with zeros (always-on position 0) and, in a second case, fractional gates and
    /// queries that are the last rows of a longer key sequence.
    func testGatedAttentionBackward() {
        var random = TestRandom(seed: 7)
        let cases: [(queries: [Int], keys: Int, gate: [Double], heads: Int, kvHeads: Int, headDim: Int)] = [
            ([0, 1, 2, 3, 4, 5], 6, [1, 1, 0, 1, 0, 0], 4, 2, 3),
            ([3, 4, 6], 7, [1, 0.5, 0, 1, 0.75, 0, 1], 3, 1, 5),
        ]
        for c in cases {
            let shape = G.AttentionShape(heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim)
            let q = Self.matrix(c.queries.count, c.heads * c.headDim, &random, range: -2...2)
            let k = Self.matrix(c.keys, c.kvHeads * c.headDim, &random, range: -2...2)
            let v = Self.matrix(c.keys, c.kvHeads * c.headDim, &random)
            let r = Self.matrix(c.queries.count, c.heads * c.headDim, &random)
            func forward(_ q: Matrix, _ k: Matrix, _ v: Matrix, _ w: [Double]) -> Matrix {
                G.gatedAttention(query: q, keys: k, values: v, keyGate: w, queryPositions: c.queries, shape: shape).output
            }
            let grads = G.gatedAttentionBackward(query: q, keys: k, values: v, keyGate: c.gate, queryPositions: c.queries,
                                                 shape: shape, outputGradient: r)
            let name = "gated_attention \(c.heads)/\(c.kvHeads)×\(c.headDim)"
            check("\(name) dQ", grads.query, at: q, loss: r) { forward($0, k, v, c.gate) }
            check("\(name) dK", grads.keys, at: k, loss: r) { forward(q, $0, v, c.gate) }
            check("\(name) dV", grads.values, at: v, loss: r) { forward(q, k, $0, c.gate) }
            check("\(name) dw", [grads.keyGate], at: [c.gate], loss: r) { forward(q, k, v, $0[0]) }
            // Gated-off keys get no key or value gradient, but a gate gradient (the straight-through signal).
            for (s, w) in c.gate.enumerated() where w == 0 {
                XCTAssertEqual(grads.keys[s].map(abs).max(), 0, "\(name): key \(s) is gated off")
                XCTAssertEqual(grads.values[s].map(abs).max(), 0, "\(name): value \(s) is gated off")
                if s <= c.queries.max()! { XCTAssertNotEqual(grads.keyGate[s], 0, "\(name): gate \(s)") }
            }
        }
    }

    /// For 0/1 gates the gated attention equals masking keys out before the softmax: the same as plain
    /// attention over the executed keys only.
    func testHardGatesEqualMaskingBeforeSoftmax() {
        var random = TestRandom(seed: 8)
        let shape = G.AttentionShape(heads: 2, kvHeads: 1, headDim: 4)
        let gate: [Double] = [1, 0, 1, 1, 0]
        let q = Self.matrix(5, 8, &random), k = Self.matrix(5, 4, &random), v = Self.matrix(5, 4, &random)
        let gated = G.gatedAttention(query: q, keys: k, values: v, keyGate: gate, queryPositions: Array(0..<5), shape: shape)
        let kept = gate.indices.filter { gate[$0] == 1 }
        for t in 0..<5 {
            for h in 0..<2 {
                let visible = kept.filter { $0 <= t }
                let scores = visible.map { s in (0..<4).reduce(0.0) { $0 + q[t][h * 4 + $1] * k[s][$1] } / 2 }
                let weights = scores.map { exp($0 - scores.max()!) }
                for d in 0..<4 {
                    let expected = zip(weights, visible).reduce(0.0) { $0 + $1.0 * v[$1.1][d] } / weights.reduce(0, +)
                    XCTAssertEqual(gated.output[t][h * 4 + d], expected, accuracy: 1e-12)
                }
                let lambda = log(zip(scores, visible).reduce(0.0) { $0 + exp($1.0) })
                XCTAssertEqual(gated.logNormalizers[t][h], lambda, accuracy: 1e-12)
            }
        }
        // A query that sees only gated-off keys outputs zeros and stores +∞.
        let alone = G.gatedAttention(query: [q[0]], keys: k, values: v, keyGate: [0, 1, 1, 1, 1], queryPositions: [0], shape: shape)
        XCTAssertEqual(alone.output[0], Array(repeating: 0, count: 8))
        XCTAssertEqual(alone.logNormalizers[0], [.infinity, .infinity])
    }

    // MARK: Finite differences

    /// Checks `analytic` against central differences of `Σ r ⊙ f(x)` over every element of `x`.
    private func check(_ name: String, _ analytic: Matrix, at x: Matrix, loss r: Matrix,
                       file: StaticString = #filePath, line: UInt = #line, _ f: (Matrix) -> Matrix) {
        let h = 1e-5
        func loss(_ x: Matrix) -> Double {
            zip(f(x), r).reduce(0.0) { total, rows in total + zip(rows.0, rows.1).reduce(0.0) { $0 + $1.0 * $1.1 } }
        }
        var numeric = x
        for i in x.indices {
            for j in x[i].indices {
                var plus = x, minus = x
                plus[i][j] += h
                minus[i][j] -= h
                numeric[i][j] = (loss(plus) - loss(minus)) / (2 * h)
            }
        }
        let scale = numeric.joined().map(abs).max() ?? 0
        let error = zip(analytic.joined(), numeric.joined()).map { abs($0 - $1) }.max() ?? 0
        let relative = error / max(scale, 1e-300)
        print(String(format: "finite differences %@: max relative error %.2e (gradient scale %.2e)", name, relative, scale))
        XCTAssertGreaterThan(scale, 1e-3, "\(name): degenerate check, the gradient is ~0", file: file, line: line)
        XCTAssertLessThan(relative, Self.tolerance, "\(name)", file: file, line: line)
    }

    static func matrix(_ rows: Int, _ columns: Int, _ random: inout TestRandom, range: ClosedRange<Float> = -1...1) -> Matrix {
        (0..<rows).map { _ in vector(columns, &random, range: range) }
    }

    static func vector(_ count: Int, _ random: inout TestRandom, range: ClosedRange<Float> = -1...1) -> [Double] {
        (0..<count).map { _ in Double(random.uniform(range.lowerBound, range.upperBound)) }
    }
}
