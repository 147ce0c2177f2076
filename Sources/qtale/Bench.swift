import ArgumentParser
import Foundation
import QTaleCore
import QTaleConformance
import QTaleModel

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure speed (build with `swift build -c release`).",
        subcommands: [BenchGenerate.self, BenchKernels.self])
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

struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Time each kernel at SmolLM2-135M's shapes and one large matmul (4096×14336).",
        discussion: "Reports time, GB/s (weight bytes for matmuls) and GFLOP/s per kernel; --json writes them.")

    @OptionGroup var selection: EngineSelection

    @Option(help: "Seconds to spend per kernel.")
    var seconds = 0.3

    @Flag(name: .customLong("skip-large"), help: "Leave out the 4096×14336 matmuls.")
    var skipLarge = false

    @Option(help: "Write the results as JSON to this file.")
    var json: String?

    func validate() throws {
        guard seconds > 0 && seconds <= 60 else { throw ValidationError("--seconds must be in (0, 60]") }
    }

    func run() throws {
        let engine = try selection.makeEngine()
        var results: [KernelBenchmark.Result] = []
        Console.out("engine \(engine.name) (\(engine.deviceDescription))\n")
        Console.out("op         shape                                        time µs      GB/s   GFLOP/s\n")
        let cases = KernelBenchmark.cases(for: .smolLM2, includeLarge: !skipLarge)
        for testCase in cases {
            let r = try KernelBenchmark.run(testCase, on: engine, seconds: seconds)
            results.append(r)
            Console.out(String(format: "%@ %@ %10.1f %9.2f %9.2f\n", r.op.padding(toLength: 10, withPad: " ", startingAt: 0),
                               r.shape.padding(toLength: 44, withPad: " ", startingAt: 0), r.microseconds,
                               r.gigabytesPerSecond, r.gigaflopsPerSecond))
        }
        if let json { try Console.writeJSON(results, to: json) }
    }
}
