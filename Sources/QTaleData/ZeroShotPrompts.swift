import Foundation

/// One alternative to score: the model reads `context` and is scored on `continuation`.
public struct ChoicePrompt: Sendable, Equatable {
    public var context: String
    public var continuation: String
    /// What acc_norm divides the log-likelihood by: the length of the choice string in Unicode scalars
    /// (Python's `len(str)`), as lm-evaluation-harness does (`len(choice)`, without the leading space).
    public var normalisationLength: Int

    public init(context: String, continuation: String, normalisationLength: Int) {
        self.context = context
        self.continuation = continuation
        self.normalisationLength = normalisationLength
    }
}

/// Zero-shot prompts in lm-evaluation-harness's formats (lm_eval/tasks/*/…yaml; no description, no
/// few-shot examples, `target_delimiter` " "):
///
/// | task | context | continuation |
/// |---|---|---|
/// | arc_easy, arc_challenge | `Question: {stem}\nAnswer:` | ` {choice}` |
/// | openbookqa | `{stem}` | ` {choice}` |
/// | siqa (social_iqa) | `Q: {context} {question}\nA:` | ` {answer}` |
/// | piqa | `Question: {goal}\nAnswer:` | ` {sol}` |
/// | boolq | `{passage}\nQuestion: {question}?\nAnswer:` | ` no` / ` yes` |
/// | winogrande | the sentence up to `_` with the option filled in | ` ` + the rest after `_`, stripped |
///
/// WinoGrande uses partial scoring (lm-eval's `partial_context`/`partial_target`): the two choices
/// differ in their contexts and share one continuation, so only the words after the blank are scored, and
/// its acc_norm length is the context's (lm-eval's choices are the contexts there).
extension BenchmarkTask {
    public func prompts(for question: MultipleChoiceQuestion) -> [ChoicePrompt] {
        func answers(_ context: String) -> [ChoicePrompt] {
            question.choices.map { ChoicePrompt(context: context, continuation: " " + $0, normalisationLength: $0.unicodeScalars.count) }
        }
        switch self {
        case .arcEasy, .arcChallenge: return answers("Question: \(question.query)\nAnswer:")
        case .openBookQA: return answers(question.query)
        case .socialIQA: return answers("Q: \(question.context ?? "") \(question.query)\nA:")
        case .piqa: return answers("Question: \(question.query)\nAnswer:")
        case .boolQ: return answers("\(question.context ?? "")\nQuestion: \(question.query)?\nAnswer:")
        case .winoGrande:
            let sentence = question.query
            guard let blank = sentence.firstIndex(of: "_") else { return answers(sentence) }
            let rest = sentence[sentence.index(after: blank)...].trimmingCharacters(in: .whitespacesAndNewlines)
            return question.choices.map { option in
                let context = String(sentence[..<blank]) + option
                return ChoicePrompt(context: context, continuation: " " + rest, normalisationLength: context.unicodeScalars.count)
            }
        }
    }
}
