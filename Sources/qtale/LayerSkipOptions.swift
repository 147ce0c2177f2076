import ArgumentParser
import Foundation
import QTaleCore
import QTaleModel

/// Token-adaptive execution flags shared by generate, ppl and eval: where routers come from
/// (``RouterSourceOptions``), the threshold θ, and the ways to force execution before routers are trained.
struct LayerSkipOptions: ParsableArguments {
    @OptionGroup var routerSource: RouterSourceOptions

    @Option(help: "Execute a block iff the router's p_exec > θ; lower executes more.")
    var threshold: Float = 0.5

    @Option(name: .customLong("exec-ratio"), help: "Force this average execution ratio with a deterministic per-token pattern.")
    var execRatio: Double?

    @Option(name: .customLong("skip-pattern"), help: "Skip these blocks for every token, e.g. 5,7,9-12.")
    var skipPattern: String?

    @Option(name: .customLong("router-decisions"),
            help: "Where routed decode decides: device (the engine decides and predicates the block's kernels) or host (reads each router's logits back). Default: the engine's preference (device on GPUs).")
    var routerDecisions: RouterDecisionSite?

    @Option(name: .customLong("exec-map"), help: "Write the per-token × per-block execution map (.json, or .svg heat map).")
    var execMap: String?

    func validate() throws {
        let modes = [routerSource.routers != nil, routerSource.randomRouters != nil, execRatio != nil, skipPattern != nil]
        guard modes.filter({ $0 }).count <= 1 else {
            throw ValidationError("use only one of --routers, --random-routers, --exec-ratio and --skip-pattern")
        }
        guard threshold >= 0 && threshold < 1 else { throw ValidationError("--threshold must be in [0, 1)") }
        if let execMap { guard execMap.hasSuffix(".json") || execMap.hasSuffix(".svg") else {
            throw ValidationError("--exec-map must end in .json or .svg")
        } }
    }

    /// The policy for `model`: forced patterns, routers from a flag, routers stored in the model file
    /// (a model quantized after router training runs routed by default), or dense.
    func policy(for model: LoadedModel) throws -> ExecutionPolicy {
        if let execRatio { return .forcedRatio(execRatio, routerSource.configuration) }
        if let skipPattern { return .skipBlocks(try ExecutionPolicy.parseBlocks(skipPattern)) }
        let stored = try model.source.routers()
        if routerSource.routers != nil || routerSource.randomRouters != nil || stored != nil {
            return .routed(try routerSource.load(for: model).routers, threshold: threshold)
        }
        return .dense
    }
}

extension RouterDecisionSite: ExpressibleByArgument {}
