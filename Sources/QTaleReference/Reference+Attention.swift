import QTaleCore

extension ReferenceEngine {
    /// Causal grouped-query attention by the definition: scores, masked softmax, weighted sum.
    func attention(query: TensorView, keys: TensorView, values: TensorView,
                   queryPositions: TensorView, keyPositions: TensorView?,
                   heads: Int, kvHeads: Int, headDim: Int, output: TensorView) {
        let q = matrix(query), k = matrix(keys), v = matrix(values)
        let scale = 1 / Double(headDim).squareRoot()
        let keyPosition = { (s: Int) in keyPositions.map { self.int($0, s) } ?? s }
        for t in 0..<query.rows {
            let visible = (0..<keys.rows).filter { keyPosition($0) <= int(queryPositions, t) }
            for h in 0..<heads {
                let qh = h * headDim, kh = (h / (heads / kvHeads)) * headDim
                let scores = visible.map { s in
                    (0..<headDim).reduce(0.0) { $0 + q[t][qh + $1] * k[s][kh + $1] } * scale
                }
                let maxScore = scores.max() ?? 0
                let weights = scores.map { _exp($0 - maxScore) }
                let total = weights.reduce(0, +)
                for d in 0..<headDim {
                    var sum = 0.0
                    for (i, s) in visible.enumerated() { sum += weights[i] * v[s][kh + d] }
                    set(output, t, qh + d, visible.isEmpty ? 0 : sum / total)
                }
            }
        }
    }
}
