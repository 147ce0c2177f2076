import QTaleCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension CPUEngine {
    /// Causal grouped-query attention. Parallel over (query, head) pairs; each worker keeps its scores
    /// in its own scratch. Softmax subtracts the maximum and accumulates in float32.
    func attention(query: TensorView, keys: TensorView, values: TensorView,
                   queryPositions: TensorView, keyPositions: TensorView?,
                   heads: Int, kvHeads: Int, headDim: Int, output: TensorView, slice: WorkSlice) {
        let q = store.pointer(query, as: Float.self)
        let k = UnsafePointer(store.pointer(keys, as: Float.self))
        let v = UnsafePointer(store.pointer(values, as: Float.self))
        let out = store.pointer(output, as: Float.self)
        let queryPos = store.pointer(queryPositions, as: Int32.self)
        let keyPos: UnsafeMutablePointer<Int32>? = keyPositions.map { store.pointer($0, as: Int32.self) }
        let keyCount = keys.rows
        let group = heads / kvHeads
        let scale = 1 / Float(headDim).squareRoot()
        let scores = scratch.worker(slice.worker)
        let accumulator = scores + keyCount
        for item in slice.range(of: query.rows * heads) {
            let t = item / heads, h = item % heads
            let qh = UnsafePointer(q + t * query.rowStride + h * headDim)
            let kvOffset = (h / group) * headDim
            let limit = queryPos[t]
            var maxScore = -Float.infinity
            for s in 0..<keyCount {
                let visible = (keyPos.map { $0[s] } ?? Int32(truncatingIfNeeded: s)) <= limit
                let score = visible ? dot(qh, k + s * keys.rowStride + kvOffset, count: headDim) * scale : -Float.infinity
                scores[s] = score
                maxScore = max(maxScore, score)
            }
            let target = out + t * output.rowStride + h * headDim
            guard maxScore > -Float.infinity else {
                target.update(repeating: 0, count: headDim)
                continue
            }
            accumulator.update(repeating: 0, count: headDim)
            var total: Float = 0
            for s in 0..<keyCount where scores[s] > -Float.infinity {
                let weight = expf(scores[s] - maxScore)
                total += weight
                let vs = v + s * values.rowStride + kvOffset
                var d = 0
                while d + 16 <= headDim {
                    accumulator.store(accumulator.vector(at: d) + FloatVector(repeating: weight) * vs.vector(at: d), at: d)
                    d += 16
                }
                while d < headDim {
                    accumulator[d] += weight * vs[d]
                    d += 1
                }
            }
            let inverse = 1 / total
            for d in 0..<headDim { target[d] = accumulator[d] * inverse }
        }
    }
}
