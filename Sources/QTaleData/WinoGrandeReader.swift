import Foundation

/// WinoGrande 1.1 (`winogrande_1.1.zip`): `train_*.jsonl`/`dev.jsonl` with
/// `{"qID", "sentence", "option1", "option2", "answer"}`, where `sentence` has one `_` blank and `answer` is
/// `"1"` or `"2"`, plus a label list (`dev-labels.lst`) repeating the answers, 1-based. Either source of
/// labels is enough; when both are present they must agree (a mismatch means misaligned files).
/// The test split has an empty `answer` and no label list, so it cannot be scored.
public enum WinoGrandeReader {
    struct Record: Decodable {
        let qID: String
        let sentence: String
        let option1: String
        let option2: String
        let answer: String?
    }

    public static func read(jsonl path: String, labels labelsPath: String? = nil) throws -> [MultipleChoiceQuestion] {
        let records = try DataFile.jsonLines(path, as: Record.self)
        var labels: [(line: Int, value: Int)]?
        if let labelsPath {
            labels = try DataFile.labels(labelsPath, range: 1...2)
            try DataFile.checkAligned(questions: records.count, questionsPath: path, labels: labels!.count, labelsPath: labelsPath)
        }
        return try records.enumerated().map { index, entry in
            let (line, record) = entry
            guard record.sentence.contains("_") else {
                throw DataFile.error(path, line: line, "sentence of '\(record.qID)' has no '_' blank")
            }
            let inline = record.answer.flatMap { $0.isEmpty ? nil : $0 }
            if let inline, inline != "1" && inline != "2" {
                throw DataFile.error(path, line: line, "answer '\(inline)' of '\(record.qID)' is not \"1\" or \"2\"")
            }
            let listed = labels?[index]
            if let inline, let listed, Int(inline) != listed.value {
                throw DataFile.error(path, line: line, "answer \(inline) of '\(record.qID)' disagrees with label \(listed.value) at \(labelsPath!):\(listed.line); the files are misaligned")
            }
            guard let answer = listed?.value ?? inline.flatMap({ Int($0) }) else {
                throw DataFile.error(path, line: line, "'\(record.qID)' has no answer and no label list was given (the test split is unlabelled)")
            }
            return MultipleChoiceQuestion(id: record.qID, query: record.sentence, choices: [record.option1, record.option2],
                                          answer: answer - 1, location: DataFile.location(path, line))
        }
    }
}
