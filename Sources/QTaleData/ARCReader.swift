import Foundation

/// The AI2 question format, JSON Lines, used by ARC (Easy and Challenge) and OpenBookQA's `.jsonl` files:
///
///     {"id": "...", "question": {"stem": "...", "choices": [{"text": "...", "label": "A"}, ...]}, "answerKey": "A"}
///
/// Labels are `"A"`…`"E"` for most ARC questions but `"1"`…`"4"` for some, and the count varies (3 to 5),
/// so the answer is found by matching `answerKey` against the labels, never by letter arithmetic.
/// Leading and trailing whitespace around `answerKey` is ignored, as lm-evaluation-harness's
/// OpenBookQA task strips it (`answerKey.lstrip()`).
public enum ARCReader {
    struct Record: Decodable {
        struct Question: Decodable {
            let stem: String
            let choices: [Choice]
        }
        struct Choice: Decodable {
            let text: String
            let label: String
        }
        let id: String
        let question: Question
        let answerKey: String
    }

    public static func read(jsonl path: String) throws -> [MultipleChoiceQuestion] {
        try DataFile.jsonLines(path, as: Record.self).map { line, record in
            let labels = record.question.choices.map(\.label)
            guard labels.count >= 2 else {
                throw DataFile.error(path, line: line, "question '\(record.id)' has \(labels.count) choice(s); at least 2 are needed")
            }
            guard Set(labels).count == labels.count else {
                throw DataFile.error(path, line: line, "question '\(record.id)' repeats a choice label (\(labels.joined(separator: ", ")))")
            }
            let key = record.answerKey.trimmingCharacters(in: .whitespaces)
            guard let answer = labels.firstIndex(of: key) else {
                throw DataFile.error(path, line: line, "answerKey '\(record.answerKey)' of question '\(record.id)' is not one of its choice labels \(labels.joined(separator: ", "))")
            }
            return MultipleChoiceQuestion(id: record.id, query: record.question.stem,
                                          choices: record.question.choices.map(\.text), answer: answer,
                                          location: DataFile.location(path, line))
        }
    }
}
