import QTaleCore

/// One decoder block's weights on an engine.
public struct LlamaBlockWeights: Sendable {
    /// `[1 × dModel]`
    public var attentionNorm: TensorView
    /// `[nHeads*headDim × dModel]`, `[nKVHeads*headDim × dModel]` (×2), `[dModel × nHeads*headDim]`.
    /// Linears are replaced through ``subscript(_:)``, which keeps the stacked pairs consistent.
    public internal(set) var query, key, value, attentionOutput: LinearWeight
    /// `[1 × dModel]`
    public var ffnNorm: TensorView
    /// `[ffnDim × dModel]` (×2), `[dModel × ffnDim]`
    public internal(set) var gate, up, down: LinearWeight
    /// Query over key over value, and gate over up, stacked in one set of buffers when they are
    /// quantized alike: each set reads the same input, so one matmul computes it (three launches fewer
    /// per block), and `query`, `key`, `value`, `gate` and `up` are row ranges of these. Nil when a set
    /// is not stacked, or once one of its weights has been replaced.
    public internal(set) var queryKeyValue: QuantizedMatrix? = nil
    public internal(set) var gateUp: QuantizedMatrix? = nil

    public subscript(kind: LinearKind) -> LinearWeight {
        get {
            switch kind {
            case .query: query
            case .key: key
            case .value: value
            case .attentionOutput: attentionOutput
            case .gate: gate
            case .up: up
            case .down: down
            }
        }
        set {
            switch kind {
            case .query: query = newValue; queryKeyValue = nil
            case .key: key = newValue; queryKeyValue = nil
            case .value: value = newValue; queryKeyValue = nil
            case .attentionOutput: attentionOutput = newValue
            case .gate: gate = newValue; gateUp = nil
            case .up: up = newValue; gateUp = nil
            case .down: down = newValue
            }
        }
    }

    /// Bytes one token reads from the block's linears.
    public var linearByteCount: Int { LinearKind.allCases.reduce(0) { $0 + self[$1].byteCount } }
    /// Multiply-adds per token in the block's linears, times two.
    public var linearFLOPsPerToken: Double { 2 * Double(LinearKind.allCases.reduce(0) { $0 + self[$1].rows * self[$1].columns }) }
}

/// Uploads host tensors to an engine and keeps the buffers alive as long as the views into them.
public final class EngineTensors {
    public let engine: any ComputeEngine
    private var buffers: [DeviceBuffer] = []

    public init(engine: any ComputeEngine) { self.engine = engine }

    /// A `[1 × n]` or `[rows × columns]` float tensor.
    public func upload(floats values: [Float], rows: Int, columns: Int) throws -> TensorView {
        precondition(values.count == rows * columns, "upload: shape mismatch")
        let buffer = try engine.makeBuffer(values)
        buffers.append(buffer)
        return buffer.view(.float32, rows: rows, columns: columns)
    }

    /// Linear layers that read the same input. Packed alike, they are stacked in one set of buffers
    /// (`stacked`, the first on top) and returned as its row ranges; otherwise uploaded apart.
    public func upload(stacking tensors: [HostTensor]) throws -> (parts: [LinearWeight], stacked: QuantizedMatrix?) {
        var matrices: [PackedMatrix] = []
        for tensor in tensors { if case let .packed(m) = tensor { matrices.append(m) } }
        if matrices.count == tensors.count, var all = matrices.first {
            var stackable = true
            for m in matrices.dropFirst() {
                guard let both = try PackedMatrix.stacking(all, m) else { stackable = false; break }
                all = both
            }
            if stackable {
                let stacked = try engine.upload(all, keepAlive: &buffers)
                var first = 0
                let parts = matrices.map { m -> LinearWeight in
                    defer { first += m.rows }
                    return .quantized(stacked.rows(first ..< first + m.rows))
                }
                return (parts, stacked)
            }
        }
        return (try tensors.map { try upload($0) }, nil)
    }

    /// A linear layer or embedding table: packed stays packed, floats stay dense.
    public func upload(_ tensor: HostTensor) throws -> LinearWeight {
        switch tensor {
        case let .packed(m): return .quantized(try engine.upload(m, keepAlive: &buffers))
        case let .float(values, rows, columns): return .dense(try upload(floats: values, rows: rows, columns: columns))
        }
    }

    /// A norm weight `[1 × n]`.
    public func uploadVector(_ tensor: HostTensor, role: TensorRole) throws -> TensorView {
        guard case let .float(values, rows, columns) = tensor else {
            throw QTaleError.invalidModel("norm weight '\(role)' is quantized; norms must be float")
        }
        return try upload(floats: values, rows: rows, columns: columns)
    }
}

/// All weights of a LLaMA model, uploaded once to an engine. Quantized tensors stay in the packed
/// layout (GGUF Q4/Q8 convert losslessly); no float copy of a quantized linear layer is kept.
public final class LlamaWeights {
    public let configuration: LlamaConfiguration
    /// `[vocabSize × dModel]`
    public let tokenEmbedding: LinearWeight
    public let blocks: [LlamaBlockWeights]
    /// `[1 × dModel]`
    public let outputNorm: TensorView
    /// `[vocabSize × dModel]`; the token embedding when tied.
    public let outputHead: LinearWeight
    /// Keeps the engine buffers alive.
    private let storage: EngineTensors

    public init(source: any ModelSource, engine: any ComputeEngine) throws {
        let c = source.configuration
        configuration = c
        let storage = EngineTensors(engine: engine)
        func load(_ role: TensorRole) throws -> HostTensor {
            try ModelSources.checkShape(try source.tensor(role), role, c, in: source.path)
        }
        func vector(_ role: TensorRole) throws -> TensorView { try storage.uploadVector(try load(role), role: role) }
        tokenEmbedding = try storage.upload(load(.tokenEmbedding))
        blocks = try (0..<c.nLayers).map { l in
            func linear(_ kind: LinearKind) throws -> LinearWeight { try storage.upload(load(.linear(block: l, kind))) }
            func stack(_ kinds: LinearKind...) throws -> (parts: [LinearWeight], stacked: QuantizedMatrix?) {
                try storage.upload(stacking: kinds.map { try load(.linear(block: l, $0)) })
            }
            let queryKeyValue = try stack(.query, .key, .value), gateUp = try stack(.gate, .up)
            return LlamaBlockWeights(
                attentionNorm: try vector(.attentionNorm(block: l)),
                query: queryKeyValue.parts[0], key: queryKeyValue.parts[1], value: queryKeyValue.parts[2],
                attentionOutput: try linear(.attentionOutput),
                ffnNorm: try vector(.ffnNorm(block: l)),
                gate: gateUp.parts[0], up: gateUp.parts[1], down: try linear(.down),
                queryKeyValue: queryKeyValue.stacked, gateUp: gateUp.stacked)
        }
        outputNorm = try vector(.outputNorm)
        outputHead = c.tiedOutput ? tokenEmbedding : try storage.upload(load(.outputHead))
        self.storage = storage
    }

    /// Bytes of weights read for one token of decode (every linear once, plus one embedding row).
    public var bytesPerToken: Int {
        blocks.reduce(0) { $0 + $1.linearByteCount } + outputHead.byteCount + tokenEmbedding.byteCount / max(1, tokenEmbedding.rows)
    }
}
