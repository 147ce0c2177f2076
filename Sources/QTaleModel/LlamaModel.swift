import QTaleCore

/// A LLaMA model bound to one engine: weights, KV cache and activation buffers, all on the engine.
///
/// `forward` is written in the spirit of llama2.c: one straight pass of ops per block. Only token ids
/// and positions go to the engine per call, and only the requested logits come back.
public final class LlamaModel {
    public let configuration: LlamaConfiguration
    public let weights: LlamaWeights
    public let engine: any ComputeEngine
    /// Positions the KV cache holds.
    public let contextLength: Int
    /// Most tokens one engine pass processes; longer prompts run in several passes.
    public let maxBatch: Int
    /// Tokens already in the KV cache (the next token's position).
    public private(set) var position = 0

    private let cache: KVCache
    private let activations: Activations

    public init(weights: LlamaWeights, engine: any ComputeEngine, contextLength: Int, maxBatch: Int = 128) throws {
        let c = weights.configuration
        guard contextLength >= 1 && contextLength <= c.contextLength else {
            throw QTaleError.invalidArgument("context length \(contextLength) must be between 1 and the model's \(c.contextLength)")
        }
        configuration = c
        self.weights = weights
        self.engine = engine
        self.contextLength = contextLength
        self.maxBatch = max(1, min(maxBatch, contextLength))
        cache = try KVCache(configuration: c, contextLength: contextLength, engine: engine)
        activations = try Activations(configuration: c, batch: self.maxBatch, engine: engine)
    }

    /// Forgets the cached context.
    public func reset() { position = 0 }

    /// Runs `tokens` at the next positions and returns the logits of the last one (`[vocabSize]`).
    /// Long inputs run in passes of ``maxBatch`` tokens.
    public func forward(_ tokens: [Int32]) throws -> [Float] {
        guard !tokens.isEmpty else { throw QTaleError.invalidArgument("forward needs at least one token") }
        var logits: [Float] = []
        var start = 0
        while start < tokens.count {
            let end = min(tokens.count, start + maxBatch)
            logits = try forwardPass(tokens[start..<end], wantLogits: end == tokens.count)
            start = end
        }
        return logits
    }

    /// Decodes one token into `logits` without allocating.
    public func forward(token: Int32, into logits: UnsafeMutableBufferPointer<Float>) throws {
        try forwardPass(CollectionOfOne(token), into: logits)
    }

    private func forwardPass<C: Collection>(_ tokens: C, wantLogits: Bool) throws -> [Float] where C.Element == Int32 {
        var logits = [Float](repeating: 0, count: wantLogits ? configuration.vocabSize : 0)
        try logits.withUnsafeMutableBufferPointer { try forwardPass(tokens, into: wantLogits ? $0 : nil) }
        return logits
    }

    private func forwardPass<C: Collection>(_ tokens: C, into logits: UnsafeMutableBufferPointer<Float>?) throws
    where C.Element == Int32 {
        let c = configuration, a = activations, e = engine
        let count = tokens.count
        guard position + count <= contextLength else {
            throw QTaleError.invalidArgument("the context is full: \(position) + \(count) tokens exceed the context length \(contextLength)")
        }
        for token in tokens where token < 0 || Int(token) >= c.vocabSize {
            throw QTaleError.invalidArgument("token id \(token) is outside the vocabulary (0..<\(c.vocabSize))")
        }
        try a.upload(tokens: tokens, firstPosition: position, engine: e)
        let ids = a.tokens.columns(0..<count), positions = a.positions.columns(0..<count)
        let x = a.x.rows(0..<count), normed = a.normed.rows(0..<count)
        let q = a.query.rows(0..<count), k = a.key.rows(0..<count), v = a.value.rows(0..<count)
        let attended = a.attended.rows(0..<count)
        let gate = a.gate.rows(0..<count), up = a.up.rows(0..<count)
        let visible = 0..<(position + count), fresh = position..<(position + count)

        try e.encode(.embed(table: weights.tokenEmbedding, tokens: ids, output: x))
        for (l, w) in weights.blocks.enumerated() {
            // Attention: x += Wo · attention(rope(Wq·n), cache ∪ rope(Wk·n), cache ∪ Wv·n), n = rmsNorm(x)
            try e.encode(.rmsNorm(input: x, weight: w.attentionNorm, epsilon: c.normEpsilon, output: normed))
            try e.encode(.matmul(input: normed, weight: w.query, output: q))
            try e.encode(.matmul(input: normed, weight: w.key, output: k))
            try e.encode(.matmul(input: normed, weight: w.value, output: v))
            try e.encode(.rope(data: q, positions: positions, headDim: c.headDim, ropeDims: c.ropeDims, base: c.ropeBase))
            try e.encode(.rope(data: k, positions: positions, headDim: c.headDim, ropeDims: c.ropeDims, base: c.ropeBase))
            try e.encode(.copy(source: k, destination: cache.keys[l].rows(fresh)))
            try e.encode(.copy(source: v, destination: cache.values[l].rows(fresh)))
            try e.encode(.attention(query: q, keys: cache.keys[l].rows(visible), values: cache.values[l].rows(visible),
                                    queryPositions: positions, keyPositions: nil,
                                    heads: c.nHeads, kvHeads: c.nKVHeads, headDim: c.headDim, output: attended))
            try e.encode(.matmul(input: attended, weight: w.attentionOutput, output: normed))
            try e.encode(.add(x, normed, output: x))
            // MLP: x += W_down · (silu(W_gate·n) ⊙ W_up·n), n = rmsNorm(x)
            try e.encode(.rmsNorm(input: x, weight: w.ffnNorm, epsilon: c.normEpsilon, output: normed))
            try e.encode(.matmul(input: normed, weight: w.gate, output: gate))
            try e.encode(.matmul(input: normed, weight: w.up, output: up))
            try e.encode(.swiGLU(gate: gate, up: up, output: gate))
            try e.encode(.matmul(input: gate, weight: w.down, output: normed))
            try e.encode(.add(x, normed, output: x))
        }
        position += count
        guard let logits else { return }
        // Only the last token's logits are needed for generation.
        let last = x.rows((count - 1)..<count), lastNormed = normed.rows(0..<1)
        try e.encode(.rmsNorm(input: last, weight: weights.outputNorm, epsilon: c.normEpsilon, output: lastNormed))
        try e.encode(.matmul(input: lastNormed, weight: weights.outputHead, output: a.logits))
        try e.read(a.logits.buffer, byteOffset: a.logits.byteOffset, into: UnsafeMutableRawBufferPointer(logits))
    }

    /// KV-cache bytes in use.
    public var kvCacheBytes: Int { cache.bytes(positions: position) }
}

/// Keys and values of every block: `[contextLength × nKVHeads*headDim]` float32 per block.
final class KVCache {
    let keys: [TensorView]
    let values: [TensorView]
    private let buffers: [DeviceBuffer]
    private let rowBytes: Int

    init(configuration c: LlamaConfiguration, contextLength: Int, engine: any ComputeEngine) throws {
        let kvDim = c.nKVHeads * c.headDim
        rowBytes = kvDim * 4
        let keyBuffers = try (0..<c.nLayers).map { _ in try engine.allocate(byteCount: contextLength * kvDim * 4) }
        let valueBuffers = try (0..<c.nLayers).map { _ in try engine.allocate(byteCount: contextLength * kvDim * 4) }
        keys = keyBuffers.map { $0.view(.float32, rows: contextLength, columns: kvDim) }
        values = valueBuffers.map { $0.view(.float32, rows: contextLength, columns: kvDim) }
        buffers = keyBuffers + valueBuffers
    }

    func bytes(positions: Int) -> Int { 2 * keys.count * positions * rowBytes }
}

/// Activation buffers sized for the largest pass, allocated once.
final class Activations {
    /// int32 `[1 × batch]`
    let tokens, positions: TensorView
    /// `[batch × dModel]`: the residual stream, and normed / projected scratch.
    let x, normed, attended: TensorView
    /// `[batch × nHeads*headDim]`, `[batch × nKVHeads*headDim]` ×2
    let query, key, value: TensorView
    /// `[batch × ffnDim]` ×2
    let gate, up: TensorView
    /// `[1 × vocabSize]`
    let logits: TensorView
    private let buffers: [DeviceBuffer]
    private var hostTokens: [Int32]

    init(configuration c: LlamaConfiguration, batch: Int, engine: any ComputeEngine) throws {
        var buffers: [DeviceBuffer] = []
        func make(_ type: ScalarType, _ rows: Int, _ columns: Int) throws -> TensorView {
            let b = try engine.allocate(byteCount: rows * columns * type.byteSize)
            buffers.append(b)
            return b.view(type, rows: rows, columns: columns)
        }
        tokens = try make(.int32, 1, batch)
        positions = try make(.int32, 1, batch)
        x = try make(.float32, batch, c.dModel)
        normed = try make(.float32, batch, c.dModel)
        attended = try make(.float32, batch, c.nHeads * c.headDim)
        query = try make(.float32, batch, c.nHeads * c.headDim)
        key = try make(.float32, batch, c.nKVHeads * c.headDim)
        value = try make(.float32, batch, c.nKVHeads * c.headDim)
        gate = try make(.float32, batch, c.ffnDim)
        up = try make(.float32, batch, c.ffnDim)
        logits = try make(.float32, 1, c.vocabSize)
        self.buffers = buffers
        hostTokens = [Int32](repeating: 0, count: 2 * batch)
    }

    /// Writes token ids and their positions (the only per-pass upload).
    func upload<C: Collection>(tokens ids: C, firstPosition: Int, engine: any ComputeEngine) throws where C.Element == Int32 {
        let n = ids.count
        for (i, id) in ids.enumerated() {
            hostTokens[i] = id
            hostTokens[n + i] = Int32(firstPosition + i)
        }
        try hostTokens.withUnsafeBytes { raw in
            try engine.write(UnsafeRawBufferPointer(rebasing: raw[0 ..< 4 * n]), to: tokens.buffer, byteOffset: tokens.byteOffset)
            try engine.write(UnsafeRawBufferPointer(rebasing: raw[4 * n ..< 8 * n]), to: positions.buffer, byteOffset: positions.byteOffset)
        }
    }
}
