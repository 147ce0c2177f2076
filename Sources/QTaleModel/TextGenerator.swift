import Dispatch
import QTaleCore
import QTaleTokenizer

/// What a generation run did and how fast. Written by `--stats-json`.
public struct GenerationStatistics: Codable, Sendable {
    public var model: String
    public var backend: String
    public var device: String
    public var promptTokens: Int
    public var generatedTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    /// Prompt tokens per second of prefill.
    public var prefillTokensPerSecond: Double
    /// Tokens per second of one-token decode passes (the first generated token comes from prefill).
    public var decodeTokensPerSecond: Double
    /// Weight bytes one decode pass reads.
    public var weightBytesPerToken: Int
    public var kvCacheBytes: Int
    /// "length", "eos" or "context".
    public var stopReason: String
    public var sampling: SamplingParameters
    /// Layer-skip telemetry (execution ratios, FLOPs and bytes against dense, KV bytes).
    public var execution: ExecutionTelemetry
}

/// Prompt in, tokens out: prefill, then sample and decode one token at a time.
public struct TextGenerator {
    public let model: LoadedModel
    public let session: LlamaModel

    public init(model: LoadedModel, session: LlamaModel) {
        self.model = model
        self.session = session
    }

    /// Generates up to `maxTokens` tokens after `prompt`, calling `onText` with each complete UTF-8 piece.
    public func generate(prompt: [Int32], maxTokens: Int, sampling: SamplingParameters, stopAtEndOfGeneration: Bool = true,
                         onToken: (Int32) -> Void = { _ in }, onText: (String) -> Void) throws -> GenerationStatistics {
        let vocabulary = model.configuration.vocabSize
        guard !prompt.isEmpty else { throw QTaleError.invalidArgument("the prompt is empty") }
        guard maxTokens >= 0 else { throw QTaleError.invalidArgument("--max-tokens must be ≥ 0, got \(maxTokens)") }
        guard prompt.count <= session.contextLength else {
            throw QTaleError.invalidArgument(
                "the prompt has \(prompt.count) tokens but the context holds \(session.contextLength) (raise --ctx, up to the model's \(model.configuration.contextLength), or shorten the prompt)")
        }
        session.reset()
        var sampler = Sampler(parameters: try sampling.validated(), vocabularySize: vocabulary)
        var decoder = StreamingTextDecoder(tokenizer: model.tokenizer)
        var logits = [Float](repeating: 0, count: vocabulary)
        let stops = model.tokenizer.endOfGenerationTokenIDs

        let prefillStart = DispatchTime.now().uptimeNanoseconds
        logits = try session.forward(prompt)
        let prefillSeconds = Double(DispatchTime.now().uptimeNanoseconds - prefillStart) / 1e9

        var generated = 0, decodePasses = 0
        var stopReason = "length"
        let decodeStart = DispatchTime.now().uptimeNanoseconds
        try logits.withUnsafeMutableBufferPointer { logits in
            while generated < maxTokens {
                let token = sampler.sample(UnsafeBufferPointer(logits))
                if stopAtEndOfGeneration && stops.contains(token) { stopReason = "eos"; break }
                generated += 1
                onToken(token)
                let text = decoder.append(token)
                if !text.isEmpty { onText(text) }
                if generated == maxTokens { break }
                if session.position >= session.contextLength { stopReason = "context"; break }
                try session.forward(token: token, into: logits)
                decodePasses += 1
            }
        }
        let decodeSeconds = Double(DispatchTime.now().uptimeNanoseconds - decodeStart) / 1e9
        let tail = decoder.flush()
        if !tail.isEmpty { onText(tail) }
        return GenerationStatistics(
            model: model.path, backend: model.engine.name, device: model.engine.deviceDescription,
            promptTokens: prompt.count, generatedTokens: generated,
            prefillSeconds: prefillSeconds, decodeSeconds: decodeSeconds,
            prefillTokensPerSecond: Double(prompt.count) / max(prefillSeconds, 1e-9),
            decodeTokensPerSecond: decodePasses == 0 ? 0 : Double(decodePasses) / max(decodeSeconds, 1e-9),
            weightBytesPerToken: model.weights.bytesPerToken, kvCacheBytes: session.kvCacheBytes,
            stopReason: stopReason, sampling: sampling, execution: session.telemetry)
    }
}
