import Foundation
import QTaleCore
import QTaleModel

/// The log-likelihood of one continuation given its context.
public struct ChoiceScore: Sendable, Equatable, Codable {
    /// Σ log p(continuation token | everything before it), natural log, computed in float64.
    public var logLikelihood: Double
    /// Continuation tokens scored.
    public var tokens: Int
    /// Whether every continuation token was the argmax (lm-eval's `is_greedy`).
    public var isGreedy: Bool
}

/// Scores the choices of one question on a session, prefilling what they share once.
///
/// lm-evaluation-harness feeds `(context + continuation)[:-1]` and sums the log-softmax of the last
/// `len(continuation)` rows at the continuation tokens. Here every choice reads exactly those tokens, but
/// the tokens the choices have in common (their longest common prefix, at most the shortest context) are
/// run once per question: reset, prefill the prefix (its last logits score the first continuation token),
/// mark the KV cache, then per choice run the rest with all logits and rewind to the mark. The result is
/// the from-scratch computation's up to float rounding (the tests check that).
///
/// Inputs longer than the session's context are cut from the left, as lm-eval cuts to its max length.
/// Log-softmax runs in float64 on the host, so the float32 logits lose nothing in the sum over 49k tokens.
public final class LoglikelihoodScorer {
    public let session: LlamaModel
    /// Work summed over every question scored so far (the session's own telemetry restarts per question).
    public private(set) var telemetry: ExecutionTelemetry
    /// Continuation tokens scored, and tokens the model ran, so far.
    public private(set) var tokensScored = 0, tokensProcessed = 0

    public init(session: LlamaModel) {
        self.session = session
        telemetry = ExecutionTelemetry(blocks: session.configuration.nLayers)
    }

    public func score(_ choices: [TokenizedChoice]) throws -> [ChoiceScore] {
        guard !choices.isEmpty else { return [] }
        let limit = session.contextLength
        // Each choice's tokens, cut from the left to fit, and how many of them are context.
        var sequences: [[Int32]] = [], contextCounts: [Int] = []
        for choice in choices {
            guard !choice.continuation.isEmpty else {
                throw QTaleError.invalidArgument("a continuation encodes to no tokens; nothing to score")
            }
            guard !choice.context.isEmpty else { throw QTaleError.invalidArgument("a context encodes to no tokens") }
            guard choice.continuation.count <= limit else {
                throw QTaleError.invalidArgument("a continuation of \(choice.continuation.count) tokens does not fit the context length \(limit)")
            }
            let whole = Array((choice.context + choice.continuation).suffix(limit + 1))
            sequences.append(whole)
            contextCounts.append(whole.count - choice.continuation.count)
        }
        // The shared prefix: common to every choice's input and no longer than any context, so every
        // scored row is either the prefix's last row or a row of the choice's own pass.
        var shared = contextCounts.min()!
        for sequence in sequences.dropFirst() {
            var k = 0
            while k < shared && sequence[k] == sequences[0][k] { k += 1 }
            shared = k
        }

        session.reset()
        defer {
            telemetry.accumulate(session.telemetry)
            tokensProcessed += session.telemetry.tokens
        }
        let prefixLogits = shared > 0 ? try session.forward(Array(sequences[0][0..<shared])) : []
        let mark = session.mark()
        let vocabulary = session.configuration.vocabSize
        var scores: [ChoiceScore] = []
        for (sequence, contextCount) in zip(sequences, contextCounts) {
            // Input rows shared..<count-1 of this choice; row r predicts sequence[r + 1].
            let own = sequence.count - 1 > shared ? try session.forwardAllLogits(Array(sequence[shared ..< sequence.count - 1])) : []
            var score = ChoiceScore(logLikelihood: 0, tokens: 0, isGreedy: true)
            for r in (contextCount - 1) ..< (sequence.count - 1) {
                let target = Int(sequence[r + 1])
                let (logProbability, isArgmax) = r == shared - 1
                    ? Self.logSoftmax(prefixLogits[...], at: target)
                    : Self.logSoftmax(own[(r - shared) * vocabulary ..< (r - shared + 1) * vocabulary], at: target)
                score.logLikelihood += logProbability
                score.isGreedy = score.isGreedy && isArgmax
                score.tokens += 1
            }
            tokensScored += score.tokens
            scores.append(score)
            try session.rewind(to: mark)
        }
        return scores
    }

    /// `log softmax(row)[target]` in float64, and whether `target` is the row's (first) argmax.
    static func logSoftmax(_ row: ArraySlice<Float>, at target: Int) -> (Double, Bool) {
        row.withUnsafeBufferPointer { logits in
            var best = 0
            var maximum = -Float.infinity
            for (i, v) in logits.enumerated() where v > maximum { maximum = v; best = i }
            let m = Double(maximum)
            var sum = 0.0
            for v in logits { sum += exp(Double(v) - m) }
            return (Double(logits[target]) - m - log(sum), best == target)
        }
    }
}
