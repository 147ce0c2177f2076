import QTaleCore

extension ReferenceEngine {
    func elementwise(_ a: TensorView, _ b: TensorView, _ output: TensorView, _ f: (Double, Double) -> Double) {
        let x = matrix(a), y = matrix(b)
        for r in 0..<a.rows { for c in 0..<a.columns { set(output, r, c, f(x[r][c], y[r][c])) } }
    }

    func copy(source: TensorView, destination: TensorView) {
        for r in 0..<source.rows { copyRow(from: source, r, to: destination, r) }
    }

    /// Copies row `from` of `source` to row `to` of `destination`, bit for bit.
    func copyRow(from source: TensorView, _ from: Int, to destination: TensorView, _ to: Int) {
        let bytes = source.type.byteSize
        let a = store.pointer(source.buffer) + source.byteOffset + from * source.rowStride * bytes
        let b = store.pointer(destination.buffer) + destination.byteOffset + to * destination.rowStride * bytes
        b.copyMemory(from: a, byteCount: source.columns * bytes)
    }
}
