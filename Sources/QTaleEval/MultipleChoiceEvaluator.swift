import Foundation
import QTaleCore
import QTaleData
import QTaleModel

/// One question's outcome (lm-eval's `--log_samples`, reduced to what comparisons need).
public struct QuestionOutcome: Sendable, Codable, Equatable {
    public var id: String
    public var gold: Int
    public var logLikelihoods: [Double]
    public var normalisationLengths: [Int]
    /// argmax of the log-likelihoods, and of the log-likelihoods divided by the lengths (first on ties,
    /// as numpy's argmax).
    public var prediction: Int
    public var normalisedPrediction: Int
    public var continuationTokens: [Int]

    public init(id: String, gold: Int, logLikelihoods: [Double], normalisationLengths: [Int], prediction: Int,
                normalisedPrediction: Int, continuationTokens: [Int]) {
        self.id = id
        self.gold = gold
        self.logLikelihoods = logLikelihoods
        self.normalisationLengths = normalisationLengths
        self.prediction = prediction
        self.normalisedPrediction = normalisedPrediction
        self.continuationTokens = continuationTokens
    }
}

/// Zero-shot multiple-choice evaluation as lm-evaluation-harness's `multiple_choice` output type does it:
/// each choice's continuation log-likelihood (``LoglikelihoodScorer``), acc = argmax is gold, acc_norm =
/// argmax of log-likelihood / choice length is gold.
public final class MultipleChoiceEvaluator {
    public let task: BenchmarkTask
    public let scorer: LoglikelihoodScorer
    public let encoder: ContinuationEncoder

    /// - Parameter session: any session of `model` (any engine, any execution policy).
    public init(task: BenchmarkTask, model: LoadedModel, session: LlamaModel) {
        self.task = task
        scorer = LoglikelihoodScorer(session: session)
        let tokenizer = model.tokenizer
        encoder = ContinuationEncoder(emptyContextToken: tokenizer.bosTokenID ?? tokenizer.eosTokenID) {
            tokenizer.encode($0, parseSpecial: false, addBOS: false)
        }
    }

    /// Scores one question.
    public func evaluate(_ question: MultipleChoiceQuestion) throws -> QuestionOutcome {
        let prompts = task.prompts(for: question)
        let scores: [ChoiceScore]
        do {
            scores = try scorer.score(prompts.map(encoder.tokens))
        } catch let error as QTaleError {
            throw QTaleError.invalidArgument("question '\(question.id)' (\(question.location)): \(error)")
        }
        let lls = scores.map(\.logLikelihood), lengths = prompts.map(\.normalisationLength)
        return QuestionOutcome(id: question.id, gold: question.answer, logLikelihoods: lls, normalisationLengths: lengths,
                               prediction: Self.argmax(lls),
                               normalisedPrediction: Self.argmax(zip(lls, lengths).map { $0 / Double(max(1, $1)) }),
                               continuationTokens: scores.map(\.tokens))
    }

    /// Scores `questions` in order; `progress(done, outcomes so far)` runs after each.
    public func run(_ questions: [MultipleChoiceQuestion],
                    progress: (Int, [QuestionOutcome]) -> Void = { _, _ in }) throws -> EvaluationResult {
        let start = Date()
        var outcomes: [QuestionOutcome] = []
        outcomes.reserveCapacity(questions.count)
        for question in questions {
            outcomes.append(try evaluate(question))
            progress(outcomes.count, outcomes)
        }
        return EvaluationResult(task: task, outcomes: outcomes, telemetry: scorer.telemetry, tokensScored: scorer.tokensScored,
                                tokensProcessed: scorer.tokensProcessed, seconds: Date().timeIntervalSince(start))
    }

    static func argmax(_ values: [Double]) -> Int {
        var best = 0
        for (i, v) in values.enumerated() where v > values[best] { best = i }
        return best
    }
}

/// Accuracy figures and the work it took.
public struct EvaluationResult: Sendable {
    public var task: BenchmarkTask
    public var outcomes: [QuestionOutcome]
    public var telemetry: ExecutionTelemetry
    public var tokensScored: Int
    public var tokensProcessed: Int
    public var seconds: Double

    public init(task: BenchmarkTask, outcomes: [QuestionOutcome], telemetry: ExecutionTelemetry, tokensScored: Int,
                tokensProcessed: Int, seconds: Double) {
        self.task = task
        self.outcomes = outcomes
        self.telemetry = telemetry
        self.tokensScored = tokensScored
        self.tokensProcessed = tokensProcessed
        self.seconds = seconds
    }

    public var count: Int { outcomes.count }
    public var accuracy: Double { Self.mean(outcomes.map { $0.prediction == $0.gold }) }
    public var normalisedAccuracy: Double { Self.mean(outcomes.map { $0.normalisedPrediction == $0.gold }) }
    /// Standard errors of the means as lm-eval computes them (`mean_stderr`: sample standard deviation
    /// with n − 1, over √n); nil below two questions.
    public var accuracyStderr: Double? { Self.stderr(outcomes.map { $0.prediction == $0.gold }) }
    public var normalisedAccuracyStderr: Double? { Self.stderr(outcomes.map { $0.normalisedPrediction == $0.gold }) }
    public var tokensPerSecond: Double { seconds > 0 ? Double(tokensProcessed) / seconds : 0 }

    static func mean(_ hits: [Bool]) -> Double {
        hits.isEmpty ? 0 : Double(hits.filter { $0 }.count) / Double(hits.count)
    }

    static func stderr(_ hits: [Bool]) -> Double? {
        guard hits.count >= 2 else { return nil }
        let n = Double(hits.count), mu = mean(hits)
        let variance = hits.reduce(0.0) { $0 + (($1 ? 1 : 0) - mu) * (($1 ? 1 : 0) - mu) } / (n - 1)
        return (variance / n).squareRoot()
    }
}
