import Dispatch
import QTaleCore

/// Times single ops on an engine at a model's real shapes and at one large matmul (4096 × 14336, the
/// LLaMA-3-8B MLP), reporting time, bytes moved (weights for matmuls) and arithmetic rate.
public enum KernelBenchmark {
    public struct Case {
        public let op: String
        public let shape: String
        /// Bytes one run must read or write (weights for matmul, activations otherwise).
        public let bytes: Int
        public let flops: Double
        let build: (inout CaseBuilder) throws -> Op
    }

    public struct Result: Encodable {
        public let engine: String
        public let op: String
        public let shape: String
        public let microseconds: Double
        public let gigabytesPerSecond: Double
        public let gigaflopsPerSecond: Double
        public let iterations: Int
    }

    /// Model dimensions the shapes come from.
    public struct Dimensions {
        public var dModel: Int, ffn: Int, heads: Int, kvHeads: Int, vocab: Int, bits: Int, groupSize: Int, headBits: Int
        public init(dModel: Int, ffn: Int, heads: Int, kvHeads: Int, vocab: Int, bits: Int = 4, groupSize: Int = 32, headBits: Int = 8) {
            (self.dModel, self.ffn, self.heads, self.kvHeads, self.vocab) = (dModel, ffn, heads, kvHeads, vocab)
            (self.bits, self.groupSize, self.headBits) = (bits, groupSize, headBits)
        }
        /// SmolLM2-135M with its Q4_1 linears and Q8_0 tied head.
        public static let smolLM2 = Dimensions(dModel: 576, ffn: 1536, heads: 9, kvHeads: 3, vocab: 49152)
    }

    public static func cases(for d: Dimensions, includeLarge: Bool = true) -> [Case] {
        let headDim = d.dModel / d.heads, kvDim = d.kvHeads * headDim
        var cases: [Case] = []
        func matmul(_ name: String, rows: Int, columns: Int, tokens: Int, bits: Int, group: Int) {
            let format = try! QuantizationFormat(bits: bits, groupSize: group)
            let weightBytes = rows * (format.codeBytesPerRow(columns: columns) + 4 * format.groupsPerRow(columns: columns))
            cases.append(Case(op: "matmul", shape: "\(name) w\(bits)g\(group) N=\(rows) K=\(columns) T=\(tokens)",
                              bytes: weightBytes, flops: 2 * Double(rows * columns * tokens)) { b in
                .matmul(input: try b.input(tokens, columns), weight: try b.quantized(bits: bits, groupSize: group, rows: rows, columns: columns),
                        output: try b.output(tokens, rows))
            })
        }
        for tokens in [1, 128] {
            matmul("q/o", rows: d.dModel, columns: d.dModel, tokens: tokens, bits: d.bits, group: d.groupSize)
            matmul("k/v", rows: kvDim, columns: d.dModel, tokens: tokens, bits: d.bits, group: d.groupSize)
            matmul("gate/up", rows: d.ffn, columns: d.dModel, tokens: tokens, bits: d.bits, group: d.groupSize)
            matmul("down", rows: d.dModel, columns: d.ffn, tokens: tokens, bits: d.bits, group: d.groupSize)
        }
        matmul("head", rows: d.vocab, columns: d.dModel, tokens: 1, bits: d.headBits, group: 32)
        if includeLarge {
            matmul("large", rows: 14336, columns: 4096, tokens: 1, bits: 4, group: 32)
            // g128: the group size of the AWQ and GPTQ checkpoints qtale imports and writes.
            matmul("large", rows: 14336, columns: 4096, tokens: 1, bits: 4, group: 128)
            matmul("large", rows: 14336, columns: 4096, tokens: 1, bits: 3, group: 64)
        }
        cases.append(Case(op: "rms_norm", shape: "T=1 C=\(d.dModel)", bytes: 12 * d.dModel, flops: 3 * Double(d.dModel)) { b in
            .rmsNorm(input: try b.input(1, d.dModel), weight: try b.input(1, d.dModel), epsilon: 1e-5, output: try b.output(1, d.dModel))
        })
        cases.append(Case(op: "rope", shape: "T=1 \(d.heads)×\(headDim)", bytes: 8 * d.dModel, flops: 6 * Double(d.dModel)) { b in
            .rope(data: try b.output(1, d.dModel, initialRange: -1...1), positions: try b.integers([77]), headDim: headDim,
                  ropeDims: headDim, base: 10000)
        })
        for keys in [128, 1024] {
            cases.append(Case(op: "attention", shape: "T=1 S=\(keys) heads \(d.heads)/\(d.kvHeads)", bytes: 2 * 4 * keys * kvDim,
                              flops: 4 * Double(keys * d.heads * headDim)) { b in
                .attention(query: try b.input(1, d.dModel), keys: try b.input(keys, kvDim), values: try b.input(keys, kvDim),
                           queryPositions: try b.integers([Int32(keys - 1)]), keyPositions: nil, heads: d.heads,
                           kvHeads: d.kvHeads, headDim: headDim, output: try b.output(1, d.dModel))
            })
        }
        cases.append(Case(op: "swiglu", shape: "T=1 C=\(d.ffn)", bytes: 12 * d.ffn, flops: 6 * Double(d.ffn)) { b in
            .swiGLU(gate: try b.input(1, d.ffn), up: try b.input(1, d.ffn), output: try b.output(1, d.ffn))
        })
        cases.append(Case(op: "add", shape: "T=1 C=\(d.dModel)", bytes: 12 * d.dModel, flops: Double(d.dModel)) { b in
            .add(try b.input(1, d.dModel), try b.input(1, d.dModel), output: try b.output(1, d.dModel))
        })
        return cases
    }

    /// Runs `testCase` repeatedly for about `seconds` (after a warm-up) and reports the mean time per run.
    public static func run(_ testCase: Case, on engine: any ComputeEngine, seconds: Double = 0.3) throws -> Result {
        var builder = CaseBuilder(engine: engine, seed: 1)
        let op = try testCase.build(&builder)
        try OpValidation.check(op)
        for _ in 0..<2 { try engine.encode(op) }
        try engine.synchronize()
        var iterations = 0, batch = 1
        let start = DispatchTime.now().uptimeNanoseconds
        var elapsed = 0.0
        while elapsed < seconds {
            for _ in 0..<batch { try engine.encode(op) }
            try engine.synchronize()
            iterations += batch
            elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            batch = min(batch * 2, 64)
        }
        let perRun = elapsed / Double(iterations)
        return Result(engine: engine.name, op: testCase.op, shape: testCase.shape, microseconds: perRun * 1e6,
                      gigabytesPerSecond: Double(testCase.bytes) / perRun / 1e9,
                      gigaflopsPerSecond: testCase.flops / perRun / 1e9, iterations: iterations)
    }
}
