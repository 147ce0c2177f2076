import Foundation

/// PIQA, as its official release ships it: `train.jsonl`/`valid.jsonl` with `{"goal", "sol1", "sol2"}`
/// (an `id` too in some copies) and a label list (`valid-labels.lst`) aligned line by line, `0` for sol1
/// and `1` for sol2 (0-based, unlike Social IQa and WinoGrande).
public enum PIQAReader {
    struct Record: Decodable {
        let id: String?
        let goal: String
        let sol1: String
        let sol2: String
    }

    public static func read(jsonl path: String, labels labelsPath: String) throws -> [MultipleChoiceQuestion] {
        let records = try DataFile.jsonLines(path, as: Record.self)
        let labels = try DataFile.labels(labelsPath, range: 0...1)
        try DataFile.checkAligned(questions: records.count, questionsPath: path, labels: labels.count, labelsPath: labelsPath)
        return zip(records, labels).map { entry, label in
            let (line, record) = entry
            return MultipleChoiceQuestion(id: record.id ?? DataFile.location(path, line), query: record.goal,
                                          choices: [record.sol1, record.sol2], answer: label.value,
                                          location: DataFile.location(path, line))
        }
    }
}
