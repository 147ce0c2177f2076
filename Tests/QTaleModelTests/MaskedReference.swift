import Foundation
import QTaleGGUF
import QTaleModel

/// An independent float64 LLaMA forward pass straight from a GGUF file that recomputes a whole sequence
/// with attention masks built from execution decisions: token t runs block l iff `decisions[t][l]`, a
/// skipped token passes its hidden state through, and in block l a query sees only earlier tokens that
/// executed block l. The definition that KV eviction and compaction must reproduce.
struct MaskedReference {
    let c: LlamaConfiguration
    let embedding: [[Double]]
    let blocks: [[String: [[Double]]]]
    let norms: [[String: [Double]]]
    let outputNorm: [Double]

    init(path: String) throws {
        let gguf = try GGUFFile(path: path)
        c = try LlamaConfiguration(gguf: gguf)
        func matrix(_ name: String) throws -> [[Double]] {
            let t = gguf.tensor(named: name)!
            let v = try gguf.floats(t).map(Double.init)
            return (0..<t.rows).map { Array(v[($0 * t.columns) ..< (($0 + 1) * t.columns)]) }
        }
        func vector(_ name: String) throws -> [Double] { try gguf.floats(gguf.tensor(named: name)!).map(Double.init) }
        embedding = try matrix("token_embd.weight")
        blocks = try (0..<c.nLayers).map { l in
            try Dictionary(uniqueKeysWithValues: ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"].map {
                ($0, try matrix("blk.\(l).\($0).weight"))
            })
        }
        norms = try (0..<c.nLayers).map { l in
            ["attn": try vector("blk.\(l).attn_norm.weight"), "ffn": try vector("blk.\(l).ffn_norm.weight")]
        }
        outputNorm = try vector("output_norm.weight")
    }

    func rms(_ x: [Double], _ w: [Double]) -> [Double] {
        let s = 1 / (x.reduce(0) { $0 + $1 * $1 } / Double(x.count) + Double(c.normEpsilon)).squareRoot()
        return zip(x, w).map { $0 * s * $1 }
    }
    func mul(_ w: [[Double]], _ x: [Double]) -> [Double] { w.map { row in zip(row, x).reduce(0) { $0 + $1.0 * $1.1 } } }
    func rope(_ x: [Double], position: Int) -> [Double] {
        var y = x
        for head in stride(from: 0, to: x.count, by: c.headDim) {
            for i in stride(from: 0, to: c.ropeDims, by: 2) {
                let a = Double(position) * pow(Double(c.ropeBase), -Double(i) / Double(c.ropeDims))
                y[head + i] = x[head + i] * cos(a) - x[head + i + 1] * sin(a)
                y[head + i + 1] = x[head + i] * sin(a) + x[head + i + 1] * cos(a)
            }
        }
        return y
    }

    /// Logits of the last token.
    func logits(tokens: [Int32], decisions: [[Bool]]) -> [Float] {
        var x = tokens.map { embedding[Int($0)] }
        let T = tokens.count, group = c.nHeads / c.nKVHeads
        for l in 0..<c.nLayers {
            let w = blocks[l]
            let h = x.map { rms($0, norms[l]["attn"]!) }
            let q = (0..<T).map { rope(mul(w["attn_q"]!, h[$0]), position: $0) }
            let k = (0..<T).map { rope(mul(w["attn_k"]!, h[$0]), position: $0) }
            let v = (0..<T).map { mul(w["attn_v"]!, h[$0]) }
            var next = x
            for t in 0..<T where decisions[t][l] {
                var attended = [Double](repeating: 0, count: c.nHeads * c.headDim)
                let keys = (0...t).filter { decisions[$0][l] }
                for head in 0..<c.nHeads {
                    let qo = head * c.headDim, ko = (head / group) * c.headDim
                    let scores = keys.map { s in (0..<c.headDim).reduce(0.0) { $0 + q[t][qo + $1] * k[s][ko + $1] } / Double(c.headDim).squareRoot() }
                    let m = scores.max()!
                    let e = scores.map { exp($0 - m) }, total = e.reduce(0, +)
                    for d in 0..<c.headDim {
                        attended[qo + d] = zip(keys, e).reduce(0.0) { $0 + $1.1 * v[$1.0][ko + d] } / total
                    }
                }
                var y = zip(x[t], mul(w["attn_output"]!, attended)).map { $0 + $1 }
                let n = rms(y, norms[l]["ffn"]!)
                let g = mul(w["ffn_gate"]!, n), u = mul(w["ffn_up"]!, n)
                let act = zip(g, u).map { $0 / (1 + exp(-$0)) * $1 }
                y = zip(y, mul(w["ffn_down"]!, act)).map { $0 + $1 }
                next[t] = y
            }
            x = next
        }
        let final = rms(x[T - 1], outputNorm)
        return mul(embedding, final).map { Float($0) }
    }
}
