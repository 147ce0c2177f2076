import QTaleCore

extension ReferenceEngine {
    /// Row lookup in a quantized table.
    func embed(table: QuantizedMatrix, tokens: TensorView, output: TensorView) {
        let host = HostQuantizedMatrix(table, in: store)
        for t in 0..<tokens.columns {
            let token = int(tokens, t)
            for c in 0..<table.columns { set(output, t, c, Double(host.weight(row: token, column: c))) }
        }
    }

    /// `output = input · dequantize(weight)ᵀ`, float64 accumulation.
    func matmul(input: TensorView, weight: QuantizedMatrix, output: TensorView, accumulate: Bool) {
        let host = HostQuantizedMatrix(weight, in: store)
        let x = matrix(input)
        let initial = accumulate ? matrix(output) : nil
        for n in 0..<weight.rows {
            let w = (0..<weight.columns).map { Double(host.weight(row: n, column: $0)) }
            for t in 0..<input.rows {
                var sum = initial?[t][n] ?? 0
                for k in 0..<weight.columns { sum += x[t][k] * w[k] }
                set(output, t, n, sum)
            }
        }
    }

    /// `output = input · weightᵀ + bias`, float64 accumulation.
    func linear(input: TensorView, weight: TensorView, bias: TensorView?, output: TensorView) {
        let x = matrix(input), w = matrix(weight)
        for t in 0..<input.rows {
            for n in 0..<weight.rows {
                var sum = bias.map { get($0, 0, n) } ?? 0
                for k in 0..<input.columns { sum += x[t][k] * w[n][k] }
                set(output, t, n, sum)
            }
        }
    }
}
