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
        discussion: "Prints a table; --json writes the full result. bench/generate.py compares it with llama.cpp.")

    @OptionGroup var engine: EngineOptions

    @Option(name: .customLong("prompt-tokens"), help: "Prompt length for the prefill measurement.")
    var promptTokens = 128

    @Option(name: .customLong("decode-tokens"), help: "Tokens decoded one at a time.")
    var decodeTokens = 64

    @Option(help: "Repetitions (best and median are reported).")
    var repeats = 3

    @Option(name: .customLong("exec-ratio"), parsing: .upToNextOption,
            help: "Force these execution ratios (e.g. 1 0.75 0.5); reports decode time against ratio and the share of the ideal saving.")
    var execRatios: [Double] = []

    @OptionGroup(title: "Routed decode (decisions on the host against the device)") var routerSource: RouterSourceOptions

    @Option(help: "θ for --routers or --random-routers.")
    var threshold: Float = 0.5

    @Option(name: .customLong("router-decisions"), parsing: .upToNextOption,
            help: "With --routers or --random-routers: measure routed decode with decisions made here (host, device, or both).")
    var routerDecisions: [RouterDecisionSite] = [.host, .device]

    @Option(help: "Write the result as JSON to this file.")
    var json: String?

    var routed: Bool { routerSource.routers != nil || routerSource.randomRouters != nil }

    func validate() throws {
        guard !routed || execRatios.isEmpty else { throw ValidationError("use --exec-ratio or routers, not both") }
        guard threshold >= 0 && threshold < 1 else { throw ValidationError("--threshold must be in [0, 1)") }
        guard !routerDecisions.isEmpty else { throw ValidationError("--router-decisions needs host, device or both") }
        guard execRatios.allSatisfy({ $0 > 0 && $0 <= 1 }) else { throw ValidationError("--exec-ratio values must be in (0, 1]") }
        guard promptTokens >= 1 && promptTokens <= 8192 else { throw ValidationError("--prompt-tokens must be between 1 and 8192") }
        guard decodeTokens >= 1 && decodeTokens <= 8192 else { throw ValidationError("--decode-tokens must be between 1 and 8192") }
        guard repeats >= 1 && repeats <= 1000 else { throw ValidationError("--repeats must be between 1 and 1000") }
    }

    func run() throws {
        let model = try engine.load()
        if routed { return try measureDecisionSites(model) }
        guard !execRatios.isEmpty else {
            let result = try measure(model, policy: .dense)
            Console.out(String(format: """
                engine   %@ (%@)
                prefill  %.1f tok/s median, %.1f best  (%d tokens)
                decode   %.1f tok/s median, %.1f best  (%d tokens; %.1f MB weights/token, %.1f GB/s)

                """, result.engine, result.device, result.prefillMedian, result.prefillBest, promptTokens,
                result.decodeMedian, result.decodeBest, decodeTokens, Double(result.weightBytesPerToken) / 1e6,
                result.decodeWeightGBPerSecond))
            if let json { try Console.writeJSON(result, to: json) }
            return
        }
        // Decode time against execution ratio. The routed blocks' share of decode time comes from a run
        // with every routed block skipped (the floor ratio); the ideal saving at ratio r is that share
        // times the skipped fraction of routed blocks.
        let c = RouterConfiguration()
        let layers = model.configuration.nLayers
        let floor = Double(c.alwaysOnBlocks) / Double(layers)
        let dense = try measure(model, policy: .dense)
        let bare = try measure(model, policy: .forcedRatio(floor, c))
        let denseTime = 1 / dense.decodeMedian, bareTime = 1 / bare.decodeMedian
        let routedShare = (denseTime - bareTime) / denseTime
        var rows: [SkipBenchmarkRow] = []
        Console.out(String(format: "engine %@ (%@); routed blocks take %.1f%% of decode time (dense %.2f ms/token, all routed blocks skipped %.2f ms/token)\n",
                           dense.engine, dense.device, 100 * routedShare, 1000 * denseTime, 1000 * bareTime))
        Console.out("ratio  measured  prefill tok/s  decode tok/s  ms/token  saving  ideal   of ideal\n")
        for ratio in execRatios {
            let r = ratio == 1 ? dense : try measure(model, policy: .forcedRatio(ratio, c))
            let time = 1 / r.decodeMedian
            let skippedRouted = 1 - (ratio * Double(layers) - Double(c.alwaysOnBlocks)) / Double(layers - c.alwaysOnBlocks)
            let ideal = routedShare * skippedRouted, saving = 1 - time / denseTime
            let row = SkipBenchmarkRow(requestedRatio: ratio, result: r, msPerToken: 1000 * time, saving: saving, idealSaving: ideal,
                                       shareOfIdeal: ideal > 0 ? saving / ideal : 1)
            rows.append(row)
            Console.out(String(format: "%5.2f  %8.3f  %13.1f  %12.1f  %8.2f  %5.1f%%  %5.1f%%  %7.1f%%\n", ratio, r.executionRatio,
                               r.prefillMedian, r.decodeMedian, row.msPerToken, 100 * saving, 100 * ideal, 100 * row.shareOfIdeal))
        }
        if let json {
            try Console.writeJSON(SkipBenchmark(routedShareOfDecodeTime: routedShare, dense: dense, allRoutedSkipped: bare, rows: rows), to: json)
        }
    }

    /// Routed decode with the decisions on the host and on the device: what a per-block round trip costs.
    func measureDecisionSites(_ model: LoadedModel) throws {
        let (routers, source) = try routerSource.load(for: model)
        let policy = ExecutionPolicy.routed(routers, threshold: threshold)
        let preferred: RouterDecisionSite = model.engine.prefersDevicePredication ? .device : .host
        Console.out("engine \(model.engine.name) (\(model.engine.deviceDescription)); routers \(source), θ \(threshold); "
                    + "decisions by default: \(preferred)\n")
        Console.out("decisions  exec. ratio  prefill tok/s  decode tok/s  ms/token\n")
        var rows: [DecisionSiteRow] = []
        for site in routerDecisions {
            let r = try measure(model, policy: policy, routerDecisions: site)
            rows.append(DecisionSiteRow(routerDecisions: site.rawValue, isEngineDefault: site == preferred, threshold: threshold, result: r))
            Console.out(site.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0))
            Console.out(String(format: "  %11.3f  %13.1f  %12.1f  %8.2f\n", r.executionRatio,
                               r.prefillMedian, r.decodeMedian, 1000 / r.decodeMedian))
        }
        if let json { try Console.writeJSON(rows, to: json) }
    }

    func measure(_ model: LoadedModel, policy: ExecutionPolicy,
                 routerDecisions: RouterDecisionSite? = nil) throws -> GenerationBenchmark.Result {
        try GenerationBenchmark.run(model: model, threads: engine.threads, promptTokens: promptTokens, decodeTokens: decodeTokens,
                                    repeats: repeats, policy: policy, routerDecisions: routerDecisions) { done in
            Console.status("  repeat \(done)/\(repeats)")
        }
    }
}

struct DecisionSiteRow: Encodable {
    let routerDecisions: String
    let isEngineDefault: Bool
    let threshold: Float
    let result: GenerationBenchmark.Result
}

struct SkipBenchmarkRow: Encodable {
    let requestedRatio: Double
    let result: GenerationBenchmark.Result
    let msPerToken: Double
    let saving: Double
    let idealSaving: Double
    let shareOfIdeal: Double
}

struct SkipBenchmark: Encodable {
    let routedShareOfDecodeTime: Double
    let dense: GenerationBenchmark.Result
    let allRoutedSkipped: GenerationBenchmark.Result
    let rows: [SkipBenchmarkRow]
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
