import QTaleCore
import QTaleData

/// One task's questions as a command reads them: the task, where its data came from, and the questions
/// (the first `limit` of the split, when given).
///
/// Commands that evaluate several settings of one model (`qtale sweep`, `qtale calibrate-threshold`) read
/// each split once through this, with the same rules and messages as `qtale eval`.
public struct EvaluationSet: Sendable {
    public var task: BenchmarkTask
    /// The `--data` path as given (a file, or a folder for the tasks that pair NAME.jsonl with labels).
    public var data: String
    public var questions: [MultipleChoiceQuestion]

    public init(task: BenchmarkTask, data: String, questions: [MultipleChoiceQuestion]) {
        self.task = task
        self.data = data
        self.questions = questions
    }

    /// Reads `task`'s split at `data`; an empty split is an error, and `limit` keeps the first questions.
    public static func load(task: BenchmarkTask, data: String, limit: Int? = nil) throws -> EvaluationSet {
        if let limit, limit < 1 { throw QTaleError.invalidArgument("--limit must be ≥ 1, got \(limit)") }
        var questions = try task.load(from: data)
        guard !questions.isEmpty else { throw QTaleError.invalidArgument("--data '\(data)' holds no questions") }
        if let limit { questions = Array(questions.prefix(limit)) }
        return EvaluationSet(task: task, data: data, questions: questions)
    }
}
