import QTaleCore

/// One item of the CPU engine's recorded stream: an inference ``Op`` or a ``TrainingOp``. Both kinds
/// run in the same `concurrentPerform` region, split into slices and ordered by the same dependency
/// rule, so a training step wakes the workers once per flush as inference does.
///
/// Training ops are boxed (`indirect`) so the stream's items stay the size of an ``Op``.
enum CPUWork: TensorAccessing {
    case op(Op)
    indirect case training(TrainingOp)

    @inline(__always) func forEachRead(_ body: (TensorView) -> Void) {
        switch self {
        case let .op(op): op.forEachRead(body)
        case let .training(op): op.forEachRead(body)
        }
    }

    @inline(__always) func forEachWrite(_ body: (TensorView) -> Void) {
        switch self {
        case let .op(op): op.forEachWrite(body)
        case let .training(op): op.forEachWrite(body)
        }
    }
}

extension CPUEngine: TrainingEngine {
    public func encode(_ op: TrainingOp) throws { pending.append(.training(op)) }

    func sliceCount(_ work: CPUWork) -> Int {
        switch work {
        case let .op(op): sliceCount(op)
        case let .training(op): sliceCount(op)
        }
    }

    func execute(_ work: CPUWork, _ slice: WorkSlice) {
        switch work {
        case let .op(op): execute(op, slice)
        case let .training(op): execute(op, slice)
        }
    }

    /// How many slices a training op is split into. Ops with two partitions (rows of `dX` and rows of
    /// `dW`; query rows and keys) give each slice its share of both.
    func sliceCount(_ op: TrainingOp) -> Int {
        let work: Int
        switch op {
        case let .fill(view, _): work = view.rows * view.columns / 4
        case let .gatedResidual(block, _, _, _): work = block.rows * block.columns
        case let .gatedAttention(query, keys, _, _, _, heads, _, headDim, _, _):
            return min(threads, query.rows * heads, max(1, query.rows * heads * keys.rows * headDim / 8192))
        case let .rmsNormBackward(input, _, _, _, _, _, weightGradient):
            work = input.rows * input.columns * (weightGradient == nil ? 2 : 4)
        case let .matmulBackward(outputGradient, weight, _, _):
            // Each slice dequantizes the whole weight: at least 16 rows of dY per slice repay it.
            return min(threads, max(1, outputGradient.rows / 16), max(1, outputGradient.rows * weight.rows * weight.columns / 65536))
        case let .linearBackward(input, weight, _, inputGradient, _, weightGradient, _):
            let products = (inputGradient == nil ? 0 : 1) + (weightGradient == nil ? 0 : 1)
            work = products * input.rows * weight.rows * weight.columns / 16 + input.rows * weight.rows
        case let .ropeBackward(gradient, _, _, _, _): work = gradient.rows * gradient.columns
        case let .gatedAttentionBackward(query, keys, _, _, _, heads, _, headDim, _, _, _, _, _, _, _):
            return min(threads, max(query.rows * heads, keys.rows), max(1, query.rows * heads * keys.rows * headDim / 2048))
        case let .swiGLUBackward(gate, _, _, _, _): work = 4 * gate.rows * gate.columns
        case let .siluBackward(input, _, _): work = 2 * input.rows * input.columns
        case let .gatedResidualBackward(block, _, _, _, _, _, _): work = 2 * block.rows * block.columns
        }
        return min(threads, max(1, work / 16384))
    }

    func execute(_ op: TrainingOp, _ slice: WorkSlice) {
        switch op {
        case let .fill(view, value):
            fill(view, value: value, slice: slice)
        case let .gatedResidual(block, residual, gate, output):
            gatedResidual(block: block, residual: residual, gate: gate, output: output, slice: slice)
        case let .gatedAttention(query, keys, values, keyGate, queryPositions, heads, kvHeads, headDim, output, logNormalizers):
            gatedAttention(query: query, keys: keys, values: values, keyGate: keyGate, queryPositions: queryPositions,
                           heads: heads, kvHeads: kvHeads, headDim: headDim, output: output,
                           logNormalizers: logNormalizers, slice: slice)
        case let .rmsNormBackward(input, weight, epsilon, outputGradient, inputGradient, accumulate, weightGradient):
            rmsNormBackward(input: input, weight: weight, epsilon: epsilon, outputGradient: outputGradient,
                            inputGradient: inputGradient, accumulate: accumulate, weightGradient: weightGradient, slice: slice)
        case let .matmulBackward(outputGradient, weight, inputGradient, accumulate):
            matmulBackward(outputGradient: outputGradient, weight: weight, inputGradient: inputGradient,
                           accumulate: accumulate, slice: slice)
        case let .linearBackward(input, weight, outputGradient, inputGradient, accumulate, weightGradient, biasGradient):
            linearBackward(input: input, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient,
                           accumulate: accumulate, weightGradient: weightGradient, biasGradient: biasGradient, slice: slice)
        case let .ropeBackward(gradient, positions, headDim, ropeDims, base):
            // The transpose of a rotation is the rotation by the negated angle.
            rope(data: gradient, positions: positions, headDim: headDim, ropeDims: ropeDims, base: base, inverse: true, slice: slice)
        case let .gatedAttentionBackward(query, keys, values, keyGate, queryPositions, heads, kvHeads, headDim, output,
                                         logNormalizers, outputGradient, queryGradient, keyGradient, valueGradient, keyGateGradient):
            gatedAttentionBackward(query: query, keys: keys, values: values, keyGate: keyGate, queryPositions: queryPositions,
                                   heads: heads, kvHeads: kvHeads, headDim: headDim, output: output,
                                   logNormalizers: logNormalizers, outputGradient: outputGradient,
                                   queryGradient: queryGradient, keyGradient: keyGradient, valueGradient: valueGradient,
                                   keyGateGradient: keyGateGradient, slice: slice)
        case let .swiGLUBackward(gate, up, outputGradient, gateGradient, upGradient):
            swiGLUBackward(gate: gate, up: up, outputGradient: outputGradient, gateGradient: gateGradient,
                           upGradient: upGradient, slice: slice)
        case let .siluBackward(input, outputGradient, inputGradient):
            siluBackward(input: input, outputGradient: outputGradient, inputGradient: inputGradient, slice: slice)
        case let .gatedResidualBackward(block, residual, gate, outputGradient, blockGradient, residualGradient, gateGradient):
            gatedResidualBackward(block: block, residual: residual, gate: gate, outputGradient: outputGradient,
                                  blockGradient: blockGradient, residualGradient: residualGradient,
                                  gateGradient: gateGradient, slice: slice)
        }
    }
}

extension CPUScratch {
    /// Scratch floats one worker needs for `work`.
    static func floatsNeeded(by work: CPUWork) -> Int {
        switch work {
        case let .op(op): floatsNeeded(by: op)
        case let .training(op): floatsNeeded(by: op)
        }
    }

    /// Scratch floats one worker needs for a training op.
    static func floatsNeeded(by op: TrainingOp) -> Int {
        switch op {
        case let .gatedAttention(_, keys, _, _, _, _, _, headDim, _, _):
            return keys.rows + headDim
        case let .gatedAttentionBackward(query, _, _, _, _, heads, _, headDim, _, _, _, _, _, _, _):
            // D = dO·output per query row and head, then the dq, dk and dv accumulators.
            return query.rows * heads + 3 * headDim
        case let .rmsNormBackward(input, _, _, _, _, _, _):
            return input.rows
        case let .matmulBackward(_, weight, _, _):
            // The whole weight dequantized (rows padded to whole packs), after the edge tile.
            return CPUEngine.edgeTileFloats + weight.rows * weight.format.packsPerRow(columns: weight.columns) * QuantizationFormat.codesPerPack
        case let .linearBackward(input, weight, _, _, _, _, _):
            return CPUEngine.multiplyScratchFloats(inner: max(input.rows, weight.rows))
        case let .ropeBackward(_, _, _, ropeDims, _):
            return ropeDims
        default:
            return 0
        }
    }
}
