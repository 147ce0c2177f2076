import Foundation
import QTaleCore

/// Random matrices and float64 reference arithmetic shared by the quantization tests.
enum TestMatrices {
    /// Standard normal samples (Box–Muller).
    static func gaussian(_ count: Int, _ generator: inout SeededGenerator) -> [Float] {
        (0..<count).map { _ in
            let u = Double.random(in: Double.ulpOfOne..<1, using: &generator), v = Double.random(in: 0..<1, using: &generator)
            return Float((-2 * log(u)).squareRoot() * cos(2 * Double.pi * v))
        }
    }

    /// `a · b`, `[m × k] · [k × n]`, float64.
    static func multiply(_ a: [Double], _ b: [Double], m: Int, k: Int, n: Int) -> [Double] {
        var out = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for l in 0..<k { let x = a[i * k + l]; if x == 0 { continue }; for j in 0..<n { out[i * n + j] += x * b[l * n + j] } } }
        return out
    }

    /// `2/N · XᵀX` for `x` `[tokens × columns]`, float64.
    static func hessian(_ x: [Float], tokens: Int, columns: Int) -> [Double] {
        var h = [Double](repeating: 0, count: columns * columns)
        for t in 0..<tokens {
            for i in 0..<columns {
                let xi = Double(x[t * columns + i])
                if xi == 0 { continue }
                for j in 0..<columns { h[i * columns + j] += xi * Double(x[t * columns + j]) }
            }
        }
        return h.map { $0 * 2 / Double(tokens) }
    }

    /// `‖(W − Ŵ) Xᵀ‖²`: the squared output error of a linear on inputs `x` `[tokens × columns]`.
    static func outputError(_ w: [Float], _ quantized: [Float], x: [Float], rows: Int, columns: Int, tokens: Int) -> Double {
        var total = 0.0
        for r in 0..<rows {
            for t in 0..<tokens {
                var s = 0.0
                for c in 0..<columns { s += (Double(w[r * columns + c]) - Double(quantized[r * columns + c])) * Double(x[t * columns + c]) }
                total += s * s
            }
        }
        return total
    }

    /// A random symmetric positive definite matrix `B Bᵀ / n + shift · I`.
    static func spd(_ n: Int, shift: Double, _ generator: inout SeededGenerator) -> [Double] {
        let b = gaussian(n * n, &generator).map(Double.init)
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { var s = 0.0; for k in 0..<n { s += b[i * n + k] * b[j * n + k] }; a[i * n + j] = s / Double(n) } }
        for i in 0..<n { a[i * n + i] += shift }
        return a
    }
}

