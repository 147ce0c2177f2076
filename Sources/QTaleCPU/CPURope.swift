import QTaleCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension CPUEngine {
    /// Rotary embedding in place. Angles are computed in float64 once per token and shared by all heads,
    /// so long positions keep full precision. `inverse` rotates by the negated angles: the backward pass
    /// of a rotation is its transpose.
    func rope(data: TensorView, positions: TensorView, headDim: Int, ropeDims: Int, base: Float, inverse: Bool = false,
              slice: WorkSlice) {
        let x = store.pointer(data, as: Float.self)
        let pos = store.pointer(positions, as: Int32.self)
        let pairs = ropeDims / 2
        let table = scratch.worker(slice.worker)
        for t in slice.range(of: data.rows) {
            let position = Double(pos[t])
            for i in 0..<pairs {
                let angle = position * pow(Double(base), -Double(2 * i) / Double(ropeDims))
                table[2 * i] = Float(cos(angle))
                table[2 * i + 1] = Float(inverse ? -sin(angle) : sin(angle))
            }
            let row = x + t * data.rowStride
            for head in stride(from: 0, to: data.columns, by: headDim) {
                for i in 0..<pairs {
                    let c = head + 2 * i
                    let (x0, x1) = (row[c], row[c + 1])
                    let (cosine, sine) = (table[2 * i], table[2 * i + 1])
                    row[c] = x0 * cosine - x1 * sine
                    row[c + 1] = x0 * sine + x1 * cosine
                }
            }
        }
    }
}
