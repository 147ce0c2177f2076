import Foundation

/// BoolQ, as its official release ships it: `train.jsonl`/`dev.jsonl` with
/// `{"question", "title", "answer": true|false, "passage"}` (the question in lower case, without `?`).
/// Each becomes a two-way question with choices `["no", "yes"]`, the order of SuperGLUE's label
/// (0 = false, 1 = true) that lm-evaluation-harness scores.
public enum BoolQReader {
    struct Record: Decodable {
        let question: String
        let passage: String
        let answer: Bool
    }

    public static let choices = ["no", "yes"]

    public static func read(jsonl path: String) throws -> [MultipleChoiceQuestion] {
        try DataFile.jsonLines(path, as: Record.self).map { line, record in
            MultipleChoiceQuestion(id: DataFile.location(path, line), context: record.passage, query: record.question,
                                   choices: choices, answer: record.answer ? 1 : 0, location: DataFile.location(path, line))
        }
    }
}
