import ArgumentParser
import Foundation
import QTaleData
import QTaleEval
import QTaleModel

/// The questions of a sweep or threshold search: one or more `--task T --data FILE` pairs (paired in
/// order), read with `qtale eval`'s rules, plus `--limit` and `--ctx` as `qtale eval` has them.
struct TaskSetOptions: ParsableArguments {
    @Option(name: .customLong("task"), help: "A benchmark; repeat it, each with its --data, for several.")
    var tasks: [BenchmarkTask] = []

    @Option(name: .customLong("data"), help: "The task's data file, or the folder holding NAME.jsonl and NAME-labels.lst (one per --task, in order).")
    var data: [String] = []

    @Option(help: "Score only the first N questions of each task.")
    var limit: Int?

    @Option(help: "Context length in tokens; longer inputs are cut from the left (default: min(model context, 2048)).")
    var ctx: Int?

    func validate() throws {
        guard !tasks.isEmpty else { throw ValidationError("give at least one --task with its --data") }
        guard data.count == tasks.count else {
            throw ValidationError("give one --data per --task (got \(tasks.count) --task and \(data.count) --data)")
        }
        if let limit { guard limit >= 1 else { throw ValidationError("--limit must be ≥ 1") } }
        if let ctx { guard ctx >= 2 && ctx <= 1 << 20 else { throw ValidationError("--ctx must be between 2 and 1048576") } }
    }

    func load() throws -> [EvaluationSet] {
        try zip(tasks, data).map { try EvaluationSet.load(task: $0, data: $1, limit: limit) }
    }

    func contextLength(for model: LoadedModel) -> Int { min(ctx ?? 2048, model.configuration.contextLength) }
}

extension AccuracyMetric: ExpressibleByArgument {}
