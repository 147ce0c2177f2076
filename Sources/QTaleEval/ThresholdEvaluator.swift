import Foundation
import QTaleCore
import QTaleData
import QTaleModel

/// Which accuracy a threshold search compares.
///
/// The default is `acc`: lm-evaluation-harness reports it for all seven tasks (acc_norm only for ARC,
/// OpenBookQA and PIQA), so one metric is comparable across tasks and their average, which is how the
/// QTALE paper's seven-task average is formed. `acc_norm` is there for ARC/OpenBookQA-only calibration.
public enum AccuracyMetric: String, CaseIterable, Codable, Sendable {
    case acc
    case accNorm = "acc_norm"
}

/// One task's figures at one setting.
public struct TaskScore: Codable, Sendable, Equatable {
    public var task: String
    public var acc: Double
    public var acc_norm: Double
    /// Questions scored.
    public var n: Int
    /// Executed share of (token, block) pairs over this task's tokens.
    public var execution_ratio: Double
    public var flops_ratio: Double
    public var tokens_processed: Int
    public var seconds: Double

    public init(task: String, acc: Double, acc_norm: Double, n: Int, execution_ratio: Double, flops_ratio: Double,
                tokens_processed: Int, seconds: Double) {
        self.task = task
        self.acc = acc
        self.acc_norm = acc_norm
        self.n = n
        self.execution_ratio = execution_ratio
        self.flops_ratio = flops_ratio
        self.tokens_processed = tokens_processed
        self.seconds = seconds
    }

    public func accuracy(_ metric: AccuracyMetric) -> Double { metric == .acc ? acc : acc_norm }
}

/// Every task's figures at one setting: a router threshold θ, or the model without routing.
///
/// Accuracies over several tasks are the unweighted mean of the tasks' (as multi-task averages are
/// reported); the execution ratio and FLOPs are pooled over every token run, since they measure cost.
public struct SweepPoint: Codable, Sendable, Equatable {
    /// θ, rounded to 1e-6; nil for the dense model (no routers run).
    public var threshold: Double?
    public var tasks: [TaskScore]
    public var acc: Double
    public var acc_norm: Double
    public var execution_ratio: Double
    public var flops_actual: Double
    public var flops_dense: Double
    public var flops_ratio: Double
    public var tokens_processed: Int
    public var seconds: Double
    public var tokens_per_second: Double

    /// Combines per-task results measured at `threshold`.
    public init(threshold: Double?, results: [EvaluationResult]) {
        self.threshold = threshold.map { ($0 * 1e6).rounded() / 1e6 }
        tasks = results.map { r in
            let t = r.telemetry
            return TaskScore(task: r.task.rawValue, acc: r.accuracy, acc_norm: r.normalisedAccuracy, n: r.count,
                             execution_ratio: t.executionRatio, flops_ratio: t.denseFLOPs == 0 ? 1 : t.actualFLOPs / t.denseFLOPs,
                             tokens_processed: r.tokensProcessed, seconds: r.seconds)
        }
        let count = Double(max(1, results.count))
        acc = results.map(\.accuracy).reduce(0, +) / count
        acc_norm = results.map(\.normalisedAccuracy).reduce(0, +) / count
        var pooled = ExecutionTelemetry(blocks: results.first?.telemetry.blocks ?? 0)
        for r in results { pooled.accumulate(r.telemetry) }
        execution_ratio = pooled.executionRatio
        flops_actual = pooled.actualFLOPs
        flops_dense = pooled.denseFLOPs
        flops_ratio = pooled.denseFLOPs == 0 ? 1 : pooled.actualFLOPs / pooled.denseFLOPs
        tokens_processed = results.map(\.tokensProcessed).reduce(0, +)
        seconds = results.map(\.seconds).reduce(0, +)
        tokens_per_second = seconds > 0 ? Double(tokens_processed) / seconds : 0
    }

    /// A point with given figures (tests, and results read back from JSON).
    public init(threshold: Double?, acc: Double, acc_norm: Double, execution_ratio: Double, tasks: [TaskScore] = [],
                flops_actual: Double = 0, flops_dense: Double = 0, tokens_processed: Int = 0, seconds: Double = 0) {
        self.threshold = threshold
        self.tasks = tasks
        self.acc = acc
        self.acc_norm = acc_norm
        self.execution_ratio = execution_ratio
        self.flops_actual = flops_actual
        self.flops_dense = flops_dense
        flops_ratio = flops_dense == 0 ? 1 : flops_actual / flops_dense
        self.tokens_processed = tokens_processed
        self.seconds = seconds
        tokens_per_second = seconds > 0 ? Double(tokens_processed) / seconds : 0
    }

    public func accuracy(_ metric: AccuracyMetric) -> Double { metric == .acc ? acc : acc_norm }

    /// One line for stderr: `θ 0.350  acc 0.4500  acc_norm 0.5000  ratio 0.812  FLOPs 0.83  312 tok/s`.
    public var summary: String {
        String(format: "%@  acc %.4f  acc_norm %.4f  execution ratio %.3f  FLOPs %.3f of dense  %.0f tok/s",
               threshold.map { String(format: "θ %.4f", $0) } ?? "dense   ", acc, acc_norm, execution_ratio, flops_ratio,
               tokens_per_second)
    }
}

/// How a sweep or calibration was run, written at the top of its JSON so a result file stands alone.
public struct SweepRun: Codable, Sendable {
    public struct TaskData: Codable, Sendable {
        public var task: String
        public var data: String
        public var n: Int

        public init(task: String, data: String, n: Int) {
            self.task = task
            self.data = data
            self.n = n
        }
    }

    public var model: String
    public var backend: String
    public var device: String
    public var threads: Int
    /// Where the routers came from: a file, `random seed S (...)`, or `stored in the model file`.
    public var routers: String
    public var always_on_blocks: Int
    public var always_on_positions: Int
    public var context_length: Int
    public var tasks: [TaskData]
    public var metric: String

    public init(model: String, backend: String, device: String, threads: Int, routers: String, always_on_blocks: Int,
                always_on_positions: Int, context_length: Int, tasks: [TaskData], metric: String) {
        self.model = model
        self.backend = backend
        self.device = device
        self.threads = threads
        self.routers = routers
        self.always_on_blocks = always_on_blocks
        self.always_on_positions = always_on_positions
        self.context_length = context_length
        self.tasks = tasks
        self.metric = metric
    }
}

/// Evaluates a fixed list of task splits on one loaded model at any router threshold θ (or without
/// routing), so a sweep or a threshold search pays for loading the weights once: each setting only
/// makes a fresh session (KV cache and activations) over the same weights.
public final class ThresholdEvaluator {
    public let model: LoadedModel
    public let routers: RouterSet
    public let sets: [EvaluationSet]
    public let contextLength: Int
    /// Settings evaluated so far (each runs every question of every set).
    public private(set) var evaluations = 0

    /// - Throws: when there is nothing to evaluate or the routers do not fit the model.
    public init(model: LoadedModel, routers: RouterSet, sets: [EvaluationSet], contextLength: Int) throws {
        guard !sets.isEmpty, sets.allSatisfy({ !$0.questions.isEmpty }) else {
            throw QTaleError.invalidArgument("no questions to evaluate")
        }
        let c = model.configuration
        guard routers.layers == c.nLayers, routers.dModel == c.dModel else {
            throw QTaleError.invalidArgument("routers are for \(routers.layers) blocks of width \(routers.dModel); the model has \(c.nLayers) of \(c.dModel)")
        }
        guard contextLength >= 2 else { throw QTaleError.invalidArgument("context length must be ≥ 2, got \(contextLength)") }
        self.model = model
        self.routers = routers
        self.sets = sets
        self.contextLength = contextLength
    }

    /// Questions one setting scores (over every set).
    public var questionCount: Int { sets.map(\.questions.count).reduce(0, +) }

    /// Scores every set at threshold θ, or without routing when `threshold` is nil.
    /// `progress(done)` runs after each question, counting over all sets.
    public func evaluate(threshold: Float?, progress: (Int) -> Void = { _ in }) throws -> SweepPoint {
        let policy: ExecutionPolicy = threshold.map { .routed(routers, threshold: $0) } ?? .dense
        let session = try model.makeSession(contextLength: contextLength, policy: policy)
        var results: [EvaluationResult] = [], done = 0
        for set in sets {
            let evaluator = MultipleChoiceEvaluator(task: set.task, model: model, session: session)
            let before = done
            results.append(try evaluator.run(set.questions) { count, _ in
                done = before + count
                progress(done)
            })
        }
        evaluations += 1
        return SweepPoint(threshold: threshold.map(Double.init), results: results)
    }

    /// The run description for result files.
    public func run(threads: Int, routerSource: String, metric: AccuracyMetric) -> SweepRun {
        SweepRun(model: model.path, backend: model.engine.name, device: model.engine.deviceDescription, threads: threads,
                 routers: routerSource, always_on_blocks: routers.configuration.alwaysOnBlocks,
                 always_on_positions: routers.configuration.alwaysOnPositions, context_length: contextLength,
                 tasks: sets.map { SweepRun.TaskData(task: $0.task.rawValue, data: $0.data, n: $0.questions.count) },
                 metric: metric.rawValue)
    }
}
