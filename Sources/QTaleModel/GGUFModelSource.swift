import QTaleCore
import QTaleGGUF
import QTaleTokenizer

/// A GGUF file as a ``ModelSource``. Q4_0, Q4_1 and Q8_0 tensors come out packed, losslessly;
/// F32, F16 and BF16 tensors come out as floats.
public final class GGUFModelSource: ModelSource {
    public let gguf: GGUFFile
    public let configuration: LlamaConfiguration

    public init(gguf: GGUFFile) throws {
        self.gguf = gguf
        configuration = try LlamaConfiguration(gguf: gguf)
    }

    public var path: String { gguf.file.path }
    public var formatDescription: String { "GGUF v\(gguf.version)" }

    public func vocabulary() throws -> TokenizerVocabulary { try TokenizerVocabulary(gguf: gguf) }

    public func tensor(_ role: TensorRole) throws -> HostTensor {
        let name = role.ggufName
        guard let t = gguf.tensor(named: name) else { throw QTaleError.invalidModel("'\(path)' has no tensor '\(name)'") }
        let c = configuration
        let expected: [Int]
        switch role {
        case .tokenEmbedding, .outputHead: expected = [c.dModel, c.vocabSize]
        case .outputNorm, .attentionNorm, .ffnNorm: expected = [c.dModel]
        case let .linear(_, kind): let s = kind.shape(in: c); expected = [s.columns, s.rows]
        }
        guard t.dimensions == expected else {
            throw QTaleError.invalidModel("tensor '\(name)' has shape \(t.dimensions), expected \(expected)")
        }
        switch t.type {
        case .q4_0, .q4_1, .q8_0: return .packed(try gguf.packedMatrix(t))
        case .f32, .f16, .bf16: return .float(try gguf.floats(t), rows: t.rows, columns: t.columns)
        }
    }

    /// GGUF files carry no qtale routers.
    public func routers() throws -> RouterSet? { nil }
}
