import Foundation
import QTaleCore
import QTaleData
import QTaleEval
import QTaleModel
import QTaleTestSupport
import XCTest

/// The log-likelihood scorer on a tiny random GGUF model against the straightforward computation: each
/// choice's context + continuation run from scratch with all logits, log-softmax in float64, no shared
/// prefix and no rewinding.
final class ScorerTests: XCTestCase {
    static let path = try! SyntheticModel.write(seed: 31)

    func load() throws -> LoadedModel {
        try LoadedModel(path: Self.path, engine: EngineRegistry.make("cpu", threads: 2))
    }

    /// lm-eval's computation, written out plainly: feed (context + continuation)[-(limit+1):][:-1] and sum
    /// log p over the last len(continuation) rows.
    func reference(_ choice: TokenizedChoice, model: LoadedModel, contextLength: Int = 256,
                   policy: ExecutionPolicy = .dense) throws -> Double {
        let session = try model.makeSession(contextLength: contextLength, policy: policy)
        let tokens = Array((choice.context + choice.continuation).suffix(contextLength + 1))
        let logits = try session.forwardAllLogits(Array(tokens.dropLast()))
        let vocabulary = model.configuration.vocabSize
        var total = 0.0
        for k in 0 ..< choice.continuation.count {
            let row = tokens.count - 1 - choice.continuation.count + k
            let values = logits[row * vocabulary ..< (row + 1) * vocabulary].map(Double.init)
            let m = values.max()!
            let logSum = m + log(values.reduce(0) { $0 + exp($1 - m) })
            total += values[Int(tokens[row + 1])] - logSum
        }
        return total
    }

    func assertMatchesReference(_ choices: [TokenizedChoice], model: LoadedModel, contextLength: Int = 256,
                                policy: ExecutionPolicy = .dense, file: StaticString = #filePath, line: UInt = #line) throws {
        let scorer = LoglikelihoodScorer(session: try model.makeSession(contextLength: contextLength, policy: policy))
        let scores = try scorer.score(choices)
        XCTAssertEqual(scores.map(\.tokens), choices.map(\.continuation.count), file: file, line: line)
        for (score, choice) in zip(scores, choices) {
            let expected = try reference(choice, model: model, contextLength: contextLength, policy: policy)
            XCTAssertEqual(score.logLikelihood, expected, accuracy: 1e-4 * max(1, abs(expected)), file: file, line: line)
            XCTAssertLessThan(score.logLikelihood, 0, file: file, line: line)
        }
        // Scoring again on the same session gives the same numbers (reset and rewind leave nothing behind).
        XCTAssertEqual(try scorer.score(choices).map(\.logLikelihood), scores.map(\.logLikelihood), file: file, line: line)
    }

    func testPrefixSharedScoresEqualFromScratchScores() throws {
        let model = try load()
        let context: [Int32] = [40, 259, 77, 80, 261, 33, 9, 120, 45, 46]
        // Continuations of one to eight tokens, one of them a single token (scored by the prefix's logits only).
        try assertMatchesReference([TokenizedChoice(context: context, continuation: [100, 101, 102]),
                                    TokenizedChoice(context: context, continuation: [200]),
                                    TokenizedChoice(context: context, continuation: [7, 8, 9, 10, 11, 12, 13, 14]),
                                    TokenizedChoice(context: context, continuation: [100, 5])], model: model)
    }

    func testChoicesWithDifferentContexts() throws {
        let model = try load()
        let shared: [Int32] = [40, 259, 77, 80, 261, 33]
        // WinoGrande-like: the contexts differ after a common part and share the continuation.
        try assertMatchesReference([TokenizedChoice(context: shared + [90, 91], continuation: [50, 51, 52]),
                                    TokenizedChoice(context: shared + [92], continuation: [50, 51, 52])], model: model)
        // One context is a prefix of the other (the shared part is capped at the shorter context).
        try assertMatchesReference([TokenizedChoice(context: shared, continuation: [50, 51]),
                                    TokenizedChoice(context: shared + [50], continuation: [51, 60])], model: model)
        // Nothing shared at all: the blank at the sentence start.
        try assertMatchesReference([TokenizedChoice(context: [70], continuation: [50, 51, 52]),
                                    TokenizedChoice(context: [71, 72], continuation: [50, 51, 52])], model: model)
    }

    func testLongInputsAreCutFromTheLeftAsLMEvalDoes() throws {
        let model = try load()
        let context = (0 ..< 30).map { Int32(3 + ($0 * 37) % 250) }
        try assertMatchesReference([TokenizedChoice(context: context, continuation: [100, 101, 102]),
                                    TokenizedChoice(context: context, continuation: [200, 201])], model: model, contextLength: 16)
    }

    func testLayerSkippingPoliciesScoreLikeFromScratch() throws {
        let model = try load()
        let context: [Int32] = [40, 259, 77, 80, 261, 33, 9, 120]
        let choices = [TokenizedChoice(context: context, continuation: [100, 101, 102]),
                       TokenizedChoice(context: context, continuation: [200, 17])]
        try assertMatchesReference(choices, model: model, policy: .forcedRatio(0.6, RouterConfiguration(alwaysOnBlocks: 0, alwaysOnPositions: 1)))
        try assertMatchesReference(choices, model: model, policy: .skipBlocks([1]))
    }

    func testBadChoicesAreErrors() throws {
        let scorer = LoglikelihoodScorer(session: try load().makeSession(contextLength: 8))
        XCTAssertThrowsError(try scorer.score([TokenizedChoice(context: [5], continuation: [])])) { error in
            XCTAssertTrue("\(error)".contains("no tokens"), "\(error)")
        }
        XCTAssertThrowsError(try scorer.score([TokenizedChoice(context: [5], continuation: Array(repeating: 7, count: 9))])) { error in
            XCTAssertTrue("\(error)".contains("does not fit"), "\(error)")
        }
        XCTAssertEqual(try scorer.score([]), [])
    }

    // MARK: Tokenization (lm-eval's _encode_pair)

    /// A toy tokenizer: one token per character, except "ab" which is one token (id 1000).
    static func toyEncode(_ text: String) -> [Int32] {
        var out: [Int32] = [], scalars = Array(text.unicodeScalars), i = 0
        while i < scalars.count {
            if scalars[i] == "a", i + 1 < scalars.count, scalars[i + 1] == "b" { out.append(1000); i += 2; continue }
            out.append(Int32(scalars[i].value)); i += 1
        }
        return out
    }

    func testContinuationTokensFollowLMEval() {
        let encoder = ContinuationEncoder(emptyContextToken: 1, encode: Self.toyEncode)
        // Trailing whitespace of the context moves onto the continuation.
        XCTAssertEqual(encoder.tokens(ChoicePrompt(context: "Q: x \n ", continuation: "y", normalisationLength: 1)),
                       TokenizedChoice(context: Self.toyEncode("Q: x"), continuation: Self.toyEncode(" \n y")))
        // A merge across the boundary: the continuation is the whole's tokens after the context's count.
        XCTAssertEqual(encoder.tokens(ChoicePrompt(context: "xa", continuation: "bc", normalisationLength: 2)),
                       TokenizedChoice(context: [120, 97], continuation: [99]))
        // An empty context reads the prefix token.
        XCTAssertEqual(encoder.tokens(ChoicePrompt(context: "  ", continuation: "z", normalisationLength: 1)),
                       TokenizedChoice(context: [1], continuation: Self.toyEncode("  z")))
    }

    func testRealTokenizerAddsNoBOSAndSplitsAtTheBoundary() throws {
        let model = try load()
        let tokenizer = model.tokenizer
        let encoder = ContinuationEncoder(emptyContextToken: tokenizer.bosTokenID) { tokenizer.encode($0, parseSpecial: false, addBOS: false) }
        let choice = encoder.tokens(ChoicePrompt(context: "Question: the\nAnswer:", continuation: " the end", normalisationLength: 7))
        XCTAssertEqual(choice.context, tokenizer.encode("Question: the\nAnswer:", parseSpecial: false, addBOS: false))
        XCTAssertEqual(tokenizer.decode(choice.continuation), " the end")
        XCTAssertFalse(choice.context.contains(tokenizer.bosTokenID!), "lm-eval adds no BOS for this tokenizer")
        // Special-token text in the data stays text.
        XCTAssertFalse(encoder.tokens(ChoicePrompt(context: "<|im_start|>", continuation: " x", normalisationLength: 1)).context.contains(1))
    }

    // MARK: The evaluator

    func testEvaluatorComputesAccAndAccNormFromTheScores() throws {
        let model = try load()
        let session = try model.makeSession()
        let questions = [
            MultipleChoiceQuestion(id: "a", query: "The sun is hot and", choices: ["bright", "cold as ice", "the"], answer: 0, location: "x:1"),
            MultipleChoiceQuestion(id: "b", query: "In the water", choices: ["fish", "a tree", "the sea"], answer: 2, location: "x:2"),
            MultipleChoiceQuestion(id: "c", query: "Her cat", choices: ["eats", "er"], answer: 1, location: "x:3"),
        ]
        let evaluator = MultipleChoiceEvaluator(task: .openBookQA, model: model, session: session)
        var seen = 0
        let result = try evaluator.run(questions) { done, _ in seen = done }
        XCTAssertEqual(seen, 3)
        XCTAssertEqual(result.count, 3)
        var hits = 0.0, normHits = 0.0, scored = 0
        for (question, outcome) in zip(questions, result.outcomes) {
            let choices = BenchmarkTask.openBookQA.prompts(for: question).map(evaluator.encoder.tokens)
            let lls = try choices.map { try reference($0, model: model) }
            for (a, b) in zip(outcome.logLikelihoods, lls) { XCTAssertEqual(a, b, accuracy: 1e-4 * max(1, abs(b))) }
            let pred = lls.indices.max { lls[$0] < lls[$1] }!
            let normed = zip(lls, question.choices).map { $0 / Double($1.count) }
            let predNorm = normed.indices.max { normed[$0] < normed[$1] }!
            XCTAssertEqual(outcome.prediction, pred)
            XCTAssertEqual(outcome.normalisedPrediction, predNorm)
            XCTAssertEqual(outcome.normalisationLengths, question.choices.map(\.count))
            hits += pred == question.answer ? 1 : 0
            normHits += predNorm == question.answer ? 1 : 0
            scored += choices.map(\.continuation.count).reduce(0, +)
        }
        XCTAssertEqual(result.accuracy, hits / 3)
        XCTAssertEqual(result.normalisedAccuracy, normHits / 3)
        XCTAssertEqual(result.tokensScored, scored)
        // Telemetry covers every question (the session's own restarts per question).
        XCTAssertEqual(result.telemetry.tokens, result.tokensProcessed)
        XCTAssertGreaterThan(result.tokensProcessed, session.telemetry.tokens)
        XCTAssertEqual(result.telemetry.executionRatio, 1)
        XCTAssertGreaterThan(result.telemetry.denseFLOPs, 0)
    }

    func testEvaluatorOnWinoGrandeScoresTheWordsAfterTheBlank() throws {
        let model = try load()
        let evaluator = MultipleChoiceEvaluator(task: .winoGrande, model: model, session: try model.makeSession())
        let question = MultipleChoiceQuestion(id: "w", query: "Ann gave Bo the cup because _ was thirsty.", choices: ["Ann", "Bo"],
                                              answer: 1, location: "x:1")
        let outcome = try evaluator.evaluate(question)
        let continuation = model.tokenizer.encode(" was thirsty.", parseSpecial: false, addBOS: false)
        XCTAssertEqual(outcome.continuationTokens, [continuation.count, continuation.count])
        for (option, ll) in zip(["Ann", "Bo"], outcome.logLikelihoods) {
            let choice = evaluator.encoder.tokens(ChoicePrompt(context: "Ann gave Bo the cup because " + option,
                                                               continuation: " was thirsty.", normalisationLength: 0))
            XCTAssertEqual(choice.continuation, continuation)
            XCTAssertEqual(ll, try reference(choice, model: model), accuracy: 1e-4 * max(1, abs(ll)))
        }
    }

    func testStandardErrorIsLMEvals() {
        let outcomes = (0 ..< 4).map { i in
            QuestionOutcome(id: "\(i)", gold: 0, logLikelihoods: [0, -1], normalisationLengths: [1, 1], prediction: i == 0 ? 0 : 1,
                            normalisedPrediction: 0, continuationTokens: [1, 1])
        }
        let result = EvaluationResult(task: .arcEasy, outcomes: outcomes, telemetry: ExecutionTelemetry(blocks: 1), tokensScored: 8,
                                      tokensProcessed: 8, seconds: 1)
        XCTAssertEqual(result.accuracy, 0.25)
        // sample std of [1,0,0,0] = sqrt(0.75/3) = 0.5; over sqrt(4) = 0.25
        XCTAssertEqual(result.accuracyStderr!, 0.25, accuracy: 1e-12)
        XCTAssertEqual(result.normalisedAccuracy, 1)
        XCTAssertEqual(result.normalisedAccuracyStderr!, 0, accuracy: 1e-12)
    }
}
