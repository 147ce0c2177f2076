import Foundation
import QTaleCore
import QTaleData
import QTaleTokenizer

/// One prompt → response pair before tokenization.
public struct PromptResponse: Sendable, Equatable, Codable {
    public var prompt: String
    public var response: String
    public init(prompt: String, response: String) {
        self.prompt = prompt
        self.response = response
    }
}

/// One training sequence: token ids and, per token, whether it is scored (a response token).
///
/// The model reads `tokens[0 ..< count]`; position `t` predicts `tokens[t + 1]`, which counts in the
/// cross-entropy iff `scored[t + 1]`. `scored[0]` is always false (nothing predicts the first token).
public struct TrainingExample: Sendable, Equatable {
    public var tokens: [Int32]
    public var scored: [Bool]
    /// Where it came from (`file:line`, or `file#chunk`), for messages.
    public var source: String

    public init(tokens: [Int32], scored: [Bool], source: String) {
        precondition(tokens.count == scored.count, "one scored flag per token")
        self.tokens = tokens
        self.scored = scored
        self.source = source
        if !self.scored.isEmpty { self.scored[0] = false }
    }

    /// Tokens whose prediction is scored.
    public var scoredCount: Int { scored.dropFirst().filter { $0 }.count }
}

/// Where training data comes from, as `--data` names it.
///
/// - `TASK:PATH` with TASK one of `arc_easy`, `arc_challenge`, `openbookqa`, `siqa`, `winogrande`, `piqa`,
///   `boolq`: the dataset's native file (the readers of `QTaleData`). Each question becomes one pair:
///   the prompt is lm-evaluation-harness's zero-shot context for the gold choice (``BenchmarkTask/prompts(for:)``),
///   the response its continuation (`" " + answer text`; for WinoGrande the gold option filled into the
///   blank is in the prompt and the rest of the sentence is the response).
/// - `jsonl:PATH`, or a path ending in `.jsonl` without a task: one JSON object per line,
///   `{"prompt": "...", "response": "..."}`; only the response's tokens are scored.
/// - `text:PATH`, or a path ending in `.txt`: plain text (e.g. wikitext-2), encoded whole and cut into
///   sequences of at most the maximum length; every token is scored (language modelling).
public enum TrainingDataSource: Sendable, Equatable, CustomStringConvertible {
    case task(BenchmarkTask, String)
    case jsonl(String)
    case text(String)

    public static func parse(_ spec: String) throws -> TrainingDataSource {
        if let colon = spec.firstIndex(of: ":") {
            let name = String(spec[..<colon]), path = String(spec[spec.index(after: colon)...])
            if let task = BenchmarkTask(rawValue: name) { return .task(task, path) }
            if name == "jsonl" { return .jsonl(path) }
            if name == "text" { return .text(path) }
            if name.count > 1 && !name.contains("/") {
                throw QTaleError.invalidArgument(
                    "--data '\(spec)': unknown kind '\(name)'; use TASK:PATH (\(BenchmarkTask.allCases.map(\.rawValue).joined(separator: ", "))), jsonl:PATH or text:PATH")
            }
        }
        let lower = spec.lowercased()
        if lower.hasSuffix(".jsonl") { return .jsonl(spec) }
        if lower.hasSuffix(".txt") || lower.hasSuffix(".raw") { return .text(spec) }
        throw QTaleError.invalidArgument("--data '\(spec)': say what it is, e.g. arc_easy:\(spec), jsonl:\(spec) or text:\(spec)")
    }

    public var description: String {
        switch self {
        case let .task(task, path): "\(task.rawValue):\(path)"
        case let .jsonl(path): "jsonl:\(path)"
        case let .text(path): "text:\(path)"
        }
    }

    public var path: String {
        switch self {
        case let .task(_, path), let .jsonl(path), let .text(path): path
        }
    }
}

/// Reads the `{"prompt": ..., "response": ...}` JSON Lines format.
public enum PromptResponseReader {
    struct Record: Decodable {
        let prompt: String
        let response: String
    }

    public static func read(jsonl path: String) throws -> [(location: String, pair: PromptResponse)] {
        guard FileManager.default.fileExists(atPath: path) else { throw QTaleError.io("--data '\(path)' does not exist") }
        guard let data = FileManager.default.contents(atPath: path) else { throw QTaleError.io("cannot read '\(path)'") }
        guard let text = String(data: data, encoding: .utf8) else { throw QTaleError.invalidArgument("\(path): not UTF-8 text") }
        let decoder = JSONDecoder()
        var out: [(String, PromptResponse)] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            let record: Record
            do {
                record = try decoder.decode(Record.self, from: Data(trimmed.utf8))
            } catch {
                throw QTaleError.invalidArgument("\(path):\(index + 1): expected a JSON object {\"prompt\": string, \"response\": string}")
            }
            guard !record.response.isEmpty else {
                throw QTaleError.invalidArgument("\(path):\(index + 1): the response is empty (nothing to train on)")
            }
            out.append(("\((path as NSString).lastPathComponent):\(index + 1)", PromptResponse(prompt: record.prompt, response: record.response)))
        }
        return out
    }
}

/// Turns data sources into ``TrainingExample``s with a model's tokenizer.
public struct TrainingExampleBuilder {
    public let encode: (String) -> [Int32]
    /// Longest sequence; longer pairs are cut from the left of the prompt (the response is kept whole
    /// when it fits), plain text is cut into sequences of this length.
    public let maxLength: Int

    public init(maxLength: Int, encode: @escaping (String) -> [Int32]) {
        self.maxLength = maxLength
        self.encode = encode
    }

    /// The tokenizer's plain encoding (no BOS, no special tokens parsed: dataset text is plain text).
    public init(tokenizer: BPETokenizer, maxLength: Int) {
        self.init(maxLength: maxLength) { tokenizer.encode($0, parseSpecial: false, addBOS: false) }
    }

    /// The prompt → response pairs of multiple-choice questions: zero-shot context and gold continuation.
    public static func pairs(task: BenchmarkTask, questions: [MultipleChoiceQuestion]) -> [(location: String, pair: PromptResponse)] {
        questions.map { q in
            let gold = task.prompts(for: q)[q.answer]
            return (q.location, PromptResponse(prompt: gold.context, response: gold.continuation))
        }
    }

    /// Tokenizes a pair as lm-evaluation-harness splits context and continuation: trailing whitespace of
    /// the prompt moves to the response, the whole is encoded once, and the response's tokens are those
    /// after the prompt's own token count.
    public func example(_ pair: PromptResponse, source: String) -> TrainingExample? {
        var prompt = pair.prompt, response = pair.response
        let kept = prompt.unicodeScalars.reversed().drop(while: { $0.properties.isWhitespace }).count
        let scalars = Array(prompt.unicodeScalars)
        if kept < scalars.count {
            response = String(String.UnicodeScalarView(scalars[kept...])) + response
            prompt = String(String.UnicodeScalarView(scalars[..<kept]))
        }
        let promptTokens = prompt.isEmpty ? [] : encode(prompt)
        var whole = encode(prompt + response)
        var promptCount = min(promptTokens.count, whole.count)
        if whole.count <= promptCount { return nil }
        if whole.count > maxLength {
            let drop = whole.count - maxLength
            whole.removeFirst(drop)
            promptCount = max(0, promptCount - drop)
        }
        // The first token is never scored; keep at least one prompt token before the response.
        if promptCount == 0 { promptCount = 1 }
        guard whole.count >= 2, promptCount < whole.count else { return nil }
        let scored = (0..<whole.count).map { $0 >= promptCount }
        return TrainingExample(tokens: whole, scored: scored, source: source)
    }

    /// Plain text: encoded whole, cut into sequences of `maxLength` tokens (the last may be shorter, at
    /// least 2 tokens), every token after the first of each sequence scored.
    public func textExamples(path: String) throws -> [TrainingExample] {
        guard FileManager.default.fileExists(atPath: path) else { throw QTaleError.io("--data '\(path)' does not exist") }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw QTaleError.invalidArgument("'\(path)' is not readable UTF-8 text")
        }
        let tokens = encode(text)
        var out: [TrainingExample] = []
        var start = 0
        let name = (path as NSString).lastPathComponent
        while start + 1 < tokens.count {
            let end = min(tokens.count, start + maxLength)
            let chunk = Array(tokens[start..<end])
            out.append(TrainingExample(tokens: chunk, scored: [Bool](repeating: true, count: chunk.count), source: "\(name)#\(out.count)"))
            start = end
        }
        return out
    }

    /// Every example of `source`.
    public func examples(from source: TrainingDataSource) throws -> [TrainingExample] {
        let pairs: [(location: String, pair: PromptResponse)]
        switch source {
        case let .task(task, path):
            pairs = Self.pairs(task: task, questions: try task.load(from: path))
        case let .jsonl(path):
            pairs = try PromptResponseReader.read(jsonl: path)
        case let .text(path):
            let out = try textExamples(path: path)
            guard !out.isEmpty else { throw QTaleError.invalidArgument("--data '\(path)' holds fewer than 2 tokens of text") }
            return out
        }
        let out = pairs.compactMap { example($0.pair, source: $0.location) }
        guard !out.isEmpty else { throw QTaleError.invalidArgument("--data '\(source)' gave no usable prompt/response pair") }
        return out
    }
}
