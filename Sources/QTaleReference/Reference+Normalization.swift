import QTaleCore

extension ReferenceEngine {
    func rmsNorm(input: TensorView, weight: TensorView, epsilon: Float, output: TensorView) {
        let x = matrix(input)
        for t in 0..<input.rows {
            let meanSquare = x[t].reduce(0) { $0 + $1 * $1 } / Double(input.columns)
            let inverse = 1 / (meanSquare + Double(epsilon)).squareRoot()
            for c in 0..<input.columns { set(output, t, c, x[t][c] * inverse * get(weight, 0, c)) }
        }
    }
}
