import QTaleCore

extension CPUEngine {
    /// RMSNorm per row; the mean of squares accumulates in float32 over 16 lanes.
    func rmsNorm(input: TensorView, weight: TensorView, epsilon: Float, output: TensorView, slice: WorkSlice) {
        let x = store.pointer(input, as: Float.self)
        let w = UnsafePointer(store.pointer(weight, as: Float.self))
        let out = store.pointer(output, as: Float.self)
        let columns = input.columns
        for t in slice.range(of: input.rows) {
            let row = UnsafePointer(x + t * input.rowStride)
            let meanSquare = dot(row, row, count: columns) / Float(columns)
            let inverse = 1 / (meanSquare + epsilon).squareRoot()
            let target = out + t * output.rowStride
            for c in 0..<columns { target[c] = row[c] * inverse * w[c] }
        }
    }
}
