import ArgumentParser
import Foundation
import QTaleCore
import QTaleModel
import QTaleTraining

struct MergeLoRA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge-lora",
        abstract: "Fold LoRA adapters trained by train-routers into a float model (with the routers embedded).",
        discussion: """
            Reads the LoRA adapters (lora.<block>.<q|k|v>.{a,b}, metadata qtale.lora.*) from --routers, the \
            file `qtale train-routers --lora-rank r` writes, and writes W' = W + (α/r)·B·A for q, k and v of \
            every block. Every decoder linear is written as float32 (packed weights dequantized exactly), \
            norms, embedding and output head as the model holds them, the file's routers embedded. The \
            output is a qtale model file (docs/model-format.md): `qtale quantize -m` accepts it (method.md \
            §2(c): quantization after the merge) and `qtale generate -m` runs it routed by default.
            """)

    @Option(name: .shortAndLong, help: "The base model the adapters were trained on (GGUF, qtale file, Hugging Face directory, or 'smollm2').")
    var model: String = ModelLocator.defaultModelName

    @Option(help: "The train-routers output holding the routers and the LoRA adapters.")
    var routers: String

    @Flag(name: .customLong("no-routers"), help: "Do not embed the routers (a dense merged model).")
    var noRouters = false

    @Option(name: .shortAndLong, help: "Output file (qtale safetensors, float linears).")
    var output: String

    func validate() throws {
        guard !output.isEmpty else { throw ValidationError("-o must name the output file") }
        guard output != routers else { throw ValidationError("-o must not overwrite --routers") }
    }

    func run() throws {
        let path = try ModelLocator.resolve(model) { Console.status($0) }
        let source = try ModelSources.open(path)
        let c = source.configuration
        guard FileManager.default.fileExists(atPath: routers) else {
            throw QTaleError.invalidArgument("--routers '\(routers)' does not exist")
        }
        guard let lora = try LoRASet.load(path: routers, model: c) else {
            throw QTaleError.invalidArgument("'\(routers)' holds no LoRA adapters (no qtale.lora metadata; train with --lora-rank > 0)")
        }
        let routerSet = noRouters ? nil : try RouterSet.load(path: routers, dModel: c.dModel, layers: c.nLayers)
        try LoRAMerge.write(source: source, lora: lora, routers: routerSet, to: output)
        let cfg = lora.configuration
        Console.status("wrote '\(output)': LoRA rank \(cfg.rank), α \(cfg.alpha) (scale \(cfg.scale)) merged into q, k, v of \(c.nLayers) blocks; float linears"
                       + (routerSet == nil ? "" : ", routers embedded"))
    }
}
