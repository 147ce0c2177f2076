import ArgumentParser
import Foundation
import QTaleCore
import QTaleData
import QTaleEval
import QTaleModel

extension BenchmarkTask: ExpressibleByArgument {}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Zero-shot multiple-choice accuracy (acc, acc_norm) as lm-evaluation-harness scores it.",
        discussion: """
            Each choice is scored by the log-likelihood of its continuation after the task's prompt, in \
            lm-evaluation-harness's zero-shot formats; acc_norm divides it by the choice's length in \
            characters. WinoGrande uses partial scoring; BoolQ scores " no" against " yes". The context the \
            choices share is run once per question. --data takes the dataset's native file (ARC and \
            OpenBookQA .jsonl, OpenBookQA dev.tsv, BoolQ .jsonl), or for tasks released as NAME.jsonl plus \
            NAME-labels.lst (siqa, winogrande, piqa) the .jsonl or the folder holding both. stdout (or --json) \
            gets the JSON result; stderr a progress bar and a one-line summary.
            """)

    @OptionGroup var engine: EngineOptions

    @OptionGroup(title: "Token-adaptive layer execution") var layerSkip: LayerSkipOptions

    @Option(help: "The benchmark: \(BenchmarkTask.allCases.map(\.rawValue).joined(separator: ", ")).")
    var task: BenchmarkTask

    @Option(help: "The task's data file, or the folder holding NAME.jsonl and NAME-labels.lst (siqa, winogrande, piqa).")
    var data: String

    @Option(help: "Score only the first N questions.")
    var limit: Int?

    @Option(help: "Write the JSON result to this file instead of stdout.")
    var json: String?

    @Flag(name: .customLong("log-samples"), help: "Include every question's log-likelihoods in the JSON.")
    var logSamples = false

    @Option(help: "Context length in tokens; longer inputs are cut from the left (default: min(model context, 2048)).")
    var ctx: Int?

    @Flag(name: .customLong("no-progress"), help: "Do not draw the progress bar.")
    var noProgress = false

    func validate() throws {
        if let limit { guard limit >= 1 else { throw ValidationError("--limit must be ≥ 1") } }
        if let ctx { guard ctx >= 2 && ctx <= 1 << 20 else { throw ValidationError("--ctx must be between 2 and 1048576") } }
        guard layerSkip.execMap == nil else { throw ValidationError("--exec-map is not available for eval (it records one map per generation)") }
    }

    func run() throws {
        let questions = try EvaluationSet.load(task: task, data: data, limit: limit).questions
        let model = try engine.load()
        let contextLength = min(ctx ?? 2048, model.configuration.contextLength)
        let session = try model.makeSession(contextLength: contextLength, policy: layerSkip.policy(for: model))
        let evaluator = MultipleChoiceEvaluator(task: task, model: model, session: session)
        let bar = ProgressBar("eval \(task.rawValue)", total: questions.count, unit: "questions", enabled: !noProgress)
        let result = try evaluator.run(questions) { done, outcomes in
            let hits = outcomes.filter { $0.prediction == $0.gold }.count
            bar.update(done, status: String(format: "acc %.3f", Double(hits) / Double(done)))
        }
        let report = EvaluationReport(result: result, data: data, model: model, session: session,
                                      threads: engine.threads, includeSamples: logSamples)
        Console.status(String(format: "%@: acc %.4f  acc_norm %.4f  n %d | execution ratio %.3f | %.1f tok/s | %.1f s | %@",
                              task.rawValue, result.accuracy, result.normalisedAccuracy, result.count,
                              result.telemetry.executionRatio, result.tokensPerSecond, result.seconds, model.engine.name))
        if let json {
            try Console.writeJSON(report, to: json)
        } else {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            Console.out(String(decoding: try encoder.encode(report), as: UTF8.self) + "\n")
        }
    }
}
