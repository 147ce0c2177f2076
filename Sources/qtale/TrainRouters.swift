import ArgumentParser
import Foundation
import QTaleCore
import QTaleModel
import QTaleTraining

struct TrainRouters: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-routers",
        abstract: "Train token-adaptive routers on a frozen model (D-LLM / QTALE recipe).",
        discussion: """
            Trains one router per block (from --always-on-blocks on) with hard Gumbel-Softmax (τ = 1, \
            straight-through), the attention eviction mask, the per-token execution-ratio loss \
            λ1(e)·mean|r_t − Ω| with the sine ramp λ1(e) = λ1·sin(π/2·e/E), QTALE's entropy term −λ2·mean H, \
            and cross-entropy on response tokens only; AdamW (0.9, 0.95, weight decay 0.02), linear warm-up \
            then half-cycle cosine. The base model is frozen. Backward runs on the engine (cpu or reference).
            --data (repeatable): TASK:PATH for arc_easy, arc_challenge, openbookqa, siqa, winogrande, piqa, \
            boolq native files (prompt = lm-eval zero-shot context, response = the gold answer), \
            jsonl:PATH for {"prompt": ..., "response": ...} lines, text:PATH for plain text (all tokens scored).
            Checkpoints (--checkpoint, every --checkpoint-every steps and at the end) are router files with \
            the Adam state; --resume continues from one and repeats the uninterrupted run bit for bit.
            --lora-rank r > 0 also trains LoRA adapters on q, k and v of every block (y = W·x + (α/r)·B·A·dropout(x), \
            A ~ N(0, σ = 1/r), B = 0, seeded dropout masks), written into the output next to the routers \
            (tensors lora.<block>.<q|k|v>.{a,b}); `qtale merge-lora` folds them into a float model.
            """)

    @OptionGroup var engine: EngineOptions

    @Option(name: .customLong("data"), help: "Training data: TASK:PATH, jsonl:PATH or text:PATH (repeatable).")
    var data: [String] = []

    @Option(name: .customLong("target-ratio"), help: "Ω, the target execution ratio over all blocks.")
    var targetRatio = 0.5
    @Option(name: .customLong("lambda-rate"), help: "λ1, the execution-ratio loss weight (reached at the end of the sine ramp).")
    var lambdaRate = 5.0
    @Option(name: .customLong("lambda-entropy"), help: "λ2, the router entropy weight (0 = plain D-LLM).")
    var lambdaEntropy = 0.1
    @Option(name: .customLong("lora-rank"), help: "LoRA rank on q, k, v (0 = routers only; D-LLM uses 8).")
    var loraRank = 0
    @Option(name: .customLong("lora-alpha"), help: "LoRA α; the update is scaled by α/r (default: r, scale 1).")
    var loraAlpha: Double?
    @Option(name: .customLong("lora-dropout"), help: "Dropout probability on the LoRA input (seeded masks).")
    var loraDropout = 0.05
    @Option(help: "Epochs over the data.")
    var epochs = 1
    @Option(help: "Peak learning rate.")
    var lr = 1e-3
    @Option(name: .customLong("batch-tokens"), help: "Tokens per optimizer step.")
    var batchTokens = 1024
    @Option(name: .customLong("max-length"), help: "Longest training sequence in tokens.")
    var maxLength = 256
    @Option(help: "Seed of the shuffle, the Gumbel noise and the router init.")
    var seed: UInt64 = 0
    @Option(help: "Share of the steps spent warming up the learning rate.")
    var warmup = 0.2
    @Option(name: .customLong("router-hidden"), help: "Router hidden width.")
    var routerHidden = 512
    @Option(name: .customLong("always-on-blocks"), help: "Blocks 0..<n always run and have no router.")
    var alwaysOnBlocks = 2
    @Option(name: .customLong("always-on-positions"), help: "Positions 0..<n run every block.")
    var alwaysOnPositions = 2
    @Option(help: "Use only the first N examples of each --data (after reading; 0 = all).")
    var limit = 0
    @Option(name: .customLong("max-steps"), help: "Stop after this many steps of the plan (the schedule still spans the whole plan).")
    var maxSteps: Int?

    @Option(help: "Checkpoint file (written atomically).")
    var checkpoint: String?
    @Option(name: .customLong("checkpoint-every"), help: "Write the checkpoint every N steps.")
    var checkpointEvery = 50
    @Flag(help: "Continue from --checkpoint if it exists.")
    var resume = false

    @Option(help: "Diagnostics JSON (per-block execution ratio, logit-gap histogram, flip rate over the last epoch); SVGs beside it.")
    var diagnostics: String?
    @Option(name: .customLong("log-json"), help: "Append one JSON line per step to this file.")
    var logJSON: String?
    @Option(name: .shortAndLong, help: "Where to write the trained routers (safetensors).")
    var output: String
    @Flag(name: .customLong("no-progress"), help: "Do not draw the progress bar.")
    var noProgress = false

    func validate() throws {
        guard !data.isEmpty else { throw ValidationError("give at least one --data TASK:PATH, jsonl:PATH or text:PATH") }
        guard loraRank >= 0 else { throw ValidationError("--lora-rank must be ≥ 0, got \(loraRank)") }
        guard loraRank > 0 || (loraAlpha == nil && loraDropout == 0.05) else {
            throw ValidationError("--lora-alpha and --lora-dropout need --lora-rank > 0")
        }
        guard checkpointEvery >= 1 else { throw ValidationError("--checkpoint-every must be ≥ 1") }
        guard limit >= 0 else { throw ValidationError("--limit must be ≥ 0") }
        if let maxSteps { guard maxSteps >= 1 else { throw ValidationError("--max-steps must be ≥ 1") } }
        guard !resume || checkpoint != nil else { throw ValidationError("--resume needs --checkpoint PATH") }
        do { try settings.validate(layers: 1 << 20) } catch { throw ValidationError("\(error)") }
        for spec in data { do { _ = try TrainingDataSource.parse(spec) } catch { throw ValidationError("\(error)") } }
    }

    var settings: RouterTrainingSettings {
        var s = RouterTrainingSettings()
        s.targetRatio = targetRatio; s.lambdaRate = lambdaRate; s.lambdaEntropy = lambdaEntropy
        s.epochs = epochs; s.learningRate = lr; s.batchTokens = batchTokens; s.maxLength = maxLength; s.seed = seed
        s.warmupFraction = warmup; s.routerHidden = routerHidden; s.alwaysOnBlocks = alwaysOnBlocks; s.alwaysOnPositions = alwaysOnPositions
        s.loraRank = loraRank; s.loraAlpha = loraAlpha; s.loraDropout = loraDropout
        return s
    }

    func run() throws {
        let settings = self.settings
        let model = try engine.load()
        guard let trainingEngine = model.engine as? any TrainingEngine else {
            throw QTaleError.invalidArgument("--backend \(model.engine.name) cannot train; use cpu or reference")
        }
        let c = model.configuration
        try settings.validate(layers: c.nLayers)
        guard settings.maxLength <= c.contextLength else {
            throw QTaleError.invalidArgument("--max-length \(settings.maxLength) exceeds the model's context \(c.contextLength)")
        }
        let builder = TrainingExampleBuilder(tokenizer: model.tokenizer, maxLength: settings.maxLength)
        var examples: [TrainingExample] = []
        for spec in data {
            let source = try TrainingDataSource.parse(spec)
            var some = try builder.examples(from: source)
            if limit > 0 { some = Array(some.prefix(limit)) }
            Console.status("data \(source): \(some.count) sequences, \(some.reduce(0) { $0 + $1.tokens.count }) tokens, \(some.reduce(0) { $0 + $1.scoredCount }) scored")
            examples += some
        }
        let routers = try RouterSet.random(configuration: RouterConfiguration(hidden: settings.routerHidden, alwaysOnBlocks: settings.alwaysOnBlocks,
                                                                               alwaysOnPositions: settings.alwaysOnPositions),
                                           dModel: c.dModel, layers: c.nLayers, seed: settings.seed)
        let longest = examples.map(\.tokens.count).max() ?? 2
        let lora = try settings.lora.map { try LoRASet.random(configuration: $0, model: c, seed: settings.seed) }
        let trainer = try RouterTrainer(weights: model.weights, engine: trainingEngine, routers: routers, lora: lora, maxTokens: max(2, longest))
        let run = try RouterTrainingRun(trainer: trainer, examples: examples, settings: settings)
        run.provenance = ["model": model.path, "data": data.joined(separator: " "), "backend": model.engine.name]
        if resume, let checkpoint, FileManager.default.fileExists(atPath: checkpoint) {
            try run.resume(from: checkpoint)
            Console.status("resumed from '\(checkpoint)' at step \(run.step) of \(run.totalSteps)")
        }
        let stopAt = min(run.totalSteps, maxSteps ?? run.totalSteps)
        let loraNote = lora.map { ", LoRA rank \($0.configuration.rank) on q,k,v (\($0.parameterCount) parameters)" } ?? ""
        Console.status("training \(run.trainer.routedBlocks.count) routers of \(c.nLayers) blocks\(loraNote): \(run.totalSteps) steps over \(settings.epochs) epoch(s), \(stopAt - run.step) to run")
        let bar = ProgressBar("train-routers", total: stopAt, unit: "steps", enabled: !noProgress)
        let lastEpoch = settings.epochs - 1
        var diagnosticsAccumulator = TrainingDiagnostics(blocks: c.nLayers, targetRatio: settings.targetRatio, routedBlocks: trainer.routedBlocks)
        var tokens = 0, seconds = 0.0
        var log: FileHandle?
        if let logJSON {
            if !FileManager.default.fileExists(atPath: logJSON) { _ = FileManager.default.createFile(atPath: logJSON, contents: nil) }
            log = FileHandle(forWritingAtPath: logJSON)
            log?.seekToEndOfFile()
        }
        while run.step < stopAt {
            let collect = diagnostics != nil && run.plan[run.step].epoch == lastEpoch
            let r = try run.trainStep(collectLogitGaps: collect)
            if collect { diagnosticsAccumulator.add(r.statistics) }
            tokens += r.tokens; seconds += r.seconds
            let status = String(format: "loss %.4f  CE %.4f  rate %.4f  H %.3f  ratio %.3f  flips %.3f  λ1 %.2f  %.0f tok/s",
                                r.loss, r.crossEntropy, r.rateLoss, r.entropy, r.executionRatio, r.flipRate, r.lambdaRate, Double(tokens) / max(seconds, 1e-9))
            bar.update(run.step, status: status)
            if let log {
                let line = String(format: "{\"step\":%d,\"epoch\":%d,\"loss\":%.6f,\"ce\":%.6f,\"rate\":%.6f,\"entropy\":%.6f,\"ratio\":%.6f,\"flip_rate\":%.6f,\"lambda_rate\":%.6f,\"lr\":%.6e,\"tokens\":%d,\"seconds\":%.4f}\n",
                                  r.step, r.epoch, r.loss, r.crossEntropy, r.rateLoss, r.entropy, r.executionRatio, r.flipRate, r.lambdaRate, r.learningRate, r.tokens, r.seconds)
                log.write(Data(line.utf8))
            }
            if let checkpoint, run.step % checkpointEvery == 0 || run.step == stopAt { try run.saveCheckpoint(to: checkpoint) }
        }
        try run.saveOutput(to: output)
        Console.status(String(format: "wrote '%@' after %d of %d steps (%.1f training tok/s)", output, run.step, run.totalSteps, Double(tokens) / max(seconds, 1e-9)))
        if let diagnostics, diagnosticsAccumulator.steps > 0 {
            try Console.writeJSON(diagnosticsAccumulator, to: diagnostics)
            let (ratio, gaps) = diagnosticsAccumulator.svg()
            let stem = diagnostics.hasSuffix(".json") ? String(diagnostics.dropLast(5)) : diagnostics
            try ratio.write(toFile: stem + "-ratio.svg", atomically: true, encoding: .utf8)
            try gaps.write(toFile: stem + "-gaps.svg", atomically: true, encoding: .utf8)
            Console.status("diagnostics: '\(diagnostics)', '\(stem)-ratio.svg', '\(stem)-gaps.svg'")
        }
    }
}
