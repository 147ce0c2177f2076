import ArgumentParser
import Foundation
import QTaleCore
import QTaleModel

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ppl",
        abstract: "Measure a model's perplexity on a text file.",
        discussion: """
            Protocol: the whole file is tokenized once (no BOS); it is cut into non-overlapping windows of \
            --ctx tokens (a shorter tail is dropped); each window starts from an empty context and every \
            token after its first is scored. PPL = exp(mean negative log-likelihood). The JSON result \
            (stdout, or --json FILE) holds the figures, tokens/s and layer-skip telemetry.
            """)

    @OptionGroup var engine: EngineOptions

    @OptionGroup(title: "Token-adaptive layer execution") var layerSkip: LayerSkipOptions

    @Option(help: "UTF-8 text file to score (e.g. wikitext-2 valid.txt).")
    var text: String

    @Option(help: "Window length in tokens.")
    var ctx = 512

    @Option(name: .customLong("max-windows"), help: "Score only the first N windows (default: all).")
    var maxWindows: Int?

    @Option(help: "Write the JSON result to this file instead of stdout.")
    var json: String?

    func validate() throws {
        guard ctx >= 2 && ctx <= 1 << 16 else { throw ValidationError("--ctx must be between 2 and 65536") }
        if let maxWindows { guard maxWindows >= 1 else { throw ValidationError("--max-windows must be ≥ 1") } }
    }

    func run() throws {
        guard let data = FileManager.default.contents(atPath: text) else {
            throw QTaleError.io("cannot read text file '\(text)'")
        }
        guard let content = String(data: data, encoding: .utf8) else {
            throw QTaleError.invalidArgument("'\(text)' is not UTF-8 text")
        }
        let model = try engine.load()
        guard ctx <= model.configuration.contextLength else {
            throw ValidationError("--ctx \(ctx) exceeds the model's context length \(model.configuration.contextLength)")
        }
        let tokens = model.tokenizer.encode(content, parseSpecial: false, addBOS: false)
        let windows = Perplexity.windows(of: tokens, contextLength: ctx, limit: maxWindows)
        let session = try model.makeSession(contextLength: ctx, maxBatch: ctx, policy: layerSkip.policy(for: model))
        Console.status("\(tokens.count) tokens, \(windows.count) windows of \(ctx) on \(model.engine.name) (\(model.engine.deviceDescription))")
        let bar = ProgressBar("ppl", total: windows.count, unit: "windows")
        let result = try Perplexity.evaluate(session: session, windows: windows, model: model.path, text: text) { done, ppl in
            bar.update(done, status: String(format: "ppl %.3f", ppl))
        }
        Console.status(String(format: "perplexity %.4f over %d tokens (%d windows of %d), %.1f tok/s, %.1f s",
                              result.perplexity, result.scoredTokens, result.windows, ctx, result.tokensPerSecond, result.seconds))
        if case .dense = session.policy {} else { Console.status(result.execution.summary) }
        if let json {
            try Console.writeJSON(result, to: json)
        } else {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            var copy = result
            copy.execution.map = []
            Console.out(String(decoding: try encoder.encode(copy), as: UTF8.self) + "\n")
        }
    }
}
