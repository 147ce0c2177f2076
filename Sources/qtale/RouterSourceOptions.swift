import ArgumentParser
import Foundation
import QTaleCore
import QTaleModel
import QTaleSafetensors
import QTaleTraining

/// Where routers come from: a router file, routers stored in the model file, or random ones. Threshold
/// searches use it alone; ``LayerSkipOptions`` adds θ and the forced-execution flags to it.
struct RouterSourceOptions: ParsableArguments {
    @Option(help: "Router weights (safetensors). Default: the routers stored in the model file, if any.")
    var routers: String?

    @Option(name: .customLong("random-routers"), help: "Use routers initialised from this seed (before trained ones exist).")
    var randomRouters: UInt64?

    @Option(name: .customLong("router-hidden"), help: "Hidden width of --random-routers.")
    var routerHidden = 512

    @Option(name: .customLong("always-on-blocks"), help: "Leading blocks that always run (--random-routers, --exec-ratio).")
    var alwaysOnBlocks = 2

    @Option(name: .customLong("always-on-positions"), help: "Leading positions that run every block (--random-routers, --exec-ratio).")
    var alwaysOnPositions = 2

    func validate() throws {
        guard routers == nil || randomRouters == nil else { throw ValidationError("use only one of --routers and --random-routers") }
        guard routerHidden >= 1 && routerHidden <= 65536 else { throw ValidationError("--router-hidden must be between 1 and 65536") }
        guard alwaysOnBlocks >= 0, alwaysOnPositions >= 0 else { throw ValidationError("always-on counts must be ≥ 0") }
    }

    /// The router shape and always-on counts these flags describe (random routers, forced ratios).
    var configuration: RouterConfiguration {
        RouterConfiguration(hidden: routerHidden, alwaysOnBlocks: alwaysOnBlocks, alwaysOnPositions: alwaysOnPositions)
    }

    /// The routers for `model`, and a line saying where they came from.
    func load(for model: LoadedModel) throws -> (routers: RouterSet, source: String) {
        let c = model.configuration
        if let routers {
            let file = try SafetensorsFile(path: routers)
            let set = try RouterSet.read(from: file, dModel: c.dModel, layers: c.nLayers)
            // Routers trained with LoRA expect the adapted q, k and v; inference reads only the routers.
            if LoRASet.present(in: file) {
                Console.status("warning: '\(routers)' also holds LoRA adapters, which are not applied here; "
                               + "`qtale merge-lora --model M --routers \(routers) -o merged.safetensors` folds them "
                               + "into the model (with the routers), then pass only -m merged.safetensors")
            }
            return (set, routers)
        }
        if let randomRouters {
            return (try RouterSet.random(configuration: configuration, dModel: c.dModel, layers: c.nLayers, seed: randomRouters),
                    "random seed \(randomRouters) (hidden \(routerHidden))")
        }
        if let stored = try model.source.routers() { return (stored, "stored in the model file") }
        throw QTaleError.invalidArgument("no routers: '\(model.path)' stores none; pass --routers FILE or --random-routers SEED")
    }
}
