import QTaleCore
import QTaleReference
import QTaleTestSupport
@testable import QTaleConformance

/// One recorded item of a training case: an ``Op`` or a ``TrainingOp``.
enum TrainingStep {
    case op(Op)
    case training(TrainingOp)
}

/// A training op (or a short stream that ends in one) with seeded inputs, built identically on two
/// engines and compared output by output, in the style of the conformance catalog. Inputs and guarded
/// outputs come from QTaleConformance's ``CaseBuilder``; outputs that start with values (accumulated
/// gradients, in-place operands) start with the same values on both engines.
struct TrainingCase: CustomStringConvertible {
    let name: String
    let maxNMSE: Double
    let build: (inout CaseBuilder) throws -> [TrainingStep]

    var description: String { name }
}

/// The outcome of one case: the worst per-output NMSE and any failures.
struct TrainingCaseResult {
    let nmse: Double
    let failures: [String]
}

enum TrainingCaseRunner {
    /// Runs `testCase` on the reference and on `engine` and compares every output.
    static func run(_ testCase: TrainingCase, on engine: any TrainingEngine, seed: UInt64 = 7) throws -> TrainingCaseResult {
        let expected = try outputs(of: testCase, on: ReferenceEngine(), seed: seed)
        let actual = try outputs(of: testCase, on: engine, seed: seed)
        var failures: [String] = []
        var worst = 0.0
        let g = CaseBuilder.guardFloats, sentinel = CaseBuilder.sentinel.bitPattern
        for (index, (want, got)) in zip(expected, actual).enumerated() {
            if (0..<g).contains(where: { got[$0].bitPattern != sentinel })
                || (got.count - g ..< got.count).contains(where: { got[$0].bitPattern != sentinel }) {
                failures.append("output \(index) wrote outside its view")
            }
            var squaredError = 0.0, squaredReference = 0.0
            for i in g ..< got.count - g {
                if want[i].bitPattern == sentinel {
                    if got[i].bitPattern != sentinel { failures.append("output \(index) wrote into a row gap at \(i - g)") }
                    continue
                }
                let (a, b) = (Double(got[i]), Double(want[i]))
                if a.isNaN || b.isNaN {
                    failures.append("output \(index): NaN at \(i - g) (reference \(b), engine \(a))")
                    break
                }
                if a.isInfinite || b.isInfinite {
                    if a != b { failures.append("output \(index): Inf mismatch at \(i - g): reference \(b), engine \(a)") }
                    continue
                }
                squaredError += (a - b) * (a - b)
                squaredReference += b * b
            }
            let nmse = squaredReference > 0 ? squaredError / squaredReference : squaredError
            if nmse > testCase.maxNMSE { failures.append("output \(index): NMSE \(nmse) > \(testCase.maxNMSE)") }
            worst = max(worst, nmse)
        }
        return TrainingCaseResult(nmse: worst, failures: Array(failures.prefix(4)))
    }

    /// Builds the case on `engine`, runs its steps (recorded together, one synchronisation) and returns
    /// each output buffer whole, guards included.
    static func outputs(of testCase: TrainingCase, on engine: any TrainingEngine, seed: UInt64) throws -> [[Float]] {
        var builder = CaseBuilder(engine: engine, seed: seed)
        for step in try testCase.build(&builder) {
            switch step {
            case let .op(op): try engine.run(op)
            case let .training(op): try engine.run(op)
            }
        }
        try engine.synchronize()
        return try builder.outputs.map { out in
            var values = [Float](repeating: 0, count: out.totalFloats)
            try values.withUnsafeMutableBytes { try engine.read(out.view.buffer, byteOffset: 0, into: $0) }
            return values
        }
    }
}

extension CaseBuilder {
    /// A float32 input `[rows × columns]` holding `values`.
    mutating func values(_ rows: Int, _ columns: Int, _ values: [Float]) throws -> TensorView {
        precondition(values.count == rows * columns)
        let buffer = try engine.makeBuffer(values)
        buffers.append(buffer)
        return TensorView(buffer: buffer.handle, type: .float32, rows: rows, columns: columns, rowStride: columns, byteOffset: 0)
    }

    /// Router decisions `[1 × count]`: the first two positions always execute, the rest are 0 or 1
    /// at random, and a fraction (`fractions`) take a value in between.
    mutating func gate(_ count: Int, fractions: Bool = false) throws -> TensorView {
        let decisions: [Float] = (0..<count).map { s in
            if s < 2 { return 1 }
            let u = random.uniform(0, 1)
            if fractions && u < 0.2 { return random.uniform(0.1, 0.9) }
            return u < 0.6 ? 1 : 0
        }
        return try values(1, count, decisions)
    }
}

/// The catalog of training cases: every training op at model shapes (SmolLM2: d_model 576, 9 heads on
/// 3 key heads of 64, FFN 1536; router hidden 512) and awkward ones (K not a multiple of 32, odd sizes,
/// 3/4/8-bit weights, in-place and accumulating forms, rows that see no gated key).
enum TrainingCatalog {
    static var all: [TrainingCase] {
        fill + gatedResidual + gatedAttention + rmsNormBackward + matmulBackward + linearBackward + ropeBackward
            + swiGLUBackward + siluBackward + gatedResidualBackward
    }

    static var fill: [TrainingCase] {
        [TrainingCase(name: "fill(5×33)", maxNMSE: 0) { b in
            [.training(.fill(try b.output(5, 33, initialRange: -1...1), value: 0.5))]
        }]
    }

    static var gatedResidual: [TrainingCase] {
        [(7, 77, false), (3, 576, true)].map { rows, columns, inPlace in
            TrainingCase(name: "gated_residual(\(rows)×\(columns)\(inPlace ? ", in place" : ""))", maxNMSE: 1e-13) { b in
                let block = try b.input(rows, columns), gate = try b.gate(rows, fractions: true)
                let residual = inPlace ? try b.output(rows, columns, initialRange: -1...1) : try b.input(rows, columns)
                let output = inPlace ? residual : try b.output(rows, columns)
                return [.training(.gatedResidual(block: block, residual: residual, gate: gate, output: output))]
            }
        }
    }

    /// (query positions, keys, heads, key heads, head dimension, gate values or nil for random 0/1 gates)
    static let attentionShapes: [(positions: [Int32], keys: Int, heads: Int, kvHeads: Int, headDim: Int, gate: [Float]?)] = [
        (Array(0..<7), 7, 4, 2, 64, [1, 1, 0, 1, 0, 0, 1]),
        ([6, 7, 8], 9, 3, 1, 16, nil),
        ([0, 2], 3, 2, 2, 8, [0, 1, 1]),          // query 0 sees only a gated-off key: zeros, λ = +∞
        (Array(0..<64), 64, 9, 3, 64, nil),       // the model's heads, several slices
        (Array(0..<33), 33, 2, 1, 24, nil),
    ]

    /// The forward, and forward then backward in one recorded stream (the backward reads what the
    /// forward wrote, so the engine must order them).
    static var gatedAttention: [TrainingCase] {
        attentionShapes.flatMap { shape -> [TrainingCase] in
            let (queries, keyCount) = (shape.positions.count, shape.keys)
            let label = "T=\(queries) S=\(keyCount) heads \(shape.heads)/\(shape.kvHeads) dim \(shape.headDim)"
            func forward(_ b: inout CaseBuilder) throws -> (TrainingOp, [TensorView]) {
                let q = try b.input(queries, shape.heads * shape.headDim, range: -2...2)
                let k = try b.input(keyCount, shape.kvHeads * shape.headDim, range: -2...2)
                let v = try b.input(keyCount, shape.kvHeads * shape.headDim)
                let gate = try shape.gate.map { try b.values(1, keyCount, $0) } ?? b.gate(keyCount)
                let positions = try b.integers(shape.positions)
                let output = try b.output(queries, shape.heads * shape.headDim)
                let lambdas = try b.output(queries, shape.heads)
                let op = TrainingOp.gatedAttention(query: q, keys: k, values: v, keyGate: gate, queryPositions: positions,
                                                   heads: shape.heads, kvHeads: shape.kvHeads, headDim: shape.headDim,
                                                   output: output, logNormalizers: lambdas)
                return (op, [q, k, v, gate, positions, output, lambdas])
            }
            return [
                TrainingCase(name: "gated_attention(\(label))", maxNMSE: 1e-10) { b in [.training(try forward(&b).0)] },
                TrainingCase(name: "gated_attention_backward(\(label))", maxNMSE: 1e-9) { b in
                    let (op, views) = try forward(&b)
                    let dO = try b.input(queries, shape.heads * shape.headDim)
                    // Gradients start with values: dQ, dK, dV must be overwritten, dw accumulated.
                    let dq = try b.output(queries, shape.heads * shape.headDim, initialRange: -1...1)
                    let dk = try b.output(keyCount, shape.kvHeads * shape.headDim, initialRange: -1...1)
                    let dv = try b.output(keyCount, shape.kvHeads * shape.headDim, initialRange: -1...1)
                    let dw = try b.output(1, keyCount, initialRange: -1...1)
                    let backward = TrainingOp.gatedAttentionBackward(
                        query: views[0], keys: views[1], values: views[2], keyGate: views[3], queryPositions: views[4],
                        heads: shape.heads, kvHeads: shape.kvHeads, headDim: shape.headDim, output: views[5],
                        logNormalizers: views[6], outputGradient: dO, queryGradient: dq, keyGradient: dk,
                        valueGradient: dv, keyGateGradient: dw)
                    return [.training(op), .training(backward)]
                },
            ]
        }
    }

    static var rmsNormBackward: [TrainingCase] {
        [(7, 77, true, true), (33, 576, false, false), (1, 1536, true, false), (64, 576, true, true)].map { rows, columns, dG, accumulate in
            TrainingCase(name: "rms_norm_backward(\(rows)×\(columns)\(dG ? ", dG" : "")\(accumulate ? ", accumulate" : ""))",
                         maxNMSE: 1e-10) { b in
                let x = try b.input(rows, columns, range: -10...10), g = try b.input(1, columns, range: 0.5...1.5)
                let dy = try b.input(rows, columns)
                let dx = try b.output(rows, columns, initialRange: -1...1)
                let dg = dG ? try b.output(1, columns, initialRange: -1...1) : nil
                return [.training(.rmsNormBackward(input: x, weight: g, epsilon: 1e-5, outputGradient: dy, inputGradient: dx,
                                                   accumulate: accumulate, weightGradient: dg))]
            }
        }
    }

    static var matmulBackward: [TrainingCase] {
        let shapes = [(7, 200, 37), (40, 576, 192), (33, 80, 9), (64, 1536, 65), (1, 64, 5)]
        return [3, 4, 8].flatMap { bits in
            [32, 128].flatMap { group in
                shapes.enumerated().map { index, shape in
                    let (m, k, n) = shape
                    let accumulate = index % 2 == 1
                    return TrainingCase(name: "matmul_backward(w\(bits)g\(group), M=\(m) K=\(k) N=\(n)\(accumulate ? ", accumulate" : ""))",
                                        maxNMSE: 1e-10) { b in
                        let w = try b.quantized(bits: bits, groupSize: group, rows: n, columns: k)
                        let dy = try b.input(m, n)
                        let dx = try b.output(m, k, initialRange: -1...1)
                        return [.training(.matmulBackward(outputGradient: dy, weight: w, inputGradient: dx, accumulate: accumulate))]
                    }
                }
            }
        } + [
            // The forward Op and its backward in one stream: the backward reads the forward's output.
            TrainingCase(name: "matmul then matmul_backward(w4g32, M=24 K=96 N=40)", maxNMSE: 1e-10) { b in
                let w = try b.quantized(bits: 4, groupSize: 32, rows: 40, columns: 96)
                let x = try b.input(24, 96)
                let y = try b.output(24, 40)
                let dx = try b.output(24, 96)
                return [.op(.matmul(input: x, weight: w, output: y)),
                        .training(.matmulBackward(outputGradient: y, weight: w, inputGradient: dx, accumulate: false))]
            },
        ]
    }

    static var linearBackward: [TrainingCase] {
        // (T, K, N, dX, dW, db, accumulate)
        let shapes = [(7, 33, 2, true, true, true, false), (40, 576, 512, true, true, true, true),
                      (5, 8, 576, true, true, false, true), (64, 576, 8, true, true, false, false),
                      (9, 100, 37, true, false, false, false), (9, 100, 37, false, true, true, false),
                      (130, 512, 2, true, true, true, false)]
        return shapes.map { t, k, n, dX, dW, db, accumulate in
            let parts = [dX ? (accumulate ? "dX+" : "dX") : nil, dW ? "dW" : nil, db ? "db" : nil].compactMap { $0 }
            return TrainingCase(name: "linear_backward(T=\(t) K=\(k) N=\(n), \(parts.joined(separator: " ")))", maxNMSE: 1e-10) { b in
                let x = try b.input(t, k), w = try b.input(n, k), dy = try b.input(t, n)
                let dx = dX ? try b.output(t, k, initialRange: -1...1) : nil
                let dw = dW ? try b.output(n, k, initialRange: -1...1) : nil
                let dBias = db ? try b.output(1, n, initialRange: -1...1) : nil
                return [.training(.linearBackward(input: x, weight: w, outputGradient: dy, inputGradient: dx, accumulate: accumulate,
                                                  weightGradient: dw, biasGradient: dBias))]
            }
        }
    }

    static var ropeBackward: [TrainingCase] {
        [(4, 9, 64, 64, 100000 as Float, [0, 3, 100, 5000] as [Int32]), (6, 2, 16, 8, 10000, [0, 1, 2, 3, 4, 5])].map {
            rows, heads, headDim, dims, base, positions in
            TrainingCase(name: "rope_backward(\(rows)×\(heads)·\(headDim), dims \(dims))", maxNMSE: 1e-10) { b in
                [.training(.ropeBackward(gradient: try b.output(rows, heads * headDim, initialRange: -1...1),
                                         positions: try b.integers(positions), headDim: headDim, ropeDims: dims, base: base))]
            }
        }
    }

    static var swiGLUBackward: [TrainingCase] {
        [(7, 77, false), (5, 1536, true)].map { rows, columns, inPlace in
            TrainingCase(name: "swiglu_backward(\(rows)×\(columns)\(inPlace ? ", in place" : ""))", maxNMSE: 1e-12) { b in
                let gate = try b.output(rows, columns, initialRange: -8...8), up = try b.output(rows, columns, initialRange: -1...1)
                let dy = try b.input(rows, columns)
                let dGate = inPlace ? gate : try b.output(rows, columns), dUp = inPlace ? up : try b.output(rows, columns)
                return [.training(.swiGLUBackward(gate: gate, up: up, outputGradient: dy, gateGradient: dGate, upGradient: dUp))]
            }
        }
    }

    static var siluBackward: [TrainingCase] {
        [(5, 33, false), (3, 512, true)].map { rows, columns, inPlace in
            TrainingCase(name: "silu_backward(\(rows)×\(columns)\(inPlace ? ", in place" : ""))", maxNMSE: 1e-12) { b in
                let x = try b.input(rows, columns, range: -8...8)
                let dy = try b.output(rows, columns, initialRange: -1...1)
                return [.training(.siluBackward(input: x, outputGradient: dy, inputGradient: inPlace ? dy : try b.output(rows, columns)))]
            }
        }
    }

    static var gatedResidualBackward: [TrainingCase] {
        [(7, 77, false), (9, 576, true)].map { rows, columns, inPlace in
            TrainingCase(name: "gated_residual_backward(\(rows)×\(columns)\(inPlace ? ", in place" : ""))", maxNMSE: 1e-12) { b in
                let block = try b.input(rows, columns), gate = try b.gate(rows, fractions: true)
                let residual = try b.output(rows, columns, initialRange: -1...1)
                let dy = try b.output(rows, columns, initialRange: -1...1)
                let dBlock = inPlace ? dy : try b.output(rows, columns)
                let dResidual = inPlace ? residual : try b.output(rows, columns)
                let dw = try b.output(1, rows, initialRange: -1...1)
                return [.training(.gatedResidualBackward(block: block, residual: residual, gate: gate, outputGradient: dy,
                                                         blockGradient: dBlock, residualGradient: dResidual, gateGradient: dw))]
            }
        }
    }
}
