import QTaleCore

extension ReferenceEngine {
    func elementwise(_ a: TensorView, _ b: TensorView, _ output: TensorView, _ f: (Double, Double) -> Double) {
        let x = matrix(a), y = matrix(b)
        for r in 0..<a.rows { for c in 0..<a.columns { set(output, r, c, f(x[r][c], y[r][c])) } }
    }

    func copy(source: TensorView, destination: TensorView) {
        let bytes = source.type.byteSize
        for r in 0..<source.rows {
            let from = store.pointer(source.buffer) + source.byteOffset + r * source.rowStride * bytes
            let to = store.pointer(destination.buffer) + destination.byteOffset + r * destination.rowStride * bytes
            to.copyMemory(from: from, byteCount: source.columns * bytes)
        }
    }
}
