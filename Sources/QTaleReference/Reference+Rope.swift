import QTaleCore
#if canImport(Glibc)
import Glibc
#endif

extension ReferenceEngine {
    /// Rotates pairs (2i, 2i+1) of each head by `position * base^(-2i/ropeDims)`.
    func rope(data: TensorView, positions: TensorView, headDim: Int, ropeDims: Int, base: Float) {
        for t in 0..<data.rows {
            let position = Double(int(positions, t))
            for head in 0..<(data.columns / headDim) {
                for i in stride(from: 0, to: ropeDims, by: 2) {
                    let angle = position * pow(Double(base), -Double(i) / Double(ropeDims))
                    let c = head * headDim + i
                    let (x0, x1) = (get(data, t, c), get(data, t, c + 1))
                    set(data, t, c, x0 * cos(angle) - x1 * sin(angle))
                    set(data, t, c + 1, x0 * sin(angle) + x1 * cos(angle))
                }
            }
        }
    }
}
