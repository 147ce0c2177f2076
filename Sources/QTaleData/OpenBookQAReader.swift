import Foundation

/// OpenBookQA (`Data/Main` of the official release): `train.jsonl`/`dev.jsonl`/`test.jsonl` in the AI2
/// format that ``ARCReader`` reads, and the same splits as tab-separated files (`dev.tsv`), which are the
/// only plain copy of the dev split to be found. The TSV has a header row
///
///     ID <TAB> Question Stem <TAB> Choices <TAB> Complete Question <TAB> Answer Key
///
/// where `Choices` is one string `"(A) text (B) text (C) text (D) text"`. Columns are found by their header
/// names; the choices are split at `" (B) "`, `" (C) "`, … in order, so a choice text may itself contain
/// parentheses. The `.tsv` and `.jsonl` of one split give the same questions.
public enum OpenBookQAReader {
    /// Reads `path` by its extension: `.tsv` as above, anything else as AI2 JSON Lines.
    public static func read(_ path: String) throws -> [MultipleChoiceQuestion] {
        path.lowercased().hasSuffix(".tsv") ? try read(tsv: path) : try ARCReader.read(jsonl: path)
    }

    public static func read(tsv path: String) throws -> [MultipleChoiceQuestion] {
        let lines = try DataFile.lines(path)
        guard let header = lines.first else { throw DataFile.error(path, "the file is empty (expected a header row)") }
        let names = header.text.split(separator: "\t", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        func column(_ name: String) throws -> Int {
            guard let index = names.firstIndex(of: name) else {
                throw DataFile.error(path, line: header.number, "the header has no '\(name)' column (columns: \(names.joined(separator: ", ")))")
            }
            return index
        }
        let id = try column("ID"), stem = try column("Question Stem"), choices = try column("Choices"), key = try column("Answer Key")
        return try lines.dropFirst().map { line in
            let fields = line.text.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == names.count else {
                throw DataFile.error(path, line: line.number, "\(fields.count) tab-separated fields; the header has \(names.count)")
            }
            guard let texts = splitChoices(fields[choices]) else {
                throw DataFile.error(path, line: line.number, "the Choices field '\(fields[choices].prefix(60))' is not of the form '(A) text (B) text ...'")
            }
            let answerKey = fields[key].trimmingCharacters(in: .whitespaces)
            let labels = texts.indices.map { String(UnicodeScalar(UInt8(ascii: "A") + UInt8($0))) }
            guard let answer = labels.firstIndex(of: answerKey) else {
                throw DataFile.error(path, line: line.number, "Answer Key '\(answerKey)' is not one of the choice labels \(labels.joined(separator: ", "))")
            }
            return MultipleChoiceQuestion(id: fields[id], query: fields[stem], choices: texts, answer: answer,
                                          location: DataFile.location(path, line.number))
        }
    }

    /// `"(A) x (B) y"` → `["x", "y"]`; nil unless it starts with `(A) ` and has at least two choices.
    static func splitChoices(_ field: String) -> [String]? {
        guard field.hasPrefix("(A) ") else { return nil }
        var texts: [String] = []
        var start = field.index(field.startIndex, offsetBy: 4)
        var letter = UInt8(ascii: "B")
        while letter <= UInt8(ascii: "Z"), let marker = field.range(of: " (\(UnicodeScalar(letter))) ", range: start..<field.endIndex) {
            texts.append(String(field[start..<marker.lowerBound]))
            start = marker.upperBound
            letter += 1
        }
        texts.append(String(field[start...]).trimmingCharacters(in: .whitespaces))
        return texts.count >= 2 ? texts : nil
    }
}
