import Foundation
import QTaleData
import QTaleModel

/// The JSON `qtale eval` writes: lm-eval-style metrics per task, what the run cost (execution ratio,
/// FLOPs against dense, tokens, time) and how it was run (model, engine, policy), so a result file
/// is enough to compare runs and to check against another implementation (bench/eval_check.py).
public struct EvaluationReport: Codable, Sendable {
    public struct Metrics: Codable, Sendable {
        public var acc: Double
        public var acc_stderr: Double?
        public var acc_norm: Double
        public var acc_norm_stderr: Double?
        /// Questions scored.
        public var n: Int
        /// The metrics lm-evaluation-harness reports for this task.
        public var lm_eval_metrics: [String]
    }

    public struct Cost: Codable, Sendable {
        /// Executed share of (token, block) pairs over every token run.
        public var execution_ratio: Double
        public var per_block_ratio: [Double]
        public var flops_actual: Double
        public var flops_dense: Double
        public var flops_ratio: Double
        public var weight_bytes_ratio: Double
    }

    public var task: String
    public var data: String
    public var results: [String: Metrics]
    public var execution: Cost
    /// Continuation tokens scored, and tokens the model ran (shared prefixes once per question).
    public var tokens_scored: Int
    public var tokens_processed: Int
    public var seconds: Double
    /// Tokens run per second (tokens_processed / seconds).
    public var tokens_per_second: Double
    public var model: String
    public var backend: String
    public var device: String
    public var threads: Int
    /// `dense`, `routed`, `forced-ratio` or `skip-blocks`.
    public var policy: String
    /// The router threshold θ, for routed runs only.
    public var threshold: Double?
    public var context_length: Int
    public var prompt_format: String
    /// Per-question log-likelihoods, with `--log-samples`.
    public var samples: [QuestionOutcome]?

    public init(result: EvaluationResult, data: String, model: LoadedModel, session: LlamaModel, threads: Int,
                includeSamples: Bool) {
        let t = result.telemetry
        task = result.task.rawValue
        self.data = data
        results = [result.task.rawValue: Metrics(acc: result.accuracy, acc_stderr: result.accuracyStderr,
                                                 acc_norm: result.normalisedAccuracy,
                                                 acc_norm_stderr: result.normalisedAccuracyStderr, n: result.count,
                                                 lm_eval_metrics: result.task.reportedMetrics)]
        execution = Cost(execution_ratio: t.executionRatio, per_block_ratio: t.perBlockRatio, flops_actual: t.actualFLOPs,
                         flops_dense: t.denseFLOPs, flops_ratio: t.denseFLOPs == 0 ? 1 : t.actualFLOPs / t.denseFLOPs,
                         weight_bytes_ratio: t.denseWeightBytes == 0 ? 1 : Double(t.actualWeightBytes) / Double(t.denseWeightBytes))
        tokens_scored = result.tokensScored
        tokens_processed = result.tokensProcessed
        seconds = result.seconds
        tokens_per_second = result.tokensPerSecond
        self.model = model.path
        backend = model.engine.name
        device = model.engine.deviceDescription
        self.threads = threads
        switch session.policy {
        case .dense: policy = "dense"; threshold = nil
        case let .routed(_, θ): policy = "routed"; threshold = (Double(θ) * 1e6).rounded() / 1e6
        case .forcedRatio: policy = "forced-ratio"; threshold = nil
        case .skipBlocks: policy = "skip-blocks"; threshold = nil
        }
        context_length = session.contextLength
        prompt_format = "lm-evaluation-harness zero-shot (\(result.task.rawValue)), no BOS, continuation tokens = encode(context+continuation) after encode(context)"
        samples = includeSamples ? result.outcomes : nil
    }
}
