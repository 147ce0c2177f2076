import Dispatch
import QTaleCore

/// End-to-end speed: prefill of a fixed prompt and greedy one-token decode, repeated.
///
/// Mirrors `bench/llamacpp_bench.py` (same prompt text, same token counts) so the two are comparable.
public struct GenerationBenchmark {
    public struct Result: Encodable, Sendable {
        public var engine: String
        public var device: String
        public var model: String
        public var threads: Int?
        public var promptTokens: Int
        public var decodeTokens: Int
        public var repeats: Int
        /// Measured execution ratio of the decode steps (1 for the dense model).
        public var executionRatio: Double
        public var prefillTokensPerSecond: [Double]
        public var decodeTokensPerSecond: [Double]
        public var prefillBest: Double { prefillTokensPerSecond.max() ?? 0 }
        public var decodeBest: Double { decodeTokensPerSecond.max() ?? 0 }
        public var prefillMedian: Double { Self.median(prefillTokensPerSecond) }
        public var decodeMedian: Double { Self.median(decodeTokensPerSecond) }
        /// Weight bytes one decode step reads, and the bandwidth that implies at the median decode speed.
        public var weightBytesPerToken: Int
        public var decodeWeightGBPerSecond: Double { Double(weightBytesPerToken) * decodeMedian / 1e9 }

        static func median(_ values: [Double]) -> Double {
            let s = values.sorted()
            return s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }

        enum CodingKeys: String, CodingKey {
            case engine, device, model, threads, promptTokens, decodeTokens, repeats, executionRatio
            case prefillTokensPerSecond, decodeTokensPerSecond, weightBytesPerToken
            case prefillBest, decodeBest, prefillMedian, decodeMedian, decodeWeightGBPerSecond
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(engine, forKey: .engine)
            try c.encode(device, forKey: .device)
            try c.encode(model, forKey: .model)
            try c.encodeIfPresent(threads, forKey: .threads)
            try c.encode(promptTokens, forKey: .promptTokens)
            try c.encode(decodeTokens, forKey: .decodeTokens)
            try c.encode(repeats, forKey: .repeats)
            try c.encode(executionRatio, forKey: .executionRatio)
            try c.encode(prefillTokensPerSecond, forKey: .prefillTokensPerSecond)
            try c.encode(decodeTokensPerSecond, forKey: .decodeTokensPerSecond)
            try c.encode(weightBytesPerToken, forKey: .weightBytesPerToken)
            try c.encode(prefillBest, forKey: .prefillBest)
            try c.encode(decodeBest, forKey: .decodeBest)
            try c.encode(prefillMedian, forKey: .prefillMedian)
            try c.encode(decodeMedian, forKey: .decodeMedian)
            try c.encode(decodeWeightGBPerSecond, forKey: .decodeWeightGBPerSecond)
        }
    }

    /// The text `bench/llamacpp_bench.py` repeats to build its prompt.
    public static let promptText = "The history of computing is a story of people, ideas and machines. "
        + "From the abacus to the transistor, each step made calculation cheaper. "

    public static func run(model: LoadedModel, threads: Int?, promptTokens: Int, decodeTokens: Int, repeats: Int,
                           policy: ExecutionPolicy = .dense, routerDecisions: RouterDecisionSite? = nil,
                           progress: (Int) -> Void = { _ in }) throws -> Result {
        guard promptTokens >= 1, decodeTokens >= 1, repeats >= 1 else {
            throw QTaleError.invalidArgument("benchmark token counts and repeats must be ≥ 1")
        }
        let pieces = model.tokenizer.encode(promptText, parseSpecial: false)
        let prompt = (0..<promptTokens).map { pieces[$0 % pieces.count] }
        let session = try model.makeSession(contextLength: min(model.configuration.contextLength, promptTokens + decodeTokens + 8),
                                            maxBatch: min(512, promptTokens), policy: policy)
        if let routerDecisions { session.routerDecisions = routerDecisions }
        var logits = [Float](repeating: 0, count: model.configuration.vocabSize)
        // Warm-up: page weights in and size the scratch space.
        _ = try session.forward(Array(prompt.prefix(16)))
        var prefill: [Double] = [], decode: [Double] = []
        var executionRatio = 1.0
        for r in 0..<repeats {
            session.reset()
            var start = DispatchTime.now().uptimeNanoseconds
            logits = try session.forward(prompt)
            prefill.append(Double(promptTokens) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9))
            let afterPrefill = session.telemetry
            try logits.withUnsafeMutableBufferPointer { logits in
                var token = Sampler.argmax(UnsafeBufferPointer(logits))
                start = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<decodeTokens {
                    try session.forward(token: token, into: logits)
                    token = Sampler.argmax(UnsafeBufferPointer(logits))
                }
            }
            decode.append(Double(decodeTokens) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9))
            let t = session.telemetry
            executionRatio = Double(t.executedPerBlock.reduce(0, +) - afterPrefill.executedPerBlock.reduce(0, +))
                / Double((t.tokens - afterPrefill.tokens) * t.blocks)
            progress(r + 1)
        }
        return Result(engine: model.engine.name, device: model.engine.deviceDescription, model: model.path, threads: threads,
                      promptTokens: promptTokens, decodeTokens: decodeTokens, repeats: repeats, executionRatio: executionRatio,
                      prefillTokensPerSecond: prefill, decodeTokensPerSecond: decode,
                      weightBytesPerToken: model.weights.bytesPerToken)
    }
}
