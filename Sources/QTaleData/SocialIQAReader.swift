import Foundation

/// Social IQa, as AI2's `socialiqa-train-dev.zip` ships it: `train.jsonl`/`dev.jsonl` with
/// `{"context", "question", "answerA", "answerB", "answerC"}` and no label inside, plus a label list
/// (`train-labels.lst`/`dev-labels.lst`) aligned line by line, `1`…`3` for answerA…answerC (1-based).
public enum SocialIQAReader {
    struct Record: Decodable {
        let context: String
        let question: String
        let answerA: String
        let answerB: String
        let answerC: String
    }

    public static func read(jsonl path: String, labels labelsPath: String) throws -> [MultipleChoiceQuestion] {
        let records = try DataFile.jsonLines(path, as: Record.self)
        let labels = try DataFile.labels(labelsPath, range: 1...3)
        try DataFile.checkAligned(questions: records.count, questionsPath: path, labels: labels.count, labelsPath: labelsPath)
        return zip(records, labels).map { entry, label in
            let (line, record) = entry
            return MultipleChoiceQuestion(id: DataFile.location(path, line), context: record.context, query: record.question,
                                          choices: [record.answerA, record.answerB, record.answerC], answer: label.value - 1,
                                          location: DataFile.location(path, line))
        }
    }
}
