import ArgumentParser
import Foundation
import QTaleCore
import QTaleModel

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure speed (build with `swift build -c release`).",
        subcommands: [BenchGenerate.self])
}

struct BenchGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "End-to-end prefill and decode tokens/s.",
        discussion: "Prints a table; --json writes the full result. bench/run_generate.py compares it with llama.cpp.")

    @OptionGroup var engine: EngineOptions

    @Option(name: .customLong("prompt-tokens"), help: "Prompt length for the prefill measurement.")
    var promptTokens = 128

    @Option(name: .customLong("decode-tokens"), help: "Tokens decoded one at a time.")
    var decodeTokens = 64

    @Option(help: "Repetitions (best and median are reported).")
    var repeats = 3

    @Option(help: "Write the result as JSON to this file.")
    var json: String?

    func validate() throws {
        guard promptTokens >= 1 && promptTokens <= 8192 else { throw ValidationError("--prompt-tokens must be between 1 and 8192") }
        guard decodeTokens >= 1 && decodeTokens <= 8192 else { throw ValidationError("--decode-tokens must be between 1 and 8192") }
        guard repeats >= 1 && repeats <= 1000 else { throw ValidationError("--repeats must be between 1 and 1000") }
    }

    func run() throws {
        let model = try engine.load()
        let result = try GenerationBenchmark.run(model: model, threads: engine.threads, promptTokens: promptTokens,
                                                 decodeTokens: decodeTokens, repeats: repeats) { done in
            Console.status("  repeat \(done)/\(repeats)")
        }
        Console.out(String(format: """
            engine   %@ (%@)
            prefill  %.1f tok/s median, %.1f best  (%d tokens)
            decode   %.1f tok/s median, %.1f best  (%d tokens; %.1f MB weights/token, %.1f GB/s)

            """, result.engine, result.device, result.prefillMedian, result.prefillBest, promptTokens,
            result.decodeMedian, result.decodeBest, decodeTokens, Double(result.weightBytesPerToken) / 1e6,
            result.decodeWeightGBPerSecond))
        if let json { try Console.writeJSON(result, to: json) }
    }
}
