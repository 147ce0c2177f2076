import QTaleCore
import QTaleReference
import QTaleTestSupport
import XCTest

/// The reference engine's training ops against their float64 specification: the forwards the gradient
/// checks differentiate are the engine's own ops, the wrappers follow the overwrite/accumulate
/// conventions, and validation rejects what engines may not be given.
final class ReferenceTrainingTests: XCTestCase {
    typealias G = ReferenceGradients

    /// The float64 forwards of ``ReferenceGradients`` equal the reference engine's ``Op``s up to the
    /// final float32 rounding, so the finite-difference checks differentiate the ops the model runs.
    func testFloat64FormsMatchTheEngineOps() throws {
        let engine = ReferenceEngine()
        var random = TestRandom(seed: 11)
        func upload(_ m: G.Matrix) throws -> (DeviceBuffer, TensorView) {
            let buffer = try engine.makeBuffer(m.joined().map(Float.init))
            return (buffer, buffer.view(.float32, rows: m.count, columns: m[0].count))
        }
        func matrix(_ rows: Int, _ columns: Int) -> G.Matrix {
            (0..<rows).map { _ in (0..<columns).map { _ in Double(random.uniform(-2, 2)) } }
        }
        func assertClose(_ view: TensorView, _ expected: G.Matrix, _ name: String) throws {
            let got = try engine.readFloats(view)
            for (a, b) in zip(got, expected.joined()) { XCTAssertEqual(Double(a), b, accuracy: 1e-6 * max(1, abs(b)), name) }
        }
        // Inputs are float32 values, so both sides start from the same numbers.
        func rounded(_ m: G.Matrix) -> G.Matrix { m.map { $0.map { Double(Float($0)) } } }

        let x = rounded(matrix(5, 13)), g = rounded(matrix(1, 13)), w = rounded(matrix(7, 13)), bias = rounded(matrix(1, 7))
        let (xb, xv) = try upload(x), (gb, gv) = try upload(g), (wb, wv) = try upload(w), (bb, bv) = try upload(bias)
        let out = try engine.allocate(byteCount: 4 * 5 * 13), outView = out.view(.float32, rows: 5, columns: 13)
        let linearOut = try engine.allocate(byteCount: 4 * 5 * 7), linearView = linearOut.view(.float32, rows: 5, columns: 7)
        try engine.run(.rmsNorm(input: xv, weight: gv, epsilon: 1e-5, output: outView))
        try assertClose(outView, G.rmsNorm(x, weight: g[0], epsilon: Double(Float(1e-5))), "rms_norm")
        try engine.run(.linear(input: xv, weight: wv, bias: bv, output: linearView))
        try assertClose(linearView, G.linear(x, weight: w, bias: bias[0]), "linear")
        try engine.run(.silu(input: xv, output: outView))
        try assertClose(outView, G.silu(x), "silu")
        try engine.run(.swiGLU(gate: xv, up: xv, output: outView))
        try assertClose(outView, G.swiGLU(gate: x, up: x), "swiglu")

        // matmul: the forward multiplies by the dequantized weight.
        var packed = try PackedMatrix(format: QuantizationFormat(bits: 3, groupSize: 32), rows: 7, columns: 13)
        for n in 0..<7 { for k in 0..<13 { packed.setCode(Int(random.next() % 8), row: n, column: k) } }
        for i in packed.scales.indices { packed.scales[i] = 0.25; packed.offsets[i] = -1 }
        var keep: [DeviceBuffer] = []
        let quantized = try engine.upload(packed, keepAlive: &keep)
        try engine.run(.matmul(input: xv, weight: quantized, output: linearView))
        let dequantized = (0..<7).map { n in (0..<13).map { Double(packed.weight(row: n, column: $0)) } }
        try assertClose(linearView, G.linear(x, weight: dequantized), "matmul")

        // RoPE with a partial rotation (6 of 8 dims per head) at large positions.
        let positions: [Int32] = [0, 1, 7, 300, 4096]
        let pb = try engine.makeBuffer(positions)
        let data = rounded(matrix(5, 16))
        let (db, dv) = try upload(data)
        try engine.run(.rope(data: dv, positions: pb.view(.int32, rows: 1, columns: 5), headDim: 8, ropeDims: 6, base: 10000))
        try assertClose(dv, G.rope(data, positions: positions.map(Int.init), headDim: 8, ropeDims: 6, base: 10000), "rope")

        // Gated attention with every gate 1 is the engine's causal attention.
        let q = rounded(matrix(5, 8)), k = rounded(matrix(5, 4)), v = rounded(matrix(5, 4))
        let (qb, qv) = try upload(q), (kb, kv) = try upload(k), (vb, vv) = try upload(v)
        let attended = try engine.allocate(byteCount: 4 * 40), attendedView = attended.view(.float32, rows: 5, columns: 8)
        let queryPositions = try engine.makeBuffer([Int32](0..<5))
        try engine.run(.attention(query: qv, keys: kv, values: vv, queryPositions: queryPositions.view(.int32, rows: 1, columns: 5),
                                  keyPositions: nil, heads: 2, kvHeads: 1, headDim: 4, output: attendedView))
        let gated = G.gatedAttention(query: q, keys: k, values: v, keyGate: [1, 1, 1, 1, 1], queryPositions: Array(0..<5),
                                     shape: .init(heads: 2, kvHeads: 1, headDim: 4))
        try assertClose(attendedView, gated.output, "attention")
        withExtendedLifetime([xb, gb, wb, bb, out, linearOut, pb, db, qb, kb, vb, attended, queryPositions] + keep) {}
    }

    /// Activation gradients are overwritten unless `accumulate`; weight, bias and gate gradients always add.
    func testOverwriteAndAccumulateConventions() throws {
        let engine = ReferenceEngine()
        var random = TestRandom(seed: 12)
        func values(_ n: Int) -> [Float] { (0..<n).map { _ in random.uniform(-1, 1) } }
        let x = try engine.makeBuffer(values(3 * 4)), w = try engine.makeBuffer(values(2 * 4)), dy = try engine.makeBuffer(values(3 * 2))
        let dx = try engine.makeBuffer(values(3 * 4)), dw = try engine.makeBuffer([Float](repeating: 0, count: 8))
        let db = try engine.makeBuffer([Float](repeating: 0, count: 2))
        let (xv, wv, dyv) = (x.view(.float32, rows: 3, columns: 4), w.view(.float32, rows: 2, columns: 4), dy.view(.float32, rows: 3, columns: 2))
        let (dxv, dwv, dbv) = (dx.view(.float32, rows: 3, columns: 4), dw.view(.float32, rows: 2, columns: 4), db.view(.float32, rows: 1, columns: 2))
        let backward = TrainingOp.linearBackward(input: xv, weight: wv, outputGradient: dyv, inputGradient: dxv, accumulate: false,
                                                 weightGradient: dwv, biasGradient: dbv)
        try engine.run(backward)
        let once = (try engine.readFloats(dxv), try engine.readFloats(dwv), try engine.readFloats(dbv))
        try engine.run(backward)
        XCTAssertEqual(try engine.readFloats(dxv), once.0, "dX is overwritten")
        XCTAssertEqual(try engine.readFloats(dwv), once.1.map { 2 * $0 }, "dW accumulates")
        XCTAssertEqual(try engine.readFloats(dbv), once.2.map { 2 * $0 }, "db accumulates")
        try engine.run(.linearBackward(input: xv, weight: wv, outputGradient: dyv, inputGradient: dxv, accumulate: true,
                                       weightGradient: nil, biasGradient: nil))
        XCTAssertEqual(try engine.readFloats(dxv), once.0.map { 2 * $0 }, "dX accumulates when asked")
        XCTAssertEqual(try engine.readFloats(dwv), once.1.map { 2 * $0 }, "nil gradients are left alone")
        try engine.run(.fill(dwv, value: 0))
        XCTAssertEqual(try engine.readFloats(dwv), [Float](repeating: 0, count: 8))
    }

    func testValidationRejectsBadShapesAndAliasing() throws {
        let engine = ReferenceEngine()
        let buffer = try engine.allocate(byteCount: 4 * 128)
        /// `[rows × columns]` at float offset `offset` of the one buffer.
        func view(_ rows: Int, _ columns: Int, at offset: Int) -> TensorView {
            buffer.view(.float32, rows: rows, columns: columns, byteOffset: 4 * offset)
        }
        let a = view(2, 8, at: 0), b = view(2, 8, at: 16), c = view(2, 8, at: 32), overlapping = view(2, 8, at: 8)
        let gate = view(1, 2, at: 48), weight = view(1, 8, at: 64)
        // In place where a case allows it.
        XCTAssertNoThrow(try TrainingOpValidation.check(.siluBackward(input: a, outputGradient: b, inputGradient: b)))
        XCTAssertNoThrow(try TrainingOpValidation.check(.swiGLUBackward(gate: a, up: b, outputGradient: c, gateGradient: a, upGradient: b)))
        XCTAssertNoThrow(try TrainingOpValidation.check(.gatedResidual(block: a, residual: b, gate: gate, output: a)))
        // Partial overlaps, and outputs that alias inputs where the case does not allow it, are rejected.
        XCTAssertThrowsError(try TrainingOpValidation.check(.siluBackward(input: a, outputGradient: b, inputGradient: overlapping)))
        XCTAssertThrowsError(try TrainingOpValidation.check(.swiGLUBackward(gate: a, up: b, outputGradient: c, gateGradient: b, upGradient: a)))
        XCTAssertThrowsError(try TrainingOpValidation.check(.rmsNormBackward(input: a, weight: weight, epsilon: 1e-5, outputGradient: b,
                                                                             inputGradient: b, accumulate: false, weightGradient: nil)))
        // A gate has one value per row.
        XCTAssertThrowsError(try TrainingOpValidation.check(.gatedResidual(block: a, residual: b, gate: gate.columns(0..<1), output: c)))
    }
}
