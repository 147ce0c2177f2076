import Foundation
import QTaleCore
import QTaleGGUF
import QTaleTokenizer

/// The seven linear layers of a LLaMA decoder block; the ones post-training quantization rewrites.
public enum LinearKind: String, CaseIterable, Sendable, Codable {
    case query, key, value, attentionOutput, gate, up, down

    /// The Hugging Face module path inside `model.layers.<i>.`, also used by qtale's own files.
    public var moduleName: String {
        switch self {
        case .query: "self_attn.q_proj"
        case .key: "self_attn.k_proj"
        case .value: "self_attn.v_proj"
        case .attentionOutput: "self_attn.o_proj"
        case .gate: "mlp.gate_proj"
        case .up: "mlp.up_proj"
        case .down: "mlp.down_proj"
        }
    }

    /// The GGUF tensor name inside `blk.<i>.`, without `.weight`.
    public var ggufName: String {
        switch self {
        case .query: "attn_q"
        case .key: "attn_k"
        case .value: "attn_v"
        case .attentionOutput: "attn_output"
        case .gate: "ffn_gate"
        case .up: "ffn_up"
        case .down: "ffn_down"
        }
    }

    /// `[rows, columns]` of this linear in a model of configuration `c`.
    public func shape(in c: LlamaConfiguration) -> (rows: Int, columns: Int) {
        let qDim = c.nHeads * c.headDim, kvDim = c.nKVHeads * c.headDim
        switch self {
        case .query: return (qDim, c.dModel)
        case .key, .value: return (kvDim, c.dModel)
        case .attentionOutput: return (c.dModel, qDim)
        case .gate, .up: return (c.ffnDim, c.dModel)
        case .down: return (c.dModel, c.ffnDim)
        }
    }
}

/// Every tensor a LLaMA model is made of, independent of how a file names it.
public enum TensorRole: Hashable, Sendable, CustomStringConvertible {
    case tokenEmbedding, outputNorm, outputHead
    case attentionNorm(block: Int), ffnNorm(block: Int)
    case linear(block: Int, LinearKind)

    /// The Hugging Face name (qtale's own files use it too), without the `.weight` / `.qweight` suffix.
    public var moduleName: String {
        switch self {
        case .tokenEmbedding: "model.embed_tokens"
        case .outputNorm: "model.norm"
        case .outputHead: "lm_head"
        case let .attentionNorm(l): "model.layers.\(l).input_layernorm"
        case let .ffnNorm(l): "model.layers.\(l).post_attention_layernorm"
        case let .linear(l, kind): "model.layers.\(l).\(kind.moduleName)"
        }
    }

    /// The GGUF tensor name.
    public var ggufName: String {
        switch self {
        case .tokenEmbedding: "token_embd.weight"
        case .outputNorm: "output_norm.weight"
        case .outputHead: "output.weight"
        case let .attentionNorm(l): "blk.\(l).attn_norm.weight"
        case let .ffnNorm(l): "blk.\(l).ffn_norm.weight"
        case let .linear(l, kind): "blk.\(l).\(kind.ggufName).weight"
        }
    }

    public var description: String { moduleName }

    /// Every role of a model with `c`'s shape, in file order.
    public static func all(in c: LlamaConfiguration) -> [TensorRole] {
        var roles: [TensorRole] = [.tokenEmbedding]
        for l in 0..<c.nLayers {
            roles.append(.attentionNorm(block: l))
            roles += LinearKind.allCases.map { .linear(block: l, $0) }
            roles.append(.ffnNorm(block: l))
        }
        roles.append(.outputNorm)
        if !c.tiedOutput { roles.append(.outputHead) }
        return roles
    }
}

/// A tensor in host memory as a model file holds it: float values or the packed quantized layout.
public enum HostTensor: Sendable {
    /// Row-major `[rows × columns]` float32 (vectors have one row).
    case float([Float], rows: Int, columns: Int)
    case packed(PackedMatrix)

    public var rows: Int {
        switch self {
        case let .float(_, rows, _): rows
        case let .packed(m): m.rows
        }
    }

    public var columns: Int {
        switch self {
        case let .float(_, _, columns): columns
        case let .packed(m): m.columns
        }
    }

    /// The values as float32, dequantizing packed weights (for quantizers, not inference).
    public func floats() -> [Float] {
        switch self {
        case let .float(values, _, _): values
        case let .packed(m): m.dequantized()
        }
    }
}

/// Where a model's configuration, tokenizer and tensors come from. Implementations: GGUF files,
/// qtale's own safetensors files (``QTaleModelFile``) and Hugging Face directories. Model loading,
/// quantization and training read models only through this protocol.
public protocol ModelSource: AnyObject {
    /// The file or directory.
    var path: String { get }
    var configuration: LlamaConfiguration { get }
    func vocabulary() throws -> TokenizerVocabulary
    /// The tensor for `role`, with its shape checked against the configuration.
    func tensor(_ role: TensorRole) throws -> HostTensor
    /// Routers stored with the model, if any.
    func routers() throws -> RouterSet?
    /// One line describing the file's format, for `qtale info` and result tables.
    var formatDescription: String { get }
}

public enum ModelSources {
    /// Opens `path` by what it is: a directory is a Hugging Face checkpoint, a file starting with
    /// `GGUF` or named `*.gguf` is GGUF (so a damaged one gets GGUF's diagnosis), anything else is
    /// read as qtale's safetensors format.
    public static func open(_ path: String) throws -> any ModelSource {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw QTaleError.invalidModel("model file '\(path)' does not exist")
        }
        if isDirectory.boolValue { return try HuggingFaceModelSource(directory: path) }
        let file = try MappedFile(path: path)
        if path.lowercased().hasSuffix(".gguf") || file.bytes.prefix(4).elementsEqual("GGUF".utf8) {
            return try GGUFModelSource(gguf: GGUFFile(file: file))
        }
        return try QTaleModelFile(file: file)
    }

    /// Checks that `tensor` has the shape `role` needs in `c`, naming both when it does not.
    static func checkShape(_ tensor: HostTensor, _ role: TensorRole, _ c: LlamaConfiguration, in path: String) throws -> HostTensor {
        let expected: (Int, Int)
        switch role {
        case .tokenEmbedding, .outputHead: expected = (c.vocabSize, c.dModel)
        case .outputNorm, .attentionNorm, .ffnNorm: expected = (1, c.dModel)
        case let .linear(_, kind): expected = kind.shape(in: c)
        }
        guard tensor.rows == expected.0, tensor.columns == expected.1 else {
            throw QTaleError.invalidModel("'\(path)': tensor '\(role)' is \(tensor.rows)×\(tensor.columns), expected \(expected.0)×\(expected.1)")
        }
        return tensor
    }
}
