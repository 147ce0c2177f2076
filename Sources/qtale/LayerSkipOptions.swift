import ArgumentParser
import Foundation
import QTaleCore
import QTaleModel

/// Token-adaptive execution flags shared by generate and bench.
struct LayerSkipOptions: ParsableArguments {
    @Option(help: "Router weights (safetensors) for token-adaptive layer execution.")
    var routers: String?

    @Option(help: "Execute a block iff the router's p_exec > θ; lower executes more.")
    var threshold: Float = 0.5

    @Option(name: .customLong("random-routers"), help: "Use routers initialised from this seed (before trained ones exist).")
    var randomRouters: UInt64?

    @Option(name: .customLong("exec-ratio"), help: "Force this average execution ratio with a deterministic per-token pattern.")
    var execRatio: Double?

    @Option(name: .customLong("skip-pattern"), help: "Skip these blocks for every token, e.g. 5,7,9-12.")
    var skipPattern: String?

    @Option(name: .customLong("router-hidden"), help: "Hidden width of --random-routers.")
    var routerHidden = 512

    @Option(name: .customLong("always-on-blocks"), help: "Leading blocks that always run (random routers, --exec-ratio).")
    var alwaysOnBlocks = 2

    @Option(name: .customLong("always-on-positions"), help: "Leading positions that run every block (random routers, --exec-ratio).")
    var alwaysOnPositions = 2

    @Option(name: .customLong("exec-map"), help: "Write the per-token × per-block execution map (.json, or .svg heat map).")
    var execMap: String?

    func validate() throws {
        let modes = [routers != nil, randomRouters != nil, execRatio != nil, skipPattern != nil].filter { $0 }.count
        guard modes <= 1 else { throw ValidationError("use only one of --routers, --random-routers, --exec-ratio and --skip-pattern") }
        guard threshold >= 0 && threshold < 1 else { throw ValidationError("--threshold must be in [0, 1)") }
        guard routerHidden >= 1 && routerHidden <= 65536 else { throw ValidationError("--router-hidden must be between 1 and 65536") }
        guard alwaysOnBlocks >= 0, alwaysOnPositions >= 0 else { throw ValidationError("always-on counts must be ≥ 0") }
        if let execMap { guard execMap.hasSuffix(".json") || execMap.hasSuffix(".svg") else {
            throw ValidationError("--exec-map must end in .json or .svg")
        } }
    }

    /// The policy for a model of `configuration`.
    func policy(for configuration: LlamaConfiguration) throws -> ExecutionPolicy {
        let routerConfiguration = RouterConfiguration(hidden: routerHidden, alwaysOnBlocks: alwaysOnBlocks,
                                                      alwaysOnPositions: alwaysOnPositions)
        if let routers {
            return .routed(try RouterSet.load(path: routers, dModel: configuration.dModel, layers: configuration.nLayers), threshold: threshold)
        }
        if let randomRouters {
            return .routed(try RouterSet.random(configuration: routerConfiguration, dModel: configuration.dModel,
                                                layers: configuration.nLayers, seed: randomRouters), threshold: threshold)
        }
        if let execRatio { return .forcedRatio(execRatio, routerConfiguration) }
        if let skipPattern { return .skipBlocks(try ExecutionPolicy.parseBlocks(skipPattern)) }
        return .dense
    }
}
