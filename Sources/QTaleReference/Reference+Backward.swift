import QTaleCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The specification of every ``TrainingOp``: pure float64 functions on row-major matrices, written for
/// clarity. The reference engine's ``TrainingEngine`` conformance wraps them (read the views as float64,
/// call, round the results once to float32); the gradient tests call them directly, so finite
/// differences run in float64 with nothing rounded to float32.
///
/// Each backward sits next to the forward it differentiates. Forwards of ``Op``s (`rmsNorm`, `linear`,
/// `rope`, `swiGLU`, `silu`) are float64 restatements of the reference engine's own, which the tests
/// compare with the engine; the training forwards (`gatedResidual`, `gatedAttention`) are the ops' only definition.
/// Backwards return gradients; accumulating into existing values is the engine wrapper's business.
public enum ReferenceGradients {
    public typealias Matrix = [[Double]]

    static func zeros(_ rows: Int, _ columns: Int) -> Matrix {
        Array(repeating: Array(repeating: 0, count: columns), count: rows)
    }

    static func dot(_ a: ArraySlice<Double>, _ b: ArraySlice<Double>) -> Double {
        zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
    }

    static func sigmoid(_ x: Double) -> Double { 1 / (1 + _exp(-x)) }

    // MARK: RMSNorm

    /// `y[t] = x[t] · r_t · g`, `r_t = 1/sqrt(mean(x[t]²) + ε)`.
    public static func rmsNorm(_ x: Matrix, weight g: [Double], epsilon: Double) -> Matrix {
        x.map { row in
            let r = 1 / (row.reduce(0) { $0 + $1 * $1 } / Double(row.count) + epsilon).squareRoot()
            return row.indices.map { row[$0] * r * g[$0] }
        }
    }

    /// `dX[t][c] = r·g[c]·dY[t][c] − x[t][c]·r³/C·Σ_j g[j]·dY[t][j]·x[t][j]`; `dG[c] = Σ_t dY[t][c]·x[t][c]·r_t`.
    public static func rmsNormBackward(_ x: Matrix, weight g: [Double], epsilon: Double,
                                       outputGradient dy: Matrix) -> (input: Matrix, weight: [Double]) {
        var dx = x, dg = [Double](repeating: 0, count: g.count)
        for t in x.indices {
            let columns = Double(x[t].count)
            let r = 1 / (x[t].reduce(0) { $0 + $1 * $1 } / columns + epsilon).squareRoot()
            let projection = x[t].indices.reduce(0.0) { $0 + g[$1] * dy[t][$1] * x[t][$1] }
            for c in x[t].indices {
                dx[t][c] = r * g[c] * dy[t][c] - x[t][c] * r * r * r / columns * projection
                dg[c] += dy[t][c] * x[t][c] * r
            }
        }
        return (dx, dg)
    }

    // MARK: Linear layers (dense, and quantized ones given their dequantized weights)

    /// `y[t][n] = Σ_k x[t][k]·w[n][k] + bias[n]`: ``Op/linear(input:weight:bias:output:)``, and
    /// ``Op/matmul(input:weight:output:)`` with `w` the dequantized weight.
    public static func linear(_ x: Matrix, weight w: Matrix, bias: [Double]? = nil) -> Matrix {
        x.map { row in w.indices.map { n in dot(row[...], w[n][...]) + (bias?[n] ?? 0) } }
    }

    /// `dX = dY·W`, `dW = dYᵀ·X`, `db = Σ_t dY[t]`. ``TrainingOp/matmulBackward(outputGradient:weight:inputGradient:accumulate:)``
    /// is the `dX` part with `W` the dequantized weight.
    public static func linearBackward(_ x: Matrix, weight w: Matrix,
                                      outputGradient dy: Matrix) -> (input: Matrix, weight: Matrix, bias: [Double]) {
        let columns = w.first?.count ?? 0
        var dx = zeros(x.count, columns), dw = zeros(w.count, columns)
        var db = [Double](repeating: 0, count: w.count)
        for t in dy.indices {
            for n in w.indices {
                db[n] += dy[t][n]
                for k in 0..<columns {
                    dx[t][k] += dy[t][n] * w[n][k]
                    dw[n][k] += dy[t][n] * x[t][k]
                }
            }
        }
        return (dx, dw, db)
    }

    /// `dX = dY·W`: the backward of ``Op/matmul(input:weight:output:)`` with `w` the dequantized weight
    /// (frozen: no weight gradient).
    public static func matmulBackward(outputGradient dy: Matrix, weight w: Matrix) -> Matrix {
        let columns = w.first?.count ?? 0
        return dy.map { row in (0..<columns).map { k in w.indices.reduce(0.0) { $0 + row[$1] * w[$1][k] } } }
    }

    // MARK: RoPE

    /// Rotates pairs `(2i, 2i+1)` of each head by `position · base^(−2i/ropeDims)`, as ``Op/rope(data:positions:headDim:ropeDims:base:)``;
    /// `direction = −1` rotates by the negated angle, the backward.
    public static func rope(_ x: Matrix, positions: [Int], headDim: Int, ropeDims: Int, base: Double,
                            direction: Double = 1) -> Matrix {
        var y = x
        for t in x.indices {
            for head in stride(from: 0, to: x[t].count, by: headDim) {
                for i in stride(from: 0, to: ropeDims, by: 2) {
                    let angle = direction * Double(positions[t]) * pow(base, -Double(i) / Double(ropeDims))
                    let c = head + i
                    y[t][c] = x[t][c] * cos(angle) - x[t][c + 1] * sin(angle)
                    y[t][c + 1] = x[t][c] * sin(angle) + x[t][c + 1] * cos(angle)
                }
            }
        }
        return y
    }

    /// The transposed rotation: the rotation by the negated angle.
    public static func ropeBackward(_ dy: Matrix, positions: [Int], headDim: Int, ropeDims: Int, base: Double) -> Matrix {
        rope(dy, positions: positions, headDim: headDim, ropeDims: ropeDims, base: base, direction: -1)
    }

    // MARK: Elementwise

    public static func silu(_ x: Matrix) -> Matrix { x.map { $0.map { $0 * sigmoid($0) } } }

    /// `silu′(x) = σ(x)·(1 + x·(1 − σ(x)))`.
    static func siluDerivative(_ x: Double) -> Double {
        let s = sigmoid(x)
        return s * (1 + x * (1 - s))
    }

    public static func siluBackward(_ x: Matrix, outputGradient dy: Matrix) -> Matrix {
        x.indices.map { t in x[t].indices.map { c in dy[t][c] * siluDerivative(x[t][c]) } }
    }

    public static func swiGLU(gate: Matrix, up: Matrix) -> Matrix {
        gate.indices.map { t in gate[t].indices.map { c in gate[t][c] * sigmoid(gate[t][c]) * up[t][c] } }
    }

    public static func swiGLUBackward(gate: Matrix, up: Matrix, outputGradient dy: Matrix) -> (gate: Matrix, up: Matrix) {
        let dGate = gate.indices.map { t in gate[t].indices.map { c in dy[t][c] * up[t][c] * siluDerivative(gate[t][c]) } }
        let dUp = gate.indices.map { t in gate[t].indices.map { c in dy[t][c] * gate[t][c] * sigmoid(gate[t][c]) } }
        return (dGate, dUp)
    }

    // MARK: Routed block output

    /// `y[t] = w[t]·block[t] + (1 − w[t])·residual[t]`.
    public static func gatedResidual(block: Matrix, residual: Matrix, gate w: [Double]) -> Matrix {
        block.indices.map { t in block[t].indices.map { c in w[t] * block[t][c] + (1 - w[t]) * residual[t][c] } }
    }

    public static func gatedResidualBackward(block: Matrix, residual: Matrix, gate w: [Double],
                                             outputGradient dy: Matrix) -> (block: Matrix, residual: Matrix, gate: [Double]) {
        let dBlock = dy.indices.map { t in dy[t].map { w[t] * $0 } }
        let dResidual = dy.indices.map { t in dy[t].map { (1 - w[t]) * $0 } }
        let dGate = dy.indices.map { t in dy[t].indices.reduce(0.0) { $0 + dy[t][$1] * (block[t][$1] - residual[t][$1]) } }
        return (dBlock, dResidual, dGate)
    }

    // MARK: Gated attention

    /// The shapes of a gated attention: `T` queries of `heads` heads over `S` keys of `kvHeads` heads.
    public struct AttentionShape: Sendable {
        public var heads: Int, kvHeads: Int, headDim: Int
        public init(heads: Int, kvHeads: Int, headDim: Int) {
            self.heads = heads
            self.kvHeads = kvHeads
            self.headDim = headDim
        }
        /// First column of the key/value head that query head `h` reads.
        func kvColumn(_ h: Int) -> Int { (h / (heads / kvHeads)) * headDim }
        var scale: Double { 1 / Double(headDim).squareRoot() }
    }

    /// Scores `a[s] = q·k[s]/sqrt(d)` of query row `t`, head `h`, over the keys visible to it (`s <= position`).
    static func visibleScores(_ q: Matrix, _ k: Matrix, t: Int, h: Int, position: Int, _ shape: AttentionShape) -> [(s: Int, a: Double)] {
        let qh = h * shape.headDim, kh = shape.kvColumn(h), d = shape.headDim
        return (0..<k.count).filter { $0 <= position }.map { s in
            (s, dot(q[t][qh ..< qh + d], k[s][kh ..< kh + d]) * shape.scale)
        }
    }

    /// `λ = log Σ_s w[s]·exp(a[s])` over visible keys with `w[s] ≠ 0`, or `+∞` when there are none.
    /// The maximum taken out for stability is over those keys.
    static func logNormalizer(_ scores: [(s: Int, a: Double)], gate w: [Double]) -> Double {
        let gated = scores.filter { w[$0.s] != 0 }
        guard let m = gated.map(\.a).max() else { return .infinity }
        let total = gated.reduce(0.0) { $0 + w[$1.s] * _exp($1.a - m) }
        return total > 0 ? m + log(total) : .infinity
    }

    /// `output = Σ_s P̃[s]·v[s]` with `P̃[s] = w[s]·exp(a[s] − λ)`; also returns `λ` per row and head (`[T × heads]`).
    public static func gatedAttention(query q: Matrix, keys k: Matrix, values v: Matrix, keyGate w: [Double],
                                      queryPositions: [Int], shape: AttentionShape) -> (output: Matrix, logNormalizers: Matrix) {
        let d = shape.headDim
        var output = zeros(q.count, shape.heads * d), lambdas = zeros(q.count, shape.heads)
        for t in q.indices {
            for h in 0..<shape.heads {
                let scores = visibleScores(q, k, t: t, h: h, position: queryPositions[t], shape)
                let lambda = logNormalizer(scores, gate: w)
                lambdas[t][h] = lambda
                guard lambda.isFinite else { continue }
                let kh = shape.kvColumn(h)
                for (s, a) in scores {
                    let probability = w[s] * _exp(a - lambda)
                    for i in 0..<d { output[t][h * d + i] += probability * v[s][kh + i] }
                }
            }
        }
        return (output, lambdas)
    }

    /// Gradients of ``gatedAttention(query:keys:values:keyGate:queryPositions:shape:)`` with respect to
    /// the queries, keys, values and key gates, recomputed from the inputs (the saved `λ` and output are
    /// an optimisation engines may use). See ``TrainingOp/gatedAttentionBackward(query:keys:values:keyGate:queryPositions:heads:kvHeads:headDim:output:logNormalizers:outputGradient:queryGradient:keyGradient:valueGradient:keyGateGradient:)``.
    public static func gatedAttentionBackward(query q: Matrix, keys k: Matrix, values v: Matrix, keyGate w: [Double],
                                              queryPositions: [Int], shape: AttentionShape, outputGradient dO: Matrix)
        -> (query: Matrix, keys: Matrix, values: Matrix, keyGate: [Double]) {
        let d = shape.headDim
        var dq = zeros(q.count, q.first?.count ?? 0), dk = zeros(k.count, k.first?.count ?? 0), dv = dk
        var dw = [Double](repeating: 0, count: k.count)
        for t in q.indices {
            for h in 0..<shape.heads {
                let scores = visibleScores(q, k, t: t, h: h, position: queryPositions[t], shape)
                let lambda = logNormalizer(scores, gate: w)
                guard lambda.isFinite else { continue }
                let qh = h * d, kh = shape.kvColumn(h)
                let dOut = dO[t][qh ..< qh + d]
                // p[s] = exp(a − λ), g[s] = dO·v[s], D = Σ_s w[s]·p[s]·g[s] (= dO·output).
                let p = scores.map { _exp($0.a - lambda) }
                let g = scores.map { dot(dOut, v[$0.s][kh ..< kh + d]) }
                let D = scores.indices.reduce(0.0) { $0 + w[scores[$1].s] * p[$1] * g[$1] }
                for (j, (s, _)) in scores.enumerated() {
                    dw[s] += p[j] * (g[j] - D)
                    let dScore = w[s] * p[j] * (g[j] - D) * shape.scale
                    for i in 0..<d {
                        dq[t][qh + i] += dScore * k[s][kh + i]
                        dk[s][kh + i] += dScore * q[t][qh + i]
                        dv[s][kh + i] += w[s] * p[j] * dO[t][qh + i]
                    }
                }
            }
        }
        return (dq, dk, dv, dw)
    }
}

extension ReferenceEngine: TrainingEngine {
    public func encode(_ op: TrainingOp) throws {
        typealias G = ReferenceGradients
        switch op {
        case let .fill(view, value):
            for r in 0..<view.rows { for c in 0..<view.columns { set(view, r, c, Double(value)) } }

        case let .gatedResidual(block, residual, gate, output):
            store(G.gatedResidual(block: matrix(block), residual: matrix(residual), gate: vector(gate)), in: output)

        case let .gatedAttention(query, keys, values, keyGate, queryPositions, heads, kvHeads, headDim, output, logNormalizers):
            let (o, lambdas) = G.gatedAttention(query: matrix(query), keys: matrix(keys), values: matrix(values),
                                                keyGate: vector(keyGate), queryPositions: integers(queryPositions),
                                                shape: .init(heads: heads, kvHeads: kvHeads, headDim: headDim))
            store(o, in: output)
            store(lambdas, in: logNormalizers)

        case let .rmsNormBackward(input, weight, epsilon, outputGradient, inputGradient, accumulate, weightGradient):
            let (dx, dg) = G.rmsNormBackward(matrix(input), weight: vector(weight), epsilon: Double(epsilon),
                                             outputGradient: matrix(outputGradient))
            store(dx, in: inputGradient, accumulate: accumulate)
            if let weightGradient { store([dg], in: weightGradient, accumulate: true) }

        case let .matmulBackward(outputGradient, weight, inputGradient, accumulate):
            let host = HostQuantizedMatrix(weight, in: store)
            let w = (0..<weight.rows).map { n in (0..<weight.columns).map { Double(host.weight(row: n, column: $0)) } }
            store(G.matmulBackward(outputGradient: matrix(outputGradient), weight: w), in: inputGradient, accumulate: accumulate)

        case let .linearBackward(input, weight, outputGradient, inputGradient, accumulate, weightGradient, biasGradient):
            let (dx, dw, db) = G.linearBackward(matrix(input), weight: matrix(weight), outputGradient: matrix(outputGradient))
            if let inputGradient { store(dx, in: inputGradient, accumulate: accumulate) }
            if let weightGradient { store(dw, in: weightGradient, accumulate: true) }
            if let biasGradient { store([db], in: biasGradient, accumulate: true) }

        case let .ropeBackward(gradient, positions, headDim, ropeDims, base):
            store(G.ropeBackward(matrix(gradient), positions: integers(positions), headDim: headDim, ropeDims: ropeDims,
                                 base: Double(base)), in: gradient)

        case let .gatedAttentionBackward(query, keys, values, keyGate, queryPositions, heads, kvHeads, headDim, _, _,
                                         outputGradient, queryGradient, keyGradient, valueGradient, keyGateGradient):
            let (dq, dk, dv, dw) = G.gatedAttentionBackward(
                query: matrix(query), keys: matrix(keys), values: matrix(values), keyGate: vector(keyGate),
                queryPositions: integers(queryPositions), shape: .init(heads: heads, kvHeads: kvHeads, headDim: headDim),
                outputGradient: matrix(outputGradient))
            store(dq, in: queryGradient)
            store(dk, in: keyGradient)
            store(dv, in: valueGradient)
            store([dw], in: keyGateGradient, accumulate: true)

        case let .swiGLUBackward(gate, up, outputGradient, gateGradient, upGradient):
            let (dg, du) = G.swiGLUBackward(gate: matrix(gate), up: matrix(up), outputGradient: matrix(outputGradient))
            store(dg, in: gateGradient)
            store(du, in: upGradient)

        case let .siluBackward(input, outputGradient, inputGradient):
            store(G.siluBackward(matrix(input), outputGradient: matrix(outputGradient)), in: inputGradient)

        case let .gatedResidualBackward(block, residual, gate, outputGradient, blockGradient, residualGradient, gateGradient):
            let (db, dr, dw) = G.gatedResidualBackward(block: matrix(block), residual: matrix(residual), gate: vector(gate),
                                                       outputGradient: matrix(outputGradient))
            store(db, in: blockGradient)
            store(dr, in: residualGradient)
            store([dw], in: gateGradient, accumulate: true)
        }
    }

    /// A `[1 × n]` view as a vector.
    func vector(_ view: TensorView) -> [Double] { matrix(view)[0] }

    /// An int32 `[1 × n]` view.
    func integers(_ view: TensorView) -> [Int] { (0..<view.columns).map { int(view, $0) } }

    /// Writes `values` into `view` rounded to float32, or adds them to its contents (rounding once).
    func store(_ values: ReferenceGradients.Matrix, in view: TensorView, accumulate: Bool = false) {
        for r in 0..<view.rows {
            for c in 0..<view.columns { set(view, r, c, values[r][c] + (accumulate ? get(view, r, c) : 0)) }
        }
    }
}
