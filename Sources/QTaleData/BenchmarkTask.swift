import Foundation
import QTaleCore

/// The zero-shot multiple-choice benchmarks qtale reads, named as lm-evaluation-harness names them
/// (except `siqa`, which lm-evaluation-harness calls `social_iqa`).
///
/// A task knows its dataset's native files (``files(at:)``, ``load(from:)``) and its prompt format
/// (``prompts(for:)``, in ZeroShotPrompts.swift); nothing here runs a model.
public enum BenchmarkTask: String, CaseIterable, Sendable, Codable {
    case arcEasy = "arc_easy"
    case arcChallenge = "arc_challenge"
    case openBookQA = "openbookqa"
    case socialIQA = "siqa"
    case winoGrande = "winogrande"
    case piqa
    case boolQ = "boolq"

    /// The metrics lm-evaluation-harness reports for the task (qtale computes both everywhere).
    public var reportedMetrics: [String] {
        switch self {
        case .arcEasy, .arcChallenge, .openBookQA, .piqa: ["acc", "acc_norm"]
        case .socialIQA, .winoGrande, .boolQ: ["acc"]
        }
    }

    /// Whether the official release keeps the labels in a separate `NAME-labels.lst` next to `NAME.jsonl`.
    public var hasLabelList: Bool {
        switch self {
        case .socialIQA, .winoGrande, .piqa: true
        case .arcEasy, .arcChallenge, .openBookQA, .boolQ: false
        }
    }

    /// The files to read for `path`.
    ///
    /// A file is read as given; for the tasks released as questions plus a label list, the labels are the
    /// sibling `NAME-labels.lst` of `NAME.jsonl` (optional for WinoGrande, whose records carry the answer).
    /// A directory is accepted for those tasks only: it must hold one `NAME.jsonl` with its
    /// `NAME-labels.lst`, or several, of which `dev`/`valid`/`validation` (the evaluation splits) is taken.
    public func files(at path: String) throws -> (questions: String, labels: String?) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw QTaleError.io("--data '\(path)' does not exist")
        }
        let url = URL(fileURLWithPath: path)
        guard isDirectory.boolValue else {
            guard hasLabelList else { return (path, nil) }
            let labels = url.deletingPathExtension().path + "-labels.lst"
            if FileManager.default.fileExists(atPath: labels) { return (path, labels) }
            if self == .winoGrande { return (path, nil) }
            throw QTaleError.io("no label list '\(labels)' next to '\(path)': the \(rawValue) release pairs NAME.jsonl with NAME-labels.lst")
        }
        guard hasLabelList else {
            throw QTaleError.invalidArgument("--data '\(path)' is a directory; \(rawValue) is one file per split, so pass the file (e.g. the dev split)")
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        let stems = names.filter { $0.hasSuffix(".jsonl") }.map { String($0.dropLast(6)) }
            .filter { names.contains($0 + "-labels.lst") }.sorted()
        let stem: String
        if stems.count == 1 {
            stem = stems[0]
        } else if let preferred = ["dev", "valid", "validation"].first(where: stems.contains) {
            stem = preferred
        } else {
            throw QTaleError.invalidArgument(stems.isEmpty
                ? "--data '\(path)' holds no NAME.jsonl with a NAME-labels.lst beside it"
                : "--data '\(path)' holds several labelled splits (\(stems.joined(separator: ", "))); pass the .jsonl file to score")
        }
        return (url.appendingPathComponent(stem + ".jsonl").path, url.appendingPathComponent(stem + "-labels.lst").path)
    }

    /// Reads every question of the split at `path` (a file, or a directory as ``files(at:)`` describes).
    public func load(from path: String) throws -> [MultipleChoiceQuestion] {
        let (questions, labels) = try files(at: path)
        switch self {
        case .arcEasy, .arcChallenge: return try ARCReader.read(jsonl: questions)
        case .openBookQA: return try OpenBookQAReader.read(questions)
        case .socialIQA: return try SocialIQAReader.read(jsonl: questions, labels: labels!)
        case .winoGrande: return try WinoGrandeReader.read(jsonl: questions, labels: labels)
        case .piqa: return try PIQAReader.read(jsonl: questions, labels: labels!)
        case .boolQ: return try BoolQReader.read(jsonl: questions)
        }
    }
}
