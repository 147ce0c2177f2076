import Dispatch
import Foundation
import QTaleCore

/// Perplexity of a model on a text, with a documented protocol:
///
/// - The whole text is tokenized once (no BOS token is added, as the text is a stream).
/// - It is cut into non-overlapping windows of `contextLength` tokens; a trailing part shorter than
///   a window is dropped. Each window is processed from an empty context.
/// - Within a window, every token after the first is scored by the log-probability the model gives
///   it after the window's preceding tokens (float64 log-softmax on the host).
/// - PPL = exp(mean negative log-likelihood over all scored tokens).
public struct PerplexityResult: Codable, Sendable {
    public var model: String
    public var backend: String
    public var text: String
    public var contextLength: Int
    public var windows: Int
    public var scoredTokens: Int
    public var negativeLogLikelihood: Double
    public var perplexity: Double
    public var seconds: Double
    public var tokensPerSecond: Double
    public var execution: ExecutionTelemetry
}

public enum Perplexity {
    /// Splits `tokens` into the windows the protocol scores.
    public static func windows(of tokens: [Int32], contextLength: Int, limit: Int? = nil) -> [ArraySlice<Int32>] {
        guard contextLength >= 2 else { return [] }
        var out: [ArraySlice<Int32>] = []
        var start = 0
        while start + contextLength <= tokens.count, out.count < (limit ?? .max) {
            out.append(tokens[start ..< start + contextLength])
            start += contextLength
        }
        return out
    }

    /// `-log softmax(logits)[target]` in float64.
    public static func negativeLogLikelihood(_ logits: UnsafeBufferPointer<Float>, target: Int) -> Double {
        var maximum = -Float.infinity
        for v in logits where v > maximum { maximum = v }
        var sum = 0.0
        for v in logits { sum += exp(Double(v - maximum)) }
        return log(sum) + Double(maximum) - Double(logits[target])
    }

    /// Scores `windows` with `session` (its context is reset per window), reporting progress per window.
    public static func evaluate(session: LlamaModel, windows: [ArraySlice<Int32>], model: String, text: String,
                                progress: (Int, Double) -> Void = { _, _ in }) throws -> PerplexityResult {
        guard let first = windows.first else {
            throw QTaleError.invalidArgument("the text is shorter than one window; lower --ctx or use a longer text")
        }
        let length = first.count, vocabulary = session.configuration.vocabSize
        guard length <= session.contextLength else {
            throw QTaleError.invalidArgument("windows of \(length) tokens exceed the context length \(session.contextLength)")
        }
        var total = 0.0, scored = 0
        var telemetry = ExecutionTelemetry(blocks: session.configuration.nLayers)
        let start = DispatchTime.now().uptimeNanoseconds
        for (i, window) in windows.enumerated() {
            session.reset()
            let tokens = Array(window)
            let logits = try session.forwardAllLogits(tokens)
            logits.withUnsafeBufferPointer { all in
                for t in 0 ..< tokens.count - 1 {
                    let row = UnsafeBufferPointer(rebasing: all[t * vocabulary ..< (t + 1) * vocabulary])
                    total += negativeLogLikelihood(row, target: Int(tokens[t + 1]))
                }
            }
            scored += tokens.count - 1
            telemetry.accumulate(session.telemetry)
            progress(i + 1, exp(total / Double(scored)))
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return PerplexityResult(model: model, backend: session.engine.name, text: text, contextLength: length,
                                windows: windows.count, scoredTokens: scored, negativeLogLikelihood: total / Double(scored),
                                perplexity: exp(total / Double(scored)), seconds: seconds,
                                tokensPerSecond: Double(windows.count * length) / max(seconds, 1e-9), execution: telemetry)
    }
}
