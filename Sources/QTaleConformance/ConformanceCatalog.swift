import QTaleCore

/// Every op at the model's shapes and at awkward ones: K not a multiple of the group or of 32,
/// a single token, odd sizes, strided views, in-place forms and long sequences.
public enum ConformanceCatalog {
    public static var all: [ConformanceCase] { core + layerSkip }

    /// The ops of the dense forward pass.
    public static var core: [ConformanceCase] { embed + rmsNorm + matmul + rope + attention + elementwise }

    /// The ops gated layer skip adds: the router's dense linear and SiLU, row gather/scatter, and the
    /// device-side decision.
    public static var layerSkip: [ConformanceCase] {
        let linear = [(1, 576, 512, true), (7, 33, 2, true), (3, 512, 2, false)].map { t, k, n, withBias in
            ConformanceCase(op: "linear", parameters: "T=\(t) K=\(k) N=\(n)\(withBias ? "" : ", no bias")", maxNMSE: 1e-11) { b in
                .linear(input: try b.input(t, k), weight: try b.input(n, k), bias: withBias ? try b.input(1, n) : nil,
                        output: try b.output(t, n))
            }
        }
        let silu = [(1, 512), (5, 33)].map { rows, columns in
            ConformanceCase(op: "silu", parameters: "\(rows)×\(columns), in place", maxNMSE: 1e-12) { b in
                let x = try b.output(rows, columns, initialRange: -8...8)
                return .silu(input: x, output: x)
            }
        }
        let selections: [(Int, [Int])] = [(9, [0, 3, 4, 8]), (5, [4]), (40, Array(stride(from: 1, to: 40, by: 3)))]
        let rows: [ConformanceCase] = selections.flatMap { (total: Int, picked: [Int]) -> [ConformanceCase] in
            [
                ConformanceCase(op: "gather_rows", parameters: "\(picked.count) of \(total)×77", maxNMSE: 0) { b in
                    .gatherRows(source: try b.input(total, 77), indices: try b.integers(picked.map(Int32.init)),
                                output: try b.output(picked.count, 77))
                },
                ConformanceCase(op: "scatter_rows", parameters: "\(picked.count) into \(total)×77", maxNMSE: 0) { b in
                    // Rows not named keep their initial values: the pass-through rows of a skipped block.
                    .scatterRows(source: try b.input(picked.count, 77), indices: try b.integers(picked.map(Int32.init)),
                                 output: try b.output(total, 77, initialRange: -1...1))
                },
            ]
        }
        // Logits spread over ±6 put decisions on both sides of every threshold; θ 0 and 1 are the ends.
        let decisions = [(1, 0.5), (7, 0.2), (40, 0.9), (5, 0), (5, 1)].map { (t: Int, threshold: Float) in
            ConformanceCase(op: "router_decision", parameters: "T=\(t) θ=\(threshold)", maxNMSE: 0) { b in
                .routerDecision(logits: try b.input(t, 2, range: -6...6), threshold: threshold, decisions: try b.integerOutput(t))
            }
        }
        return linear + silu + rows + decisions
    }

    static var embed: [ConformanceCase] {
        [(8, 32, 64, 100), (4, 32, 576, 50), (4, 64, 96, 10), (3, 128, 80, 7)].map { bits, group, columns, rows in
            ConformanceCase(op: "embed", parameters: "w\(bits)g\(group), \(rows)×\(columns)", maxNMSE: 1e-12) { b in
                let table = try b.quantized(bits: bits, groupSize: group, rows: rows, columns: columns)
                let ids = (0..<5).map { _ in Int32(b.random.next() % UInt64(rows)) }
                return .embed(table: table, tokens: try b.integers(ids), output: try b.output(ids.count, columns))
            }
        } + [(4, 32, 96, 10), (8, 32, 64, 9), (3, 64, 80, 7)].map { bits, group, columns, rows in
            // A table that is a row range of larger buffers (rows 5 ..< 5 + rows of rows + 9).
            ConformanceCase(op: "embed", parameters: "w\(bits)g\(group), \(rows)×\(columns), rows 5… of \(rows + 9)", maxNMSE: 1e-12) { b in
                let table = try b.quantized(bits: bits, groupSize: group, rows: rows + 9, columns: columns).rows(5 ..< 5 + rows)
                let ids = (0..<5).map { _ in Int32(b.random.next() % UInt64(rows)) }
                return .embed(table: table, tokens: try b.integers(ids), output: try b.output(ids.count, columns))
            }
        }
    }

    static var rmsNorm: [ConformanceCase] {
        [(1, 576), (7, 77), (3, 1536)].flatMap { rows, columns in
            [false, true].map { inPlace in
                ConformanceCase(op: "rms_norm", parameters: "\(rows)×\(columns)\(inPlace ? ", in place" : "")", maxNMSE: 1e-11) { b in
                    let weight = try b.input(1, columns, range: 0.5...1.5)
                    let out = try b.output(rows, columns, initialRange: -10...10)
                    let input = inPlace ? out : try b.input(rows, columns, range: -10...10)
                    return .rmsNorm(input: input, weight: weight, epsilon: 1e-5, output: out)
                }
            }
        }
    }

    static var matmul: [ConformanceCase] {
        let shapes = [(1, 576, 192), (1, 1536, 65), (7, 200, 37), (33, 128, 130), (40, 200, 70), (1, 80, 9), (5, 576, 64)]
        // Groups of 96 (three packs, not a power of two) on a few shapes: no kernel may assume groups of 2^n packs.
        let oddGroupShapes = [(1, 576, 192), (1, 200, 37), (7, 200, 37), (33, 128, 130)]
        return [3, 4, 8].flatMap { bits in
            [(32, shapes), (64, shapes), (128, shapes), (96, oddGroupShapes)].flatMap { group, shapes in
                shapes.map { tokens, k, n in
                    ConformanceCase(op: "matmul", parameters: "w\(bits)g\(group), T=\(tokens) K=\(k) N=\(n)", maxNMSE: 1e-10) { b in
                        let w = try b.quantized(bits: bits, groupSize: group, rows: n, columns: k)
                        return .matmul(input: try b.input(tokens, k), weight: w, output: try b.output(tokens, n))
                    }
                }
            }
        } + matmulAccumulating + matmulOnRowRanges + matmulWideRangeInputs + matmulLongRows
    }

    /// Decode inputs whose magnitudes span six decades (a per-group scale must stay per group).
    static var matmulWideRangeInputs: [ConformanceCase] {
        [(1, 576, 64), (1, 1536, 33), (1, 200, 37)].flatMap { tokens, k, n in
            [(4, 32), (4, 128), (8, 32)].map { bits, group in
                ConformanceCase(op: "matmul", parameters: "w\(bits)g\(group), T=\(tokens) K=\(k) N=\(n), wide-range input",
                                maxNMSE: 1e-10) { b in
                    let w = try b.quantized(bits: bits, groupSize: group, rows: n, columns: k)
                    return .matmul(input: try b.wideRangeInput(tokens, k), weight: w, output: try b.output(tokens, n))
                }
            }
        }
    }

    /// Rows longer than the local-memory split of OpenCL's CPU decode (16384), which then falls back to float32.
    static var matmulLongRows: [ConformanceCase] {
        [(4, 32), (4, 64)].map { bits, group in
            ConformanceCase(op: "matmul", parameters: "w\(bits)g\(group), T=1 K=16416 N=5", maxNMSE: 1e-10) { b in
                let w = try b.quantized(bits: bits, groupSize: group, rows: 5, columns: 16416)
                return .matmul(input: try b.input(1, 16416), weight: w, output: try b.output(1, 5))
            }
        }
    }

    /// Weights that are a row range of larger buffers (fused projections): the range's first rows, its
    /// middle and its last rows, for decode, few and many tokens.
    static var matmulOnRowRanges: [ConformanceCase] {
        [(1, 576, 64), (1, 200, 37), (7, 200, 37), (33, 128, 70)].flatMap { tokens, k, n in
            [(4, 32, 0), (8, 32, 19), (3, 64, 40), (4, 128, 19)].map { bits, group, first in
                ConformanceCase(op: "matmul", parameters: "w\(bits)g\(group), T=\(tokens) K=\(k) N=\(n), rows \(first)… of \(n + 40)",
                                maxNMSE: 1e-10) { b in
                    let w = try b.quantized(bits: bits, groupSize: group, rows: n + 40, columns: k).rows(first ..< first + n)
                    return .matmul(input: try b.input(tokens, k), weight: w, output: try b.output(tokens, n))
                }
            }
        }
    }

    /// `output +=` the product (a residual connection): decode, few-token and many-token paths, every bit
    /// width, into a strided output that already holds values.
    static var matmulAccumulating: [ConformanceCase] {
        [(1, 576, 192), (1, 80, 9), (7, 200, 37), (33, 128, 130)].flatMap { tokens, k, n in
            [(4, 32), (8, 32), (3, 64), (4, 128)].map { bits, group in
                ConformanceCase(op: "matmul", parameters: "w\(bits)g\(group), T=\(tokens) K=\(k) N=\(n), accumulate", maxNMSE: 1e-10) { b in
                    let w = try b.quantized(bits: bits, groupSize: group, rows: n, columns: k)
                    let output = try b.output(tokens, n, rowStride: n + 3, initialRange: -4...4)
                    return .matmul(input: try b.input(tokens, k), weight: w, output: output, accumulate: true)
                }
            }
        }
    }

    static var rope: [ConformanceCase] {
        [(1, 3, 64, 64, 100000 as Float), (6, 2, 16, 8, 10000), (4, 9, 64, 64, 10000)].map { rows, heads, headDim, dims, base in
            ConformanceCase(op: "rope", parameters: "T=\(rows), \(heads)×\(headDim), dims \(dims), base \(Int(base))", maxNMSE: 1e-11) { b in
                let positions = (0..<rows).map { _ in Int32(b.random.next() % 8000) }
                let data = try b.output(rows, heads * headDim, initialRange: -2...2)
                return .rope(data: data, positions: try b.integers(positions), headDim: headDim, ropeDims: dims, base: base)
            }
        }
    }

    static var attention: [ConformanceCase] {
        // (queries, keys, heads, kvHeads, headDim, explicit key positions)
        let shapes = [(1, 17, 9, 3, 64, false), (5, 9, 4, 2, 16, false), (3, 300, 9, 3, 64, false),
                      (4, 12, 4, 4, 32, true), (2, 6, 2, 1, 8, true), (64, 64, 4, 2, 16, false),
                      // Four and eight query heads per key head, and three with channels not whole texels.
                      (3, 20, 8, 2, 32, false), (2, 10, 8, 1, 16, true), (2, 9, 6, 2, 18, false),
                      // Eight queries or more (a prefill; engines may then give each lane a query), not a
                      // whole number of eights, with sparse keys (the first query sees none) and unaligned heads.
                      (13, 40, 4, 2, 32, true), (11, 30, 6, 2, 18, false), (9, 300, 9, 3, 64, false)]
        return shapes.map { t, s, heads, kvHeads, headDim, explicit in
            ConformanceCase(op: "attention", parameters: "T=\(t) S=\(s) heads \(heads)/\(kvHeads) dim \(headDim)\(explicit ? " sparse keys" : "")",
                            maxNMSE: 1e-10) { b in
                let q = try b.input(t, heads * headDim, range: -2...2)
                let k = try b.input(s, kvHeads * headDim, range: -2...2)
                let v = try b.input(s, kvHeads * headDim)
                // Queries at the last t positions (causal prefill); explicit keys skip positions, as an
                // evicted cache does, and the first query sees none of them.
                let queryPositions = (0..<t).map { Int32(s - t + $0) }
                let keyPositions: TensorView? = explicit ? try b.integers((0..<s).map { Int32(2 * $0 + 1) }) : nil
                return .attention(query: q, keys: k, values: v,
                                  queryPositions: try b.integers(explicit ? (0..<t).map { Int32(3 * $0) } : queryPositions),
                                  keyPositions: keyPositions, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                  output: try b.output(t, heads * headDim))
            }
        }
    }

    static var elementwise: [ConformanceCase] {
        [(1, 1536), (7, 33)].flatMap { rows, columns in [
            ConformanceCase(op: "swiglu", parameters: "\(rows)×\(columns)", maxNMSE: 1e-12) { b in
                .swiGLU(gate: try b.input(rows, columns, range: -8...8), up: try b.input(rows, columns), output: try b.output(rows, columns))
            },
            ConformanceCase(op: "swiglu", parameters: "\(rows)×\(columns), in place", maxNMSE: 1e-12) { b in
                let gate = try b.output(rows, columns, initialRange: -8...8)
                return .swiGLU(gate: gate, up: try b.input(rows, columns), output: gate)
            },
            ConformanceCase(op: "add", parameters: "\(rows)×\(columns), in place", maxNMSE: 1e-14) { b in
                let a = try b.output(rows, columns, initialRange: -1...1)
                return .add(a, try b.input(rows, columns), output: a)
            },
            ConformanceCase(op: "copy", parameters: "\(rows)×\(columns) into a strided view", maxNMSE: 0) { b in
                .copy(source: try b.input(rows, columns), destination: try b.output(rows, columns, rowStride: columns + 5))
            },
        ] }
    }
}
