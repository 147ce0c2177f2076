import QTaleCore

/// A LLaMA model bound to one engine: weights, KV cache and activation buffers, all on the engine.
///
/// `forward` is written in the spirit of llama2.c: one straight pass of ops per block. Only token ids
/// and positions go to the engine per pass, and only the requested logits come back. With routers,
/// prefill reads each routed block's router logits back, because the host compacts the rows that
/// execute; decode lets the engine decide (``routerDecisions``) and reads the decisions once per token.
///
/// **Token-adaptive execution** (method.md §1): per block, the ``ExecutionPolicy`` picks the tokens that
/// execute it. A skipped token's hidden state passes through unchanged and it writes no K/V for that
/// block, so each block's cache holds only the tokens that executed it, with their positions. When some
/// but not all tokens of a pass execute a block, their rows are gathered, the block runs on the compacted
/// batch, and the rows are scattered back.
public final class LlamaModel {
    public let configuration: LlamaConfiguration
    public let weights: LlamaWeights
    public let engine: any ComputeEngine
    /// Positions the KV cache holds.
    public let contextLength: Int
    /// Most tokens one engine pass processes; longer prompts run in several passes.
    public let maxBatch: Int
    /// Tokens already processed (the next token's position).
    public private(set) var position = 0
    public let policy: ExecutionPolicy
    /// What execution saved so far (since the last ``reset()``).
    public private(set) var telemetry: ExecutionTelemetry
    /// Record the per-token execution map in ``telemetry`` (costs a string per token).
    public var recordsExecutionMap = false
    /// Where routed decode decides (prefill always decides on the host). Defaults to the engine's
    /// preference (``ComputeEngine/prefersDevicePredication``).
    public var routerDecisions: RouterDecisionSite

    private let cache: KVCache
    private let activations: Activations
    private let routers: RouterWeights?
    private let costs: BlockCosts
    /// Host scratch: indices of the tokens that execute the current block, and router logits.
    private var selection: [Int32]
    private var routerLogits: [Float]
    private var passMap: [[UInt8]] = []
    /// Blocks whose decision for the current token the engine makes, and the decisions read back.
    private var awaitingDecision: [Bool]
    private var deviceDecisions: [Int32]

    public init(weights: LlamaWeights, engine: any ComputeEngine, contextLength: Int, maxBatch: Int = 128,
                policy: ExecutionPolicy = .dense) throws {
        let c = weights.configuration
        guard contextLength >= 1 && contextLength <= c.contextLength else {
            throw QTaleError.invalidArgument("context length \(contextLength) must be between 1 and the model's \(c.contextLength)")
        }
        configuration = c
        self.weights = weights
        self.engine = engine
        self.contextLength = contextLength
        self.maxBatch = max(1, min(maxBatch, contextLength))
        self.policy = try policy.validated(layers: c.nLayers)
        cache = try KVCache(configuration: c, contextLength: contextLength, engine: engine)
        if case let .routed(set, _) = policy {
            guard set.dModel == c.dModel else {
                throw QTaleError.invalidArgument("routers are for d_model \(set.dModel); the model has \(c.dModel)")
            }
            routers = try RouterWeights(set, engine: engine)
        } else {
            routers = nil
        }
        activations = try Activations(configuration: c, batch: self.maxBatch, routerWidth: routers?.hidden ?? 0, engine: engine)
        costs = BlockCosts(weights: weights, routers: routers)
        telemetry = ExecutionTelemetry(blocks: c.nLayers)
        selection = [Int32](repeating: 0, count: self.maxBatch)
        routerLogits = [Float](repeating: 0, count: 2 * self.maxBatch)
        routerDecisions = engine.prefersDevicePredication ? .device : .host
        awaitingDecision = [Bool](repeating: false, count: c.nLayers)
        deviceDecisions = [Int32](repeating: 0, count: c.nLayers)
    }

    /// Forgets the cached context and the telemetry.
    public func reset() {
        position = 0
        cache.reset()
        telemetry = ExecutionTelemetry(blocks: configuration.nLayers)
        for l in awaitingDecision.indices { awaitingDecision[l] = false }
    }

    /// Runs `tokens` at the next positions and returns the logits of the last one (`[vocabSize]`).
    /// Long inputs run in passes of ``maxBatch`` tokens.
    public func forward(_ tokens: [Int32]) throws -> [Float] {
        guard !tokens.isEmpty else { throw QTaleError.invalidArgument("forward needs at least one token") }
        var logits = [Float](repeating: 0, count: configuration.vocabSize)
        var start = 0
        while start < tokens.count {
            let end = min(tokens.count, start + maxBatch)
            try logits.withUnsafeMutableBufferPointer { try forwardPass(tokens[start..<end], into: end == tokens.count ? $0 : nil) }
            start = end
        }
        return logits
    }

    /// Decodes one token into `logits` without allocating.
    public func forward(token: Int32, into logits: UnsafeMutableBufferPointer<Float>) throws {
        try forwardPass(CollectionOfOne(token), into: logits)
    }

    /// Runs `tokens` at the next positions and returns the logits of every one of them,
    /// `[tokens.count × vocabSize]` row-major: row `i` predicts the token after `tokens[i]`.
    /// For scoring (perplexity, multiple-choice log-likelihoods, training), not for generation.
    public func forwardAllLogits(_ tokens: [Int32]) throws -> [Float] {
        guard !tokens.isEmpty else { throw QTaleError.invalidArgument("forward needs at least one token") }
        let vocabulary = configuration.vocabSize
        var logits = [Float](repeating: 0, count: tokens.count * vocabulary)
        var start = 0
        try logits.withUnsafeMutableBufferPointer { all in
            while start < tokens.count {
                let end = min(tokens.count, start + maxBatch)
                let rows = UnsafeMutableBufferPointer(rebasing: all[start * vocabulary ..< end * vocabulary])
                try forwardPass(tokens[start..<end], into: rows, allRows: true)
                start = end
            }
        }
        return logits
    }

    /// Where the context stands: the position and every block's KV-cache fill. Scoring several
    /// continuations of one shared prefix prefills the prefix once, marks, and rewinds after each.
    public struct ContextMark: Sendable {
        fileprivate let position: Int
        fileprivate let cache: KVCache.Mark
    }

    /// The current context, to return to with ``rewind(to:)``.
    public func mark() -> ContextMark { ContextMark(position: position, cache: cache.mark()) }

    /// Forgets every token processed after `mark` was taken; the tokens before it stay cached.
    public func rewind(to mark: ContextMark) throws {
        guard mark.position <= position else {
            throw QTaleError.invalidArgument("cannot rewind to position \(mark.position): the context holds only \(position) tokens (the mark is from a later or another context)")
        }
        position = mark.position
        cache.rewind(to: mark.cache)
    }

    /// One engine pass over `tokens`. `logits` receives the last token's logits, or with `allRows` every
    /// token's (`[count × vocabSize]`, computed in chunks that fit the logits buffer).
    private func forwardPass<C: Collection>(_ tokens: C, into logits: UnsafeMutableBufferPointer<Float>?,
                                            allRows: Bool = false) throws
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
        let positions = a.positions.columns(0..<count), x = a.x.rows(0..<count)
        if recordsExecutionMap { passMap = Array(repeating: [UInt8](repeating: 0x30, count: c.nLayers), count: count) }

        try e.encode(weights.tokenEmbedding.lookup(tokens: a.tokens.columns(0..<count), output: x))
        for l in 0..<c.nLayers {
            if count == 1, let (router, threshold) = deviceDecidedRouter(block: l) {
                try runDeviceDecided(l, router: router, threshold: threshold, x: x, positions: positions)
                continue
            }
            let executing = try selectTokens(block: l, count: count, x: x)
            if recordsExecutionMap { for i in 0..<executing { passMap[Int(selection[i])][l] = 0x31 } }
            if executing == 0 { continue }
            let slots = try cache.append(block: l, count: executing, allExecutedSoFar: executing == count,
                                         position: position, engine: e)
            chargeBlock(l, tokens: executing, firstSlot: slots.slots.lowerBound)
            if executing == count {
                try runBlock(l, x: x, positions: positions, slots: slots, weights: weights.blocks[l])
            } else {
                // Compact the executing rows, run the block on them, scatter them back; the other rows pass through.
                let indices = a.indices.columns(0..<executing)
                try selection.withUnsafeBytes {
                    try e.write(UnsafeRawBufferPointer(rebasing: $0[0 ..< 4 * executing]), to: indices.buffer, byteOffset: indices.byteOffset)
                }
                let compact = a.compact.rows(0..<executing), compactPositions = a.compactPositions.columns(0..<executing)
                try e.encode(.gatherRows(source: x, indices: indices, output: compact))
                // Positions are one int32 each: gather them as rows of a one-column view.
                try e.encode(.gatherRows(source: positions.asColumn, indices: indices, output: compactPositions.asColumn))
                try runBlock(l, x: compact, positions: compactPositions, slots: slots, weights: weights.blocks[l])
                try e.encode(.scatterRows(source: compact, indices: indices, output: x))
            }
        }
        position += count
        telemetry.tokens += count
        telemetry.denseFLOPs += Double(count * c.nLayers) * costs.linearFLOPsPerToken
        // Dense attention: the token at position p scores and mixes p + 1 keys in every block.
        let keysAttended = Double(count) * Double(position - count) + Double(count * (count + 1) / 2)
        telemetry.denseFLOPs += Double(4 * c.nHeads * c.headDim * c.nLayers) * keysAttended
        telemetry.denseWeightBytes += c.nLayers * costs.blockWeightBytes + costs.headWeightBytes
        telemetry.actualWeightBytes += costs.headWeightBytes
        telemetry.denseKVCacheBytes = cache.bytesPerEntry * c.nLayers * position
        if let logits {
            // Generation needs only the last token's logits; scoring needs all, a chunk of rows at a time.
            let rows = allRows ? 0..<count : (count - 1)..<count
            var first = rows.lowerBound
            while first < rows.upperBound {
                let n = min(rows.upperBound - first, a.logits.rows)
                let normed = a.normed.rows(0..<n), out = a.logits.rows(0..<n)
                try e.encode(.rmsNorm(input: x.rows(first ..< first + n), weight: weights.outputNorm, epsilon: c.normEpsilon, output: normed))
                try e.encode(weights.outputHead.apply(to: normed, output: out))
                let destination = UnsafeMutableBufferPointer(rebasing: logits[(first - rows.lowerBound) * c.vocabSize ..< (first - rows.lowerBound + n) * c.vocabSize])
                try e.read(out.buffer, byteOffset: out.byteOffset, into: UnsafeMutableRawBufferPointer(destination))
                first += n
            }
        }
        try settleDeviceDecisions()
        telemetry.kvCacheBytes = cache.bytesHeld
        if recordsExecutionMap { telemetry.map += passMap.map { String(decoding: $0, as: UTF8.self) } }
    }

    /// Counts a block that `tokens` pass rows execute, their K/V going to slots from `firstSlot` on.
    private func chargeBlock(_ l: Int, tokens: Int, firstSlot: Int) {
        let c = configuration
        telemetry.executedPerBlock[l] += tokens
        telemetry.actualFLOPs += Double(tokens) * costs.linearFLOPsPerToken
        telemetry.actualWeightBytes += costs.blockWeightBytes
        // Each new entry attends to the entries before it and itself (causal).
        let keysAttended = Double(tokens) * Double(firstSlot) + Double(tokens * (tokens + 1) / 2)
        telemetry.actualFLOPs += Double(4 * c.nHeads * c.headDim) * keysAttended
    }

    /// Counts one router scoring `tokens` rows.
    private func chargeRouter(tokens: Int) {
        telemetry.actualFLOPs += Double(tokens) * costs.routerFLOPsPerToken
        telemetry.routerFLOPs += Double(tokens) * costs.routerFLOPsPerToken
        telemetry.actualWeightBytes += costs.routerWeightBytes
        telemetry.routerWeightBytes += costs.routerWeightBytes
    }

    // MARK: Decisions on the engine (decode)

    /// The router and θ when the engine decides block `l` for the next token: routed decode with
    /// ``routerDecisions`` `.device`, past the always-on blocks and positions.
    private func deviceDecidedRouter(block l: Int) -> (RouterWeights.Block, Float)? {
        guard routerDecisions == .device, case let .routed(_, threshold) = policy,
              l >= policy.alwaysOn.blocks, position >= policy.alwaysOn.positions,
              let router = routers?.blocks[l] else { return nil }
        return (router, threshold)
    }

    /// Scores the router, turns its logits into a flag on the engine, and encodes block `l`
    /// predicated on it. The token's K/V slot is reserved now and given back by
    /// ``settleDeviceDecisions()`` if the token skipped. Key positions are spelled out from the
    /// first such block on, since the host cannot know yet whether slots still equal positions.
    private func runDeviceDecided(_ l: Int, router: RouterWeights.Block, threshold: Float, x: TensorView, positions: TensorView) throws {
        let a = activations, e = engine
        let logits = try encodeRouterLogits(router, x: x, count: 1)
        let flag = a.decisions.columns(l ..< l + 1)
        try e.encode(.routerDecision(logits: logits, threshold: threshold, decisions: flag))
        chargeRouter(tokens: 1)
        let slots = try cache.append(block: l, count: 1, allExecutedSoFar: false, position: position, engine: e)
        try e.encodePredicated(on: flag) {
            try runBlock(l, x: x, positions: positions, slots: slots, weights: weights.blocks[l])
        }
        awaitingDecision[l] = true
    }

    /// Reads the decisions the engine made this pass (one read, after the logits) and accounts for
    /// them: telemetry for the blocks that ran, a returned K/V slot for those that did not.
    private func settleDeviceDecisions() throws {
        guard awaitingDecision.contains(true) else { return }
        let flags = activations.decisions
        try deviceDecisions.withUnsafeMutableBytes { try engine.read(flags.buffer, byteOffset: flags.byteOffset, into: $0) }
        for l in awaitingDecision.indices where awaitingDecision[l] {
            awaitingDecision[l] = false
            if deviceDecisions[l] != 0 {
                chargeBlock(l, tokens: 1, firstSlot: cache.counts[l] - 1)
                if recordsExecutionMap { passMap[0][l] = 0x31 }
            } else {
                cache.retractLast(block: l)
            }
        }
    }

    /// Fills `selection[0..<n]` with the pass rows that execute block `l` and returns `n`.
    private func selectTokens(block l: Int, count: Int, x: TensorView) throws -> Int {
        let (alwaysOnBlocks, alwaysOnPositions) = policy.alwaysOn
        var n = 0
        func choose(_ body: (Int) -> Bool) {
            for t in 0..<count where body(t) {
                selection[n] = Int32(t)
                n += 1
            }
        }
        switch policy {
        case .dense:
            choose { _ in true }
        case let .skipBlocks(blocks):
            if !blocks.contains(l) { choose { _ in true } }
        case let .forcedRatio(ratio, routerConfiguration):
            choose { t in
                l < alwaysOnBlocks || position + t < alwaysOnPositions
                    || ExecutionPolicy.forcedExecutes(position: position + t, block: l, ratio: ratio,
                                                      configuration: routerConfiguration, layers: configuration.nLayers)
            }
        case let .routed(_, threshold):
            guard l >= alwaysOnBlocks, let routers, let router = routers.blocks[l] else {
                choose { _ in true }
                return n
            }
            let out = try encodeRouterLogits(router, x: x, count: count)
            try routerLogits.withUnsafeMutableBytes {
                try engine.read(out.buffer, byteOffset: out.byteOffset, into: UnsafeMutableRawBufferPointer(rebasing: $0[0 ..< 8 * count]))
            }
            chargeRouter(tokens: count)
            let margin = RouterDecisionRule.margin(threshold: threshold)
            choose { t in
                position + t < alwaysOnPositions
                    || RouterDecisionRule.executes(skip: routerLogits[2 * t], execute: routerLogits[2 * t + 1], margin: margin)
            }
        }
        return n
    }

    /// Encodes the router on the pass rows; returns the view that will hold their logits `[count × 2]` (skip, execute).
    private func encodeRouterLogits(_ r: RouterWeights.Block, x: TensorView, count: Int) throws -> TensorView {
        let a = activations, e = engine
        let hidden = a.routerHidden.rows(0..<count), out = a.routerLogits.rows(0..<count)
        try e.encode(.linear(input: x, weight: r.w1, bias: r.b1, output: hidden))
        try e.encode(.rmsNorm(input: hidden, weight: r.norm, epsilon: configuration.normEpsilon, output: hidden))
        try e.encode(.silu(input: hidden, output: hidden))
        try e.encode(.linear(input: hidden, weight: r.w2, bias: r.b2, output: out))
        return out
    }

    /// One decoder block on `x` (`[M × dModel]`, updated in place) for tokens at `positions` (`[1 × M]`),
    /// writing their K/V into the cache `slots` reserved for them.
    /// `w` is the block's weights (a quantizer's candidate during calibration); `observe`, when set,
    /// receives intermediate activations (it costs a synchronising read each, so inference passes nil).
    /// `stopAfter` ends the block right after that probe point (calibration that needs only part of it).
    private func runBlock(_ l: Int, x: TensorView, positions: TensorView, slots: KVCache.Slots,
                          weights w: LlamaBlockWeights, observe: BlockObserver? = nil, stopAfter: BlockProbePoint? = nil) throws {
        let c = configuration, a = activations, e = engine
        func reached(_ point: BlockProbePoint, _ view: TensorView) throws -> Bool {
            try observe?(point, view)
            return point == stopAfter
        }
        let m = x.rows
        let normed = a.normed.rows(0..<m), q = a.query.rows(0..<m)
        let queriesAndKeys = a.queriesAndKeys.rows(0..<m), keysAndValues = a.keysAndValues.rows(0..<m)
        let attended = a.attended.rows(0..<m), gate = a.gate.rows(0..<m), up = a.up.rows(0..<m)
        let (fresh, keyPositions) = slots
        let visible = 0..<fresh.upperBound
        // `x += weight · input`. Quantized weights accumulate into `x` in the matmul itself (one launch
        // fewer per residual); observed or truncated blocks keep the projection in `scratch` for the probe.
        func addProjection(_ weight: LinearWeight, of input: TensorView, through scratch: TensorView,
                           probe: BlockProbePoint) throws -> Bool {
            if case let .quantized(matrix) = weight, observe == nil, stopAfter == nil {
                try e.encode(.matmul(input: input, weight: matrix, output: x, accumulate: true))
                return false
            }
            try e.encode(weight.apply(to: input, output: scratch))
            if try reached(probe, scratch) { return true }
            try e.encode(.add(x, scratch, output: x))
            return false
        }

        // Attention: x += Wo · attention(rope(Wq·n), cache ∪ rope(Wk·n), cache ∪ Wv·n), n = rmsNorm(x)
        try e.encode(.rmsNorm(input: x, weight: w.attentionNorm, epsilon: c.normEpsilon, output: normed))
        if try reached(.attentionInput, normed) { return }
        if let queryKeyValue = w.queryKeyValue {
            // Query, key and value stacked: one matmul fills all three (adjacent columns of one buffer).
            try e.encode(.matmul(input: normed, weight: queryKeyValue, output: a.projections.rows(0..<m)))
        } else {
            try e.encode(w.query.apply(to: normed, output: q))
            try e.encode(w.key.apply(to: normed, output: a.key.rows(0..<m)))
            try e.encode(w.value.apply(to: normed, output: a.value.rows(0..<m)))
        }
        // One RoPE over the query and key heads together, and one copy of keys and values into the
        // cache (the cache keeps a slot's key and value side by side): two launches fewer per block.
        try e.encode(.rope(data: queriesAndKeys, positions: positions, headDim: c.headDim, ropeDims: c.ropeDims, base: c.ropeBase))
        try e.encode(.copy(source: keysAndValues, destination: cache.entries[l].rows(fresh)))
        if let keyPositions { try e.encode(.copy(source: positions, destination: keyPositions.columns(fresh))) }
        try e.encode(.attention(query: q, keys: cache.keys[l].rows(visible), values: cache.values[l].rows(visible),
                                queryPositions: positions, keyPositions: keyPositions?.columns(visible),
                                heads: c.nHeads, kvHeads: c.nKVHeads, headDim: c.headDim, output: attended))
        if try reached(.attended, attended) { return }
        if try addProjection(w.attentionOutput, of: attended, through: normed, probe: .attentionOutput) { return }
        // MLP: x += W_down · (silu(W_gate·n) ⊙ W_up·n), n = rmsNorm(x)
        try e.encode(.rmsNorm(input: x, weight: w.ffnNorm, epsilon: c.normEpsilon, output: normed))
        if try reached(.mlpInput, normed) { return }
        if let gateUp = w.gateUp {
            // Gate and up stacked: one matmul fills both halves of `gatesAndUps`.
            let both = a.gatesAndUps.rows(0..<m)
            try e.encode(.matmul(input: normed, weight: gateUp, output: both))
            try e.encode(.swiGLU(gate: both.columns(0 ..< c.ffnDim), up: both.columns(c.ffnDim ..< 2 * c.ffnDim), output: gate))
        } else {
            try e.encode(w.gate.apply(to: normed, output: gate))
            try e.encode(w.up.apply(to: normed, output: up))
            try e.encode(.swiGLU(gate: gate, up: up, output: gate))
        }
        if try reached(.mlpHidden, gate) { return }
        if try addProjection(w.down, of: gate, through: normed, probe: .mlpOutput) { return }
    }

    /// KV-cache bytes in use.
    public var kvCacheBytes: Int { cache.bytesHeld }

    // MARK: Probing single blocks (calibration for quantizers, training)

    /// The token embeddings of `tokens` (`[count × dModel]`), the input of block 0.
    public func embed(_ tokens: [Int32]) throws -> [Float] {
        let c = configuration, a = activations
        guard !tokens.isEmpty, tokens.count <= maxBatch else {
            throw QTaleError.invalidArgument("embed takes 1 to \(maxBatch) tokens, got \(tokens.count)")
        }
        for token in tokens where token < 0 || Int(token) >= c.vocabSize {
            throw QTaleError.invalidArgument("token id \(token) is outside the vocabulary (0..<\(c.vocabSize))")
        }
        try a.upload(tokens: tokens, firstPosition: 0, engine: engine)
        let x = a.x.rows(0..<tokens.count)
        try engine.encode(weights.tokenEmbedding.lookup(tokens: a.tokens.columns(0..<tokens.count), output: x))
        return try engine.readFloats(x)
    }

    /// Runs block `l` with weights `w` (the model's own, or a quantizer's candidate) on one sequence of
    /// hidden states `hidden` (`[T × dModel]`, positions `0 ..< T`, causal, nothing cached before),
    /// calling `observe` with each intermediate, and returns the block's output (`[T × dModel]`).
    /// With `stopAfter`, the block ends after that point and the result is empty (a search that only
    /// needs the attention sublayer's output then skips the MLP).
    /// Clears the session's context. `T` must fit ``maxBatch``.
    public func probeBlock(_ l: Int, weights w: LlamaBlockWeights, hidden: [Float],
                           stopAfter: BlockProbePoint? = nil, observe: BlockObserver? = nil) throws -> [Float] {
        let c = configuration, a = activations
        guard l >= 0 && l < c.nLayers else { throw QTaleError.invalidArgument("block \(l) is outside 0..<\(c.nLayers)") }
        guard hidden.count % c.dModel == 0 else {
            throw QTaleError.invalidArgument("probeBlock: \(hidden.count) values are not rows of d_model \(c.dModel)")
        }
        let count = hidden.count / c.dModel
        guard count >= 1 && count <= maxBatch else {
            throw QTaleError.invalidArgument("probeBlock takes 1 to \(maxBatch) tokens, got \(count)")
        }
        reset()
        try a.upload(tokens: repeatElement(Int32(0), count: count), firstPosition: 0, engine: engine)
        let x = a.x.rows(0..<count)
        try engine.write(hidden, to: x)
        let slots = try cache.append(block: l, count: count, allExecutedSoFar: true, position: 0, engine: engine)
        try runBlock(l, x: x, positions: a.positions.columns(0..<count), slots: slots, weights: w,
                     observe: observe, stopAfter: stopAfter)
        reset()
        return stopAfter == nil ? try engine.readFloats(x) : []
    }
}

/// Points inside a decoder block where ``LlamaModel/probeBlock(_:weights:hidden:observe:)`` reports
/// activations: the inputs of each linear and the outputs of the two sublayers.
public enum BlockProbePoint: Sendable, CaseIterable {
    /// `rmsNorm(x)`, the input of q, k and v. `[T × dModel]`
    case attentionInput
    /// Attention's output, the input of o. `[T × nHeads·headDim]`
    case attended
    /// o's output, added to the residual. `[T × dModel]`
    case attentionOutput
    /// `rmsNorm(x)` after attention, the input of gate and up. `[T × dModel]`
    case mlpInput
    /// `silu(gate) ⊙ up`, the input of down. `[T × ffnDim]`
    case mlpHidden
    /// down's output, added to the residual. `[T × dModel]`
    case mlpOutput
}

/// Receives a probe point and the engine view holding it (read it with `engine.readFloats`).
public typealias BlockObserver = (BlockProbePoint, TensorView) throws -> Void

extension TensorView {
    /// A `[1 × n]` contiguous vector seen as `[n × 1]`, so row ops treat each element as a row.
    var asColumn: TensorView {
        TensorView(buffer: buffer, type: type, rows: columns, columns: 1, rowStride: 1, byteOffset: byteOffset)
    }
}

/// Keys and values of every block, `[contextLength × nKVHeads*headDim]` float32 each, holding only the
/// tokens that executed the block. While every token so far has executed a block, its slot `s` holds
/// position `s` and attention needs no key positions; after the first skip, the block's key positions
/// (int32 `[1 × contextLength]`) are kept on the engine, written by `copy` ops from the pass positions.
final class KVCache {
    /// Per block `[contextLength × 2·kvDim]`: slot s holds its key, then its value, so one copy writes
    /// both; `keys` and `values` are the two column ranges.
    let entries: [TensorView]
    let keys: [TensorView]
    let values: [TensorView]
    let keyPositions: [TensorView]
    /// Entries per block.
    private(set) var counts: [Int]
    /// Whether slot `s` of the block holds position `s` for every entry so far.
    private var identity: [Bool]
    private let buffers: [DeviceBuffer]
    let bytesPerEntry: Int

    init(configuration c: LlamaConfiguration, contextLength: Int, engine: any ComputeEngine) throws {
        let kvDim = c.nKVHeads * c.headDim
        bytesPerEntry = 2 * kvDim * 4
        var buffers: [DeviceBuffer] = []
        func make(_ type: ScalarType, rows: Int, columns: Int) throws -> TensorView {
            let b = try engine.allocate(byteCount: rows * columns * type.byteSize)
            buffers.append(b)
            return b.view(type, rows: rows, columns: columns)
        }
        entries = try (0..<c.nLayers).map { _ in try make(.float32, rows: contextLength, columns: 2 * kvDim) }
        keys = entries.map { $0.columns(0 ..< kvDim) }
        values = entries.map { $0.columns(kvDim ..< 2 * kvDim) }
        keyPositions = try (0..<c.nLayers).map { _ in try make(.int32, rows: 1, columns: contextLength) }
        counts = [Int](repeating: 0, count: c.nLayers)
        identity = [Bool](repeating: true, count: c.nLayers)
        self.buffers = buffers
    }

    func reset() {
        for l in counts.indices { counts[l] = 0; identity[l] = true }
    }

    struct Mark: Sendable {
        let counts: [Int]
        let identity: [Bool]
    }

    func mark() -> Mark { Mark(counts: counts, identity: identity) }

    /// Drops the entries appended after `mark`. A block that was still in slot-equals-position order at
    /// the mark is again: the slots it keeps were written in that order.
    func rewind(to mark: Mark) {
        counts = mark.counts
        identity = mark.identity
    }

    var bytesHeld: Int { counts.reduce(0, +) * bytesPerEntry }

    /// Gives back block `l`'s last slot: its token turned out to skip the block (a decision made on the engine).
    func retractLast(block l: Int) {
        precondition(counts[l] > 0, "no slot to give back")
        counts[l] -= 1
    }

    /// Cache slots for a pass's entries, and the key positions attention must use (nil while slots equal positions).
    typealias Slots = (slots: Range<Int>, keyPositions: TensorView?)

    /// Reserves `count` slots in block `l`. `allExecutedSoFar`: every token of this pass executes the block.
    func append(block l: Int, count: Int, allExecutedSoFar: Bool, position: Int, engine: any ComputeEngine) throws -> Slots {
        let start = counts[l]
        counts[l] += count
        if identity[l] && allExecutedSoFar && start == position { return (start ..< counts[l], nil) }
        if identity[l] {
            // First skip in this block: spell out the positions of the slots written so far.
            identity[l] = false
            if start > 0 {
                let existing = (0..<Int32(start)).map { $0 }
                try engine.write(existing, to: keyPositions[l].columns(0..<start))
            }
        }
        return (start ..< counts[l], keyPositions[l])
    }
}

/// Activation buffers sized for the largest pass, allocated once.
final class Activations {
    /// int32 `[1 × batch]`: token ids, positions, executing-row indices and their positions.
    let tokens, positions, indices, compactPositions: TensorView
    /// `[batch × dModel]`: the residual stream, its compacted rows, and normed / projected scratch.
    let x, compact, normed, attended: TensorView
    /// `[batch × nHeads*headDim]`, `[batch × nKVHeads*headDim]` ×2: column ranges of one buffer, in
    /// that order, which a stacked projection fills in one matmul; `queriesAndKeys` spans query and key,
    /// so one RoPE rotates both, and `keysAndValues` key and value, so one copy moves both into the
    /// KV cache.
    let projections, query, key, value, queriesAndKeys, keysAndValues: TensorView
    /// `[batch × ffnDim]` ×2, and `[batch × 2·ffnDim]` for stacked gate and up projections.
    let gate, up, gatesAndUps: TensorView
    /// `[batch × routerHidden]`, `[batch × 2]`
    let routerHidden, routerLogits: TensorView
    /// int32 `[1 × nLayers]`: the engine's decision per block for the token being decoded.
    let decisions: TensorView
    /// `[logitRows × vocabSize]`: one row for generation, up to 32 when scoring every position.
    let logits: TensorView
    private let buffers: [DeviceBuffer]
    private var hostTokens: [Int32]
    static let logitRows = 32

    init(configuration c: LlamaConfiguration, batch: Int, routerWidth: Int, engine: any ComputeEngine) throws {
        var buffers: [DeviceBuffer] = []
        func make(_ type: ScalarType, _ rows: Int, _ columns: Int) throws -> TensorView {
            let b = try engine.allocate(byteCount: max(1, rows * columns) * type.byteSize)
            buffers.append(b)
            return b.view(type, rows: rows, columns: columns)
        }
        tokens = try make(.int32, 1, batch)
        positions = try make(.int32, 1, batch)
        indices = try make(.int32, 1, batch)
        compactPositions = try make(.int32, 1, batch)
        x = try make(.float32, batch, c.dModel)
        compact = try make(.float32, batch, c.dModel)
        normed = try make(.float32, batch, c.dModel)
        attended = try make(.float32, batch, c.nHeads * c.headDim)
        let queryColumns = c.nHeads * c.headDim, keyColumns = c.nKVHeads * c.headDim
        projections = try make(.float32, batch, queryColumns + 2 * keyColumns)
        query = projections.columns(0 ..< queryColumns)
        key = projections.columns(queryColumns ..< queryColumns + keyColumns)
        value = projections.columns(queryColumns + keyColumns ..< queryColumns + 2 * keyColumns)
        queriesAndKeys = projections.columns(0 ..< queryColumns + keyColumns)
        keysAndValues = projections.columns(queryColumns ..< queryColumns + 2 * keyColumns)
        gate = try make(.float32, batch, c.ffnDim)
        up = try make(.float32, batch, c.ffnDim)
        gatesAndUps = try make(.float32, batch, 2 * c.ffnDim)
        routerHidden = try make(.float32, batch, max(1, routerWidth))
        routerLogits = try make(.float32, batch, 2)
        decisions = try make(.int32, 1, c.nLayers)
        // Scoring reads logits for every position in chunks of these many rows.
        logits = try make(.float32, min(batch, Self.logitRows), c.vocabSize)
        self.buffers = buffers
        hostTokens = [Int32](repeating: 0, count: 2 * batch)
    }

    /// Writes token ids and their positions (the only per-pass upload of a dense model).
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

/// Routers uploaded to the engine: `[hidden × dModel]`, `[1 × hidden]` ×2, `[2 × hidden]`, `[1 × 2]` per block.
final class RouterWeights {
    struct Block { let w1, b1, norm, w2, b2: TensorView }
    let blocks: [Block?]
    let hidden: Int
    private let buffers: [DeviceBuffer]

    init(_ set: RouterSet, engine: any ComputeEngine) throws {
        var buffers: [DeviceBuffer] = []
        func upload(_ values: [Float], rows: Int, columns: Int) throws -> TensorView {
            let b = try engine.makeBuffer(values)
            buffers.append(b)
            return b.view(.float32, rows: rows, columns: columns)
        }
        let h = set.configuration.hidden
        hidden = h
        blocks = try set.routers.map { r in
            guard let r else { return nil }
            return Block(w1: try upload(r.w1, rows: h, columns: set.dModel), b1: try upload(r.b1, rows: 1, columns: h),
                         norm: try upload(r.norm, rows: 1, columns: h), w2: try upload(r.w2, rows: 2, columns: h),
                         b2: try upload(r.b2, rows: 1, columns: 2))
        }
        self.buffers = buffers
    }
}

/// Work and bytes of one block, the head and a router, for telemetry.
struct BlockCosts {
    let linearFLOPsPerToken: Double
    let blockWeightBytes: Int
    let headWeightBytes: Int
    let routerFLOPsPerToken: Double
    let routerWeightBytes: Int

    init(weights: LlamaWeights, routers: RouterWeights?) {
        let b = weights.blocks[0]
        linearFLOPsPerToken = b.linearFLOPsPerToken
        blockWeightBytes = b.linearByteCount
        headWeightBytes = weights.outputHead.byteCount
        let h = routers?.hidden ?? 0, d = weights.configuration.dModel
        routerFLOPsPerToken = 2 * Double(h * d + 2 * h)
        routerWeightBytes = 4 * (h * d + 4 * h + 2)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
