import QTaleCore

extension CPUEngine {
    /// Dequantizes one table row per token.
    func embed(table: QuantizedMatrix, tokens: TensorView, output: TensorView, slice: WorkSlice) {
        let host = HostQuantizedMatrix(table, in: store)
        let ids = store.pointer(tokens, as: Int32.self)
        let out = store.pointer(output, as: Float.self)
        let packs = table.format.packsPerRow(columns: table.columns)
        let row = scratch.worker(slice.worker)
        for t in slice.range(of: tokens.columns) {
            switch table.format.bits {
            case 4: Self.dequantizeRow(FourBitCodes.self, host: host, row: Int(ids[t]), packs: packs, groupSize: table.format.groupSize, into: row)
            case 8: Self.dequantizeRow(EightBitCodes.self, host: host, row: Int(ids[t]), packs: packs, groupSize: table.format.groupSize, into: row)
            default: Self.dequantizeRow(ThreeBitCodes.self, host: host, row: Int(ids[t]), packs: packs, groupSize: table.format.groupSize, into: row)
            }
            (out + t * output.rowStride).update(from: row, count: table.columns)
        }
    }
}
