import Foundation
import QTaleCore

/// Reading the plain-text files the datasets ship as: lines, JSON Lines records and label lists, with
/// errors that name the file and the line, because a malformed record in a 30 000-line file is otherwise
/// a needle in a haystack.
enum DataFile {
    /// One non-blank line with its 1-based line number.
    struct Line {
        let number: Int
        let text: String
    }

    /// The error for a problem at `line` of `path` (or the whole file when `line` is nil).
    static func error(_ path: String, line: Int? = nil, _ message: String) -> QTaleError {
        .invalidArgument("\(path)\(line.map { ":\($0)" } ?? ""): \(message)")
    }

    /// `file:line`, the short form kept in each question.
    static func location(_ path: String, _ line: Int) -> String {
        "\((path as NSString).lastPathComponent):\(line)"
    }

    /// The file's non-blank lines. Splits on `\n` bytes and drops a `\r` before it (Windows line ends),
    /// and a UTF-8 byte-order mark; rejects text that is not UTF-8.
    static func lines(_ path: String) throws -> [Line] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw QTaleError.io("'\(path)' does not exist")
        }
        guard !isDirectory.boolValue else { throw QTaleError.io("'\(path)' is a directory, not a data file") }
        guard let data = FileManager.default.contents(atPath: path) else { throw QTaleError.io("cannot read '\(path)'") }
        var bytes = [UInt8](data)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        var lines: [Line] = []
        var number = 0
        for var slice in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            number += 1
            if slice.last == 0x0D { slice = slice.dropLast() }
            guard let text = String(validating: slice, as: UTF8.self) else {
                throw error(path, line: number, "not UTF-8 text")
            }
            if text.allSatisfy(\.isWhitespace) { continue }
            lines.append(Line(number: number, text: text))
        }
        return lines
    }

    /// Decodes every non-blank line of a JSON Lines file as `T`.
    static func jsonLines<T: Decodable>(_ path: String, as type: T.Type) throws -> [(line: Int, value: T)] {
        let decoder = JSONDecoder()
        return try lines(path).map { line in
            do {
                return (line.number, try decoder.decode(T.self, from: Data(line.text.utf8)))
            } catch let decoding as DecodingError {
                throw error(path, line: line.number, describe(decoding))
            }
        }
    }

    /// A label list (`*-labels.lst`): one integer per non-blank line, in `range`.
    static func labels(_ path: String, range: ClosedRange<Int>) throws -> [(line: Int, value: Int)] {
        try lines(path).map { line in
            let text = line.text.trimmingCharacters(in: .whitespaces)
            guard let value = Int(text), range.contains(value) else {
                throw error(path, line: line.number, "label '\(text)' is not one of \(range.map(String.init).joined(separator: ", "))")
            }
            return (line.number, value)
        }
    }

    /// Checks that a label list is as long as the question file it labels.
    static func checkAligned(questions: Int, questionsPath: String, labels: Int, labelsPath: String) throws {
        guard questions == labels else {
            throw QTaleError.invalidArgument("'\(labelsPath)' has \(labels) labels but '\(questionsPath)' has \(questions) questions; the two files must be aligned line by line")
        }
    }

    /// A decoding failure in words: which field is missing or of the wrong type.
    static func describe(_ error: DecodingError) -> String {
        func field(_ path: [CodingKey]) -> String {
            path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop { $0 == "." }.description
        }
        switch error {
        case let .keyNotFound(key, context):
            return "missing field '\(field(context.codingPath + [key]))'"
        case let .typeMismatch(type, context):
            return context.codingPath.isEmpty ? "not a JSON object" : "field '\(field(context.codingPath))' is not \(name(of: type))"
        case let .valueNotFound(type, context):
            return "field '\(field(context.codingPath))' is null, expected \(name(of: type))"
        case let .dataCorrupted(context):
            return context.codingPath.isEmpty ? "not valid JSON" : "field '\(field(context.codingPath))': \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    private static func name(of type: Any.Type) -> String {
        let name = String(describing: type)
        if name == "String" { return "a string" }
        if name == "Bool" { return "true or false" }
        if ["Int", "Double", "Float"].contains(name) { return "a number" }
        if name.hasPrefix("Array") { return "an array" }
        return "an object"
    }
}
