import Foundation
import QTaleCore
import QTaleGGUF
import QTaleTokenizer

/// Tiny LLaMA models with random weights, written as real GGUF files, for fast tests of the whole
/// load → tokenize → forward → sample path without a download.
public enum SyntheticModel {
    public struct Shape {
        public var layers = 2
        public var dModel = 64
        public var ffn = 96
        public var heads = 4
        public var kvHeads = 2
        public var contextLength = 256
        public var tiedOutput = true
        public init() {}
    }

    /// A byte-level vocabulary: three ChatML control tokens, the 256 byte tokens and a few merges.
    public static func vocabulary() -> (tokens: [String], types: [Int32], merges: [String]) {
        var tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        var types: [Int32] = [3, 3, 3]
        for b in 0...255 {
            tokens.append(ByteLevel.encode([UInt8(b)]))
            types.append(1)
        }
        let merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r"]
        for m in merges {
            tokens.append(m.replacingOccurrences(of: " ", with: ""))
            types.append(1)
        }
        return (tokens, types, merges)
    }

    /// The GGUF writer for a model of `shape` with weights drawn from `seed`.
    public static func writer(shape: Shape = Shape(), seed: UInt64 = 1) -> GGUFWriter {
        var rng = TestRandom(seed: seed)
        let vocab = vocabulary()
        let headDim = shape.dModel / shape.heads
        var w = GGUFWriter()
        w.add("general.architecture", .string("llama"))
        w.add("general.name", .string("synthetic"))
        w.add("llama.block_count", .uint32(UInt32(shape.layers)))
        w.add("llama.context_length", .uint32(UInt32(shape.contextLength)))
        w.add("llama.embedding_length", .uint32(UInt32(shape.dModel)))
        w.add("llama.feed_forward_length", .uint32(UInt32(shape.ffn)))
        w.add("llama.attention.head_count", .uint32(UInt32(shape.heads)))
        w.add("llama.attention.head_count_kv", .uint32(UInt32(shape.kvHeads)))
        w.add("llama.rope.freq_base", .float32(10000))
        w.add("llama.rope.dimension_count", .uint32(UInt32(headDim)))
        w.add("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        w.add("llama.vocab_size", .uint32(UInt32(vocab.tokens.count)))
        w.add("tokenizer.ggml.model", .string("gpt2"))
        w.add("tokenizer.ggml.pre", .string("smollm"))
        w.add("tokenizer.ggml.tokens", .strings(vocab.tokens))
        w.add("tokenizer.ggml.token_type", .int32s(vocab.types))
        w.add("tokenizer.ggml.merges", .strings(vocab.merges))
        w.add("tokenizer.ggml.bos_token_id", .uint32(1))
        w.add("tokenizer.ggml.eos_token_id", .uint32(2))
        w.add("tokenizer.ggml.add_bos_token", .bool(false))

        func matrix(_ name: String, rows: Int, columns: Int, type: GGUFTensorType = .q4_1) {
            let scale = 1 / Float(columns).squareRoot()
            w.addQuantized(name, type: type, rows: rows, columns: columns,
                           values: (0..<rows * columns).map { _ in rng.normal() * scale * 1.5 })
        }
        func norm(_ name: String) {
            w.add(name, dimensions: [shape.dModel], floats: (0..<shape.dModel).map { _ in 1 + 0.1 * rng.normal() })
        }
        let qDim = shape.heads * headDim, kvDim = shape.kvHeads * headDim
        w.addQuantized("token_embd.weight", type: .q8_0, rows: vocab.tokens.count, columns: shape.dModel,
                       values: (0..<vocab.tokens.count * shape.dModel).map { _ in rng.normal() })
        for l in 0..<shape.layers {
            norm("blk.\(l).attn_norm.weight")
            matrix("blk.\(l).attn_q.weight", rows: qDim, columns: shape.dModel)
            matrix("blk.\(l).attn_k.weight", rows: kvDim, columns: shape.dModel)
            matrix("blk.\(l).attn_v.weight", rows: kvDim, columns: shape.dModel)
            matrix("blk.\(l).attn_output.weight", rows: shape.dModel, columns: qDim)
            norm("blk.\(l).ffn_norm.weight")
            matrix("blk.\(l).ffn_gate.weight", rows: shape.ffn, columns: shape.dModel)
            matrix("blk.\(l).ffn_up.weight", rows: shape.ffn, columns: shape.dModel)
            matrix("blk.\(l).ffn_down.weight", rows: shape.dModel, columns: shape.ffn)
        }
        norm("output_norm.weight")
        if !shape.tiedOutput {
            matrix("output.weight", rows: vocab.tokens.count, columns: shape.dModel, type: .q8_0)
        }
        return w
    }

    /// Writes a synthetic model into a fresh temporary file and returns its path.
    public static func write(shape: Shape = Shape(), seed: UInt64 = 1) throws -> String {
        let path = TemporaryFiles.path("synthetic-\(seed).gguf")
        try writer(shape: shape, seed: seed).write(to: path)
        return path
    }
}

/// A per-process temporary folder for test files.
public enum TemporaryFiles {
    public static let directory: String = {
        let dir = NSTemporaryDirectory() + "qtale-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }()

    public static func path(_ name: String) -> String { directory + "/" + name }
}

/// Seeded random numbers for tests: ``SeededGenerator`` plus uniform and normal draws (Box-Muller).
public struct TestRandom: RandomNumberGenerator {
    private var generator: SeededGenerator
    public init(seed: UInt64) { generator = SeededGenerator(seed: seed) }
    public mutating func next() -> UInt64 { generator.next() }
    /// Uniform in [lower, upper).
    public mutating func uniform(_ lower: Float = -1, _ upper: Float = 1) -> Float {
        lower + (upper - lower) * Float(Double(next() >> 11) / Double(1 << 53))
    }
    public mutating func normal() -> Float {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-12), u2 = Double(next() >> 11) / Double(1 << 53)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
    }
}
