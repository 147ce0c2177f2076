import QTaleCore
import QTaleGGUF

/// One decoder block's weights on an engine.
public struct LlamaBlockWeights: Sendable {
    /// `[1 × dModel]`
    public var attentionNorm: TensorView
    /// `[nHeads*headDim × dModel]`, `[nKVHeads*headDim × dModel]` (×2), `[dModel × nHeads*headDim]`
    public var query, key, value, attentionOutput: QuantizedMatrix
    /// `[1 × dModel]`
    public var ffnNorm: TensorView
    /// `[ffnDim × dModel]` (×2), `[dModel × ffnDim]`
    public var gate, up, down: QuantizedMatrix
}

/// All weights of a LLaMA model, uploaded once to an engine. GGUF quantized tensors are converted
/// losslessly to the project's packed layout on the way; no float copy of a linear layer is kept.
public final class LlamaWeights {
    public let configuration: LlamaConfiguration
    /// `[vocabSize × dModel]`
    public let tokenEmbedding: QuantizedMatrix
    public let blocks: [LlamaBlockWeights]
    /// `[1 × dModel]`
    public let outputNorm: TensorView
    /// `[vocabSize × dModel]`; the token embedding when tied.
    public let outputHead: QuantizedMatrix
    /// Keeps the engine buffers alive.
    private let buffers: [DeviceBuffer]

    public init(gguf: GGUFFile, configuration c: LlamaConfiguration, engine: any ComputeEngine) throws {
        configuration = c
        var buffers: [DeviceBuffer] = []
        func info(_ name: String) throws -> GGUFTensorInfo {
            guard let t = gguf.tensor(named: name) else {
                throw QTaleError.invalidModel("'\(gguf.file.path)' has no tensor '\(name)'")
            }
            return t
        }
        func matrix(_ name: String, rows: Int, columns: Int) throws -> QuantizedMatrix {
            let t = try info(name)
            guard t.dimensions.count == 2, t.rows == rows, t.columns == columns else {
                throw QTaleError.invalidModel("tensor '\(name)' has shape \(t.dimensions), expected [\(columns), \(rows)]")
            }
            guard [.q4_0, .q4_1, .q8_0].contains(t.type) else {
                throw QTaleError.invalidModel("tensor '\(name)' is \(t.type); qtale runs linear layers from Q4_0, Q4_1 or Q8_0 (quantize the model first)")
            }
            return try engine.upload(gguf.packedMatrix(t), keepAlive: &buffers)
        }
        func vector(_ name: String) throws -> TensorView {
            let t = try info(name)
            guard t.elementCount == c.dModel, t.dimensions.count == 1 else {
                throw QTaleError.invalidModel("tensor '\(name)' has shape \(t.dimensions), expected [\(c.dModel)]")
            }
            let buffer = try engine.makeBuffer(try gguf.floats(t))
            buffers.append(buffer)
            return buffer.view(.float32, rows: 1, columns: c.dModel)
        }
        let qDim = c.nHeads * c.headDim, kvDim = c.nKVHeads * c.headDim
        tokenEmbedding = try matrix("token_embd.weight", rows: c.vocabSize, columns: c.dModel)
        blocks = try (0..<c.nLayers).map { l in
            let p = "blk.\(l)."
            return LlamaBlockWeights(
                attentionNorm: try vector(p + "attn_norm.weight"),
                query: try matrix(p + "attn_q.weight", rows: qDim, columns: c.dModel),
                key: try matrix(p + "attn_k.weight", rows: kvDim, columns: c.dModel),
                value: try matrix(p + "attn_v.weight", rows: kvDim, columns: c.dModel),
                attentionOutput: try matrix(p + "attn_output.weight", rows: c.dModel, columns: qDim),
                ffnNorm: try vector(p + "ffn_norm.weight"),
                gate: try matrix(p + "ffn_gate.weight", rows: c.ffnDim, columns: c.dModel),
                up: try matrix(p + "ffn_up.weight", rows: c.ffnDim, columns: c.dModel),
                down: try matrix(p + "ffn_down.weight", rows: c.dModel, columns: c.ffnDim))
        }
        outputNorm = try vector("output_norm.weight")
        outputHead = c.tiedOutput ? tokenEmbedding : try matrix("output.weight", rows: c.vocabSize, columns: c.dModel)
        self.buffers = buffers
    }

    /// Bytes of weights read for one token of decode (every linear once, plus one embedding row).
    public var bytesPerToken: Int {
        let perBlock = blocks.first.map {
            [$0.query, $0.key, $0.value, $0.attentionOutput, $0.gate, $0.up, $0.down].reduce(0) { $0 + $1.byteCount }
        } ?? 0
        return perBlock * blocks.count + outputHead.byteCount + tokenEmbedding.byteCount / max(1, tokenEmbedding.rows)
    }
}
