/// Shape, type and aliasing rules of every ``TrainingOp``, checked once on the host so engines can
/// assume valid operands (as ``OpValidation`` does for ``Op``).
public enum TrainingOpValidation {
    public static func check(_ op: TrainingOp) throws {
        func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
            if !condition { throw QTaleError.invalidArgument("\(op.name): \(message())") }
        }
        func float(_ views: TensorView...) throws {
            for v in views { try require(v.type == .float32, "\(v) must be float32") }
        }
        func shape(_ v: TensorView, _ rows: Int, _ columns: Int, _ what: String) throws {
            try require(v.rows == rows && v.columns == columns, "\(what) must be [\(rows) × \(columns)], got [\(v.rows) × \(v.columns)]")
        }
        func positions(_ v: TensorView, count: Int) throws {
            try require(v.type == .int32 && v.rows == 1 && v.columns == count, "positions must be int32 [1 × \(count)]")
        }
        /// `output` overlaps none of `others`, except those it is identical to when `mayBe` lists them.
        func disjoint(_ output: TensorView, _ what: String, from others: [TensorView], mayBe allowed: [TensorView] = []) throws {
            for other in others where output.overlaps(other) && !(output == other && allowed.contains(other)) {
                try require(false, "\(what) overlaps another operand")
            }
        }
        switch op {
        case let .fill(view, _):
            try float(view)

        case let .gatedResidual(block, residual, gate, output):
            try float(block, residual, gate, output)
            try shape(residual, block.rows, block.columns, "residual")
            try shape(output, block.rows, block.columns, "output")
            try shape(gate, 1, block.rows, "gate")
            try disjoint(output, "output", from: [block, residual, gate], mayBe: [block, residual])

        case let .gatedAttention(query, keys, values, keyGate, queryPositions, heads, kvHeads, headDim, output, logNormalizers):
            try attentionOperands(query, keys, values, keyGate, queryPositions, heads, kvHeads, headDim, require)
            try float(output, logNormalizers)
            try shape(output, query.rows, query.columns, "output")
            try shape(logNormalizers, query.rows, heads, "logNormalizers")
            let inputs = [query, keys, values, keyGate, queryPositions]
            try disjoint(output, "output", from: inputs + [logNormalizers])
            try disjoint(logNormalizers, "logNormalizers", from: inputs)

        case let .rmsNormBackward(input, weight, epsilon, outputGradient, inputGradient, _, weightGradient):
            try float(input, weight, outputGradient, inputGradient)
            try shape(outputGradient, input.rows, input.columns, "outputGradient")
            try shape(inputGradient, input.rows, input.columns, "inputGradient")
            try shape(weight, 1, input.columns, "weight")
            try require(epsilon >= 0 && epsilon.isFinite, "epsilon must be finite and ≥ 0")
            try disjoint(inputGradient, "inputGradient", from: [input, weight, outputGradient])
            if let weightGradient {
                try float(weightGradient)
                try shape(weightGradient, 1, input.columns, "weightGradient")
                try disjoint(weightGradient, "weightGradient", from: [input, weight, outputGradient, inputGradient])
            }

        case let .matmulBackward(outputGradient, weight, inputGradient, _):
            try float(outputGradient, inputGradient)
            try require(outputGradient.columns == weight.rows, "outputGradient has \(outputGradient.columns) columns, weight has \(weight.rows) rows")
            try shape(inputGradient, outputGradient.rows, weight.columns, "inputGradient")
            try disjoint(inputGradient, "inputGradient", from: [outputGradient])

        case let .linearBackward(input, weight, outputGradient, inputGradient, _, weightGradient, biasGradient):
            try float(input, weight, outputGradient)
            try require(input.columns == weight.columns, "input has \(input.columns) columns, weight expects \(weight.columns)")
            try shape(outputGradient, input.rows, weight.rows, "outputGradient")
            var written: [TensorView] = []
            if let inputGradient {
                try float(inputGradient)
                try shape(inputGradient, input.rows, input.columns, "inputGradient")
                written.append(inputGradient)
            }
            if let weightGradient {
                try float(weightGradient)
                try shape(weightGradient, weight.rows, weight.columns, "weightGradient")
                written.append(weightGradient)
            }
            if let biasGradient {
                try float(biasGradient)
                try shape(biasGradient, 1, weight.rows, "biasGradient")
                written.append(biasGradient)
            }
            for (i, w) in written.enumerated() {
                try disjoint(w, "a gradient", from: [input, weight, outputGradient] + written[(i + 1)...])
            }

        case let .ropeBackward(gradient, pos, headDim, ropeDims, base):
            try float(gradient)
            try positions(pos, count: gradient.rows)
            try require(headDim > 0 && gradient.columns % headDim == 0, "columns must be a multiple of headDim")
            try require(ropeDims > 0 && ropeDims <= headDim && ropeDims % 2 == 0, "ropeDims must be even and ≤ headDim")
            try require(base > 0, "base must be positive")

        case let .gatedAttentionBackward(query, keys, values, keyGate, queryPositions, heads, kvHeads, headDim, output,
                                         logNormalizers, outputGradient, queryGradient, keyGradient, valueGradient, keyGateGradient):
            try attentionOperands(query, keys, values, keyGate, queryPositions, heads, kvHeads, headDim, require)
            try float(output, logNormalizers, outputGradient, queryGradient, keyGradient, valueGradient, keyGateGradient)
            try shape(output, query.rows, query.columns, "output")
            try shape(logNormalizers, query.rows, heads, "logNormalizers")
            try shape(outputGradient, query.rows, query.columns, "outputGradient")
            try shape(queryGradient, query.rows, query.columns, "queryGradient")
            try shape(keyGradient, keys.rows, keys.columns, "keyGradient")
            try shape(valueGradient, keys.rows, keys.columns, "valueGradient")
            try shape(keyGateGradient, 1, keys.rows, "keyGateGradient")
            let inputs = [query, keys, values, keyGate, queryPositions, output, logNormalizers, outputGradient]
            let written = [queryGradient, keyGradient, valueGradient, keyGateGradient]
            for (i, w) in written.enumerated() {
                try disjoint(w, "a gradient", from: inputs + written[(i + 1)...])
            }

        case let .swiGLUBackward(gate, up, outputGradient, gateGradient, upGradient):
            try float(gate, up, outputGradient, gateGradient, upGradient)
            for v in [up, outputGradient, gateGradient, upGradient] { try shape(v, gate.rows, gate.columns, "every operand") }
            try disjoint(gateGradient, "gateGradient", from: [gate, up, outputGradient, upGradient], mayBe: [gate])
            try disjoint(upGradient, "upGradient", from: [gate, up, outputGradient], mayBe: [up])

        case let .siluBackward(input, outputGradient, inputGradient):
            try float(input, outputGradient, inputGradient)
            try shape(outputGradient, input.rows, input.columns, "outputGradient")
            try shape(inputGradient, input.rows, input.columns, "inputGradient")
            try disjoint(inputGradient, "inputGradient", from: [input, outputGradient], mayBe: [input, outputGradient])

        case let .gatedResidualBackward(block, residual, gate, outputGradient, blockGradient, residualGradient, gateGradient):
            try float(block, residual, gate, outputGradient, blockGradient, residualGradient, gateGradient)
            for v in [residual, outputGradient, blockGradient, residualGradient] { try shape(v, block.rows, block.columns, "every row operand") }
            try shape(gate, 1, block.rows, "gate")
            try shape(gateGradient, 1, block.rows, "gateGradient")
            let inputs = [block, residual, gate, outputGradient]
            try disjoint(blockGradient, "blockGradient", from: inputs + [residualGradient, gateGradient], mayBe: [outputGradient, block])
            try disjoint(residualGradient, "residualGradient", from: inputs + [gateGradient], mayBe: [residual])
            try disjoint(gateGradient, "gateGradient", from: inputs)
        }
    }

    /// The operands gated attention and its backward share.
    private static func attentionOperands(_ query: TensorView, _ keys: TensorView, _ values: TensorView, _ keyGate: TensorView,
                                          _ queryPositions: TensorView, _ heads: Int, _ kvHeads: Int, _ headDim: Int,
                                          _ require: (Bool, @autoclosure () -> String) throws -> Void) throws {
        for v in [query, keys, values, keyGate] { try require(v.type == .float32, "\(v) must be float32") }
        try require(headDim > 0 && heads > 0 && kvHeads > 0 && heads % kvHeads == 0, "heads must be a multiple of kvHeads")
        try require(query.columns == heads * headDim, "query must have heads*headDim columns")
        try require(keys.columns == kvHeads * headDim, "keys must have kvHeads*headDim columns")
        try require(values.rows == keys.rows && values.columns == keys.columns, "values must be shaped like keys")
        try require(keyGate.rows == 1 && keyGate.columns == keys.rows, "keyGate must be [1 × \(keys.rows)]")
        try require(queryPositions.type == .int32 && queryPositions.rows == 1 && queryPositions.columns == query.rows,
                    "queryPositions must be int32 [1 × \(query.rows)]")
    }
}
