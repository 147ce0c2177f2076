import QTaleCore

/// Turns an ``Op`` into the kernel launches that compute it: the host half of the kernel contracts in
/// `Kernels/`. Both GPU engines execute these plans, so the mapping from ops to kernels exists once.
///
/// Offsets and row strides are passed in elements (of float32 or int32), never bytes.
public enum KernelPlanner {
    /// Invocations per work-group for every kernel (`QTALE_WG` in the kernels).
    public static let workgroupSize = 64
    /// Output rows one `matmul_vec` work-group computes.
    public static let matvecRowsPerGroup = 64
    /// `matmul_mat` tile: output rows × tokens per work-group.
    public static let matmulTileRows = 64
    public static let matmulTileTokens = 8

    static func elements(_ view: TensorView) -> Int { view.byteOffset / view.type.byteSize }

    static func divideRoundingUp(_ a: Int, _ b: Int) -> Int { (a + b - 1) / b }

    /// The launch for `op` (every op is one launch).
    public static func launch(for op: Op) -> KernelLaunch {
        var p = KernelParameters()
        switch op {
        case let .embed(table, tokens, output):
            // params: bits, groupSize, columns, codeBytesPerRow, groupsPerRow, tokensOffset, outputOffset, outputStride, firstRow
            p.append(table.format.bits); p.append(table.format.groupSize); p.append(table.columns)
            p.append(table.format.codeBytesPerRow(columns: table.columns)); p.append(table.format.groupsPerRow(columns: table.columns))
            p.append(elements(tokens)); p.append(elements(output)); p.append(output.rowStride); p.append(table.firstRow)
            return KernelLaunch(kernel: .embed,
                                bindings: KernelBindings(table.codes, table.scales, table.offsets, tokens.buffer, output.buffer),
                                parameters: p, groups: (divideRoundingUp(table.columns, workgroupSize), tokens.columns, 1))

        case let .rmsNorm(input, weight, epsilon, output):
            // params: columns, inputOffset, inputStride, weightOffset, outputOffset, outputStride, epsilon (float)
            p.append(input.columns); p.append(elements(input)); p.append(input.rowStride)
            p.append(elements(weight)); p.append(elements(output)); p.append(output.rowStride); p.append(epsilon)
            return KernelLaunch(kernel: .rmsNorm, bindings: KernelBindings(input.buffer, weight.buffer, output.buffer),
                                parameters: p, groups: (input.rows, 1, 1))

        case let .matmul(input, weight, output, accumulate):
            // params: bits, groupSize, K, N, codeBytesPerRow, groupsPerRow, T,
            //         inputOffset, inputStride, outputOffset, outputStride, accumulate (0 or 1), firstRow
            p.append(weight.format.bits); p.append(weight.format.groupSize); p.append(weight.columns); p.append(weight.rows)
            p.append(weight.format.codeBytesPerRow(columns: weight.columns)); p.append(weight.format.groupsPerRow(columns: weight.columns))
            p.append(input.rows); p.append(elements(input)); p.append(input.rowStride)
            p.append(elements(output)); p.append(output.rowStride); p.append(accumulate ? 1 : 0); p.append(weight.firstRow)
            let bindings = KernelBindings(input.buffer, weight.codes, weight.scales, weight.offsets, output.buffer)
            if input.rows == 1 {
                return KernelLaunch(kernel: .matmulVector, bindings: bindings, parameters: p,
                                    groups: (divideRoundingUp(weight.rows, matvecRowsPerGroup), 1, 1))
            }
            return KernelLaunch(kernel: .matmulMatrix, bindings: bindings, parameters: p,
                                groups: (divideRoundingUp(weight.rows, matmulTileRows), divideRoundingUp(input.rows, matmulTileTokens), 1))

        case let .rope(data, positions, headDim, ropeDims, base):
            // params: rows, columns, headDim, ropeDims, dataOffset, dataStride, positionsOffset, base (float)
            p.append(data.rows); p.append(data.columns); p.append(headDim); p.append(ropeDims)
            p.append(elements(data)); p.append(data.rowStride); p.append(elements(positions)); p.append(base)
            let pairs = data.columns / headDim * (ropeDims / 2)
            return KernelLaunch(kernel: .rope, bindings: KernelBindings(data.buffer, positions.buffer), parameters: p,
                                groups: (divideRoundingUp(pairs, workgroupSize), data.rows, 1))

        case let .attention(query, keys, values, queryPositions, keyPositions, heads, kvHeads, headDim, output):
            // params: T, S, heads, kvHeads, headDim, queryOffset, queryStride, keysOffset, keysStride,
            //         valuesOffset, valuesStride, queryPositionsOffset, keyPositionsOffset (-1: key s has position s),
            //         outputOffset, outputStride
            p.append(query.rows); p.append(keys.rows); p.append(heads); p.append(kvHeads); p.append(headDim)
            p.append(elements(query)); p.append(query.rowStride); p.append(elements(keys)); p.append(keys.rowStride)
            p.append(elements(values)); p.append(values.rowStride); p.append(elements(queryPositions))
            p.append(keyPositions.map(elements) ?? -1); p.append(elements(output)); p.append(output.rowStride)
            return KernelLaunch(kernel: .attention,
                                bindings: KernelBindings(query.buffer, keys.buffer, values.buffer, queryPositions.buffer,
                                                         (keyPositions ?? queryPositions).buffer, output.buffer),
                                parameters: p, groups: (heads, query.rows, 1))

        case let .swiGLU(a, b, output), let .add(a, b, output):
            // params: rows, columns, aOffset, aStride, bOffset, bStride, outputOffset, outputStride
            p.append(a.rows); p.append(a.columns); p.append(elements(a)); p.append(a.rowStride)
            p.append(elements(b)); p.append(b.rowStride); p.append(elements(output)); p.append(output.rowStride)
            let kernel: KernelName = if case .add = op { .add } else { .swiGLU }
            return KernelLaunch(kernel: kernel, bindings: KernelBindings(a.buffer, b.buffer, output.buffer), parameters: p,
                                groups: (divideRoundingUp(a.columns, workgroupSize), a.rows, 1))

        case let .copy(source, destination):
            // params: rows, columns, sourceOffset, sourceStride, destinationOffset, destinationStride (32-bit elements)
            p.append(source.rows); p.append(source.columns); p.append(elements(source)); p.append(source.rowStride)
            p.append(elements(destination)); p.append(destination.rowStride)
            return KernelLaunch(kernel: .copy, bindings: KernelBindings(source.buffer, destination.buffer), parameters: p,
                                groups: (divideRoundingUp(source.columns, workgroupSize), source.rows, 1))
        case let .linear(input, weight, bias, output):
            // params: T, K, N, inputOffset, inputStride, weightOffset, weightStride, biasOffset (-1: none),
            //         outputOffset, outputStride
            p.append(input.rows); p.append(input.columns); p.append(weight.rows); p.append(elements(input))
            p.append(input.rowStride); p.append(elements(weight)); p.append(weight.rowStride)
            p.append(bias.map(elements) ?? -1); p.append(elements(output)); p.append(output.rowStride)
            return KernelLaunch(kernel: .linear,
                                bindings: KernelBindings(input.buffer, weight.buffer, (bias ?? input).buffer, output.buffer),
                                parameters: p, groups: (divideRoundingUp(weight.rows, workgroupSize), input.rows, 1))
        case let .silu(input, output):
            // params: rows, columns, inputOffset, inputStride, outputOffset, outputStride
            p.append(input.rows); p.append(input.columns); p.append(elements(input)); p.append(input.rowStride)
            p.append(elements(output)); p.append(output.rowStride)
            return KernelLaunch(kernel: .silu, bindings: KernelBindings(input.buffer, output.buffer), parameters: p,
                                groups: (divideRoundingUp(input.columns, workgroupSize), input.rows, 1))
        case let .gatherRows(source, indices, output), let .scatterRows(source, indices, output):
            // params: M, columns, sourceOffset, sourceStride, indicesOffset, outputOffset, outputStride,
            //         direction (0 gather, 1 scatter)
            let scatter: Bool = if case .scatterRows = op { true } else { false }
            p.append(indices.columns); p.append(source.columns); p.append(elements(source)); p.append(source.rowStride)
            p.append(elements(indices)); p.append(elements(output)); p.append(output.rowStride); p.append(scatter ? 1 : 0)
            return KernelLaunch(kernel: .moveRows, bindings: KernelBindings(source.buffer, indices.buffer, output.buffer),
                                parameters: p, groups: (divideRoundingUp(source.columns, workgroupSize), indices.columns, 1))
        case let .routerDecision(logits, threshold, decisions):
            // params: T, logitsOffset, logitsStride, decisionsOffset, margin (float, RouterDecisionRule)
            p.append(logits.rows); p.append(elements(logits)); p.append(logits.rowStride); p.append(elements(decisions))
            p.append(RouterDecisionRule.margin(threshold: threshold))
            return KernelLaunch(kernel: .routerDecision, bindings: KernelBindings(logits.buffer, decisions.buffer),
                                parameters: p, groups: (divideRoundingUp(logits.rows, workgroupSize), 1, 1))
        }
    }
}
