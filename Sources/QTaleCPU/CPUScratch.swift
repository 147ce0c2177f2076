import QTaleCore

/// Per-worker scratch space, sized before each parallel region for the largest op in it and reused.
final class CPUScratch {
    private var buffers: [UnsafeMutablePointer<Float>]
    private var capacity = 0

    init(workers: Int) {
        buffers = (0..<workers).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: 1) }
    }

    deinit { buffers.forEach { $0.deallocate() } }

    /// Worker `worker`'s buffer; holds at least what ``floatsNeeded(by:)`` asked for the current ops.
    @inline(__always) func worker(_ worker: Int) -> UnsafeMutablePointer<Float> { buffers[worker] }

    /// Grows every worker's buffer to what `work` needs. Runs on the calling thread, before workers start.
    func prepare(for work: [CPUWork]) {
        var needed = 0
        for item in work { needed = max(needed, Self.floatsNeeded(by: item)) }
        guard needed > capacity else { return }
        for w in buffers.indices {
            buffers[w].deallocate()
            buffers[w] = .allocate(capacity: needed)
        }
        capacity = needed
    }

    /// Scratch floats one worker needs for `op`.
    static func floatsNeeded(by op: Op) -> Int {
        switch op {
        case let .matmul(input, weight, _, _):
            let padded = weight.format.packsPerRow(columns: weight.columns) * QuantizationFormat.codesPerPack
            if CPUEngine.usesPackedLinear(tokens: input.rows, outputs: weight.rows) { return CPUEngine.dequantizedChunkRows * padded }
            // After the padded inputs and group sums: the few-token tile, or the int8 activations of decode.
            let packs = weight.format.packsPerRow(columns: weight.columns)
            return input.rows * (padded + weight.format.groupsPerRow(columns: weight.columns))
                + max(CPUEngine.tileRows * padded, CPUEngine.int8ActivationFloats(packs: packs))
        case let .embed(table, _, _):
            return table.format.packsPerRow(columns: table.columns) * QuantizationFormat.codesPerPack
        case let .attention(_, keys, _, _, _, _, _, headDim, _):
            return keys.rows + headDim
        case let .rope(_, _, _, ropeDims, _):
            return ropeDims
        default:
            return 0
        }
    }
}
