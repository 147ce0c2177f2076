import ArgumentParser
import Foundation
import QTaleCore
import QTaleModel
import QTaleTokenizer

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a continuation of a prompt.",
        discussion: """
            stdout carries only the generated text; a summary (prompt tokens, prefill and decode tokens/s) \
            goes to stderr and, with --stats-json, to a JSON file. Special tokens written in the prompt \
            (e.g. <|im_start|>) are parsed as special tokens.
            """)

    @OptionGroup var engine: EngineOptions

    @OptionGroup(title: "Token-adaptive layer execution") var layerSkip: LayerSkipOptions

    @Option(name: .shortAndLong, help: "The prompt text.")
    var prompt: String

    @Flag(help: "Wrap the prompt in the model's ChatML template (instruct models).")
    var chat = false

    @Option(help: "System message for --chat (default: the model's default system prompt).")
    var system: String?

    @Option(name: .customLong("max-tokens"), help: "Tokens to generate at most.")
    var maxTokens = 128

    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0.8

    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens (0: all).")
    var topK = 40

    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass (1: off).")
    var topP: Float = 0.95

    @Option(help: "Random seed for sampling (default: random).")
    var seed: UInt64?

    @Option(help: "Context length in tokens (default: min(model context, 2048)).")
    var ctx: Int?

    @Flag(name: .customLong("ignore-eos"), help: "Keep generating after an end-of-generation token.")
    var ignoreEOS = false

    @Option(name: .customLong("stats-json"), help: "Write the run's statistics to this JSON file.")
    var statsJSON: String?

    func validate() throws {
        guard maxTokens >= 0 && maxTokens <= 1 << 20 else { throw ValidationError("--max-tokens must be between 0 and 1048576") }
        guard temperature >= 0 && temperature <= 100 else { throw ValidationError("--temperature must be between 0 and 100") }
        guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        if let ctx { guard ctx >= 1 && ctx <= 1 << 20 else { throw ValidationError("--ctx must be between 1 and 1048576") } }
    }

    func run() throws {
        let model = try engine.load()
        let text = chat ? ChatTemplate.chatML(user: prompt, system: system) : prompt
        let tokens = model.tokenizer.encode(text, parseSpecial: true)
        if let ctx, ctx > model.configuration.contextLength {
            Console.status("note: --ctx \(ctx) exceeds the model's context length; using \(model.configuration.contextLength)")
        }
        let session = try model.makeSession(contextLength: ctx.map { min($0, model.configuration.contextLength) },
                                            policy: layerSkip.policy(for: model))
        session.recordsExecutionMap = layerSkip.execMap != nil
        if let site = layerSkip.routerDecisions { session.routerDecisions = site }
        let sampling = SamplingParameters(temperature: temperature, topK: topK, topP: topP,
                                          seed: seed ?? UInt64.random(in: 0 ... UInt64(UInt32.max)))
        let stats = try TextGenerator(model: model, session: session).generate(
            prompt: tokens, maxTokens: maxTokens, sampling: sampling, stopAtEndOfGeneration: !ignoreEOS,
            onText: { Console.out($0) })
        Console.out("\n")
        Console.status(String(format: "prompt: %d tokens, %.1f tok/s | generated: %d tokens, %.1f tok/s decode | %@ (%@)",
                              stats.promptTokens, stats.prefillTokensPerSecond, stats.generatedTokens,
                              stats.decodeTokensPerSecond, stats.backend, stats.device))
        if case .dense = session.policy {} else { Console.status(stats.execution.summary) }
        if let statsJSON { try Console.writeJSON(stats, to: statsJSON) }
        if let execMap = layerSkip.execMap { try stats.execution.export(to: execMap) }
    }
}
