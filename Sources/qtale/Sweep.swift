import ArgumentParser
import Foundation
import QTaleCore
import QTaleEval
import QTaleModel

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Zero-shot accuracy against execution ratio over router thresholds θ (JSON and an SVG plot).",
        discussion: """
            Loads the model once and scores the tasks (as `qtale eval` does) without routing, then at every \
            θ: a block runs for a token iff the router's p_exec > θ, so a higher θ executes fewer blocks. \
            Each point records acc and acc_norm per task (and their mean over tasks), the execution ratio \
            and FLOPs against dense (pooled over all tokens run) and tokens/s. Routers: --routers FILE, \
            --random-routers SEED, or those stored in a qtale model file. stdout (or --json) gets the JSON; \
            --plot writes accuracy (y) against execution ratio (x), one line per task with θ at each point \
            and the dense accuracy dashed; stderr a progress bar and a table.
            """)

    @OptionGroup var engine: EngineOptions
    @OptionGroup(title: "Routers") var routerSource: RouterSourceOptions
    @OptionGroup(title: "Tasks") var taskSet: TaskSetOptions
    @OptionGroup(title: "Thresholds") var grid: ThresholdGridOptions

    @Option(help: "The accuracy plotted: acc or acc_norm (both are in the JSON).")
    var metric: AccuracyMetric = .acc

    @Option(help: "Write the JSON result to this file instead of stdout.")
    var json: String?

    @Option(help: "Write the accuracy-against-execution-ratio plot to this SVG file.")
    var plot: String?

    @Flag(name: .customLong("no-dense"), help: "Do not measure the model without routing (no reference line).")
    var noDense = false

    @Flag(name: .customLong("no-progress"), help: "Do not draw the progress bar.")
    var noProgress = false

    func validate() throws {
        if let plot { guard plot.hasSuffix(".svg") else { throw ValidationError("--plot must end in .svg") } }
    }

    func run() throws {
        let thresholds = try grid.values()
        let sets = try taskSet.load()
        let model = try engine.load()
        let (routers, source) = try routerSource.load(for: model)
        let evaluator = try ThresholdEvaluator(model: model, routers: routers, sets: sets, contextLength: taskSet.contextLength(for: model))
        let points = thresholds.count + (noDense ? 0 : 1)
        let bar = ProgressBar("sweep \(points) settings", total: points * evaluator.questionCount, unit: "questions", enabled: !noProgress)
        let sweep = try ThresholdSweep.measure(evaluator, thresholds: thresholds, includeDense: !noDense,
                                               run: evaluator.run(threads: engine.threads, routerSource: source, metric: metric)) { done, _ in
            bar.update(done)
        }
        for point in (sweep.dense.map { [$0] } ?? []) + sweep.points { Console.status(point.summary) }
        if let plot {
            try sweep.plot(metric: metric).write(to: plot)
            Console.status("plot: \(plot)")
        }
        if let json {
            try Console.writeJSON(sweep, to: json)
        } else {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            Console.out(String(decoding: try encoder.encode(sweep), as: UTF8.self) + "\n")
        }
    }
}
