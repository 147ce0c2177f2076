import Foundation
import QTaleCore

/// Where routed decode turns router logits into decisions.
///
/// - `host`: the host reads each routed block's two logits back, decides, and encodes the block or
///   not. One round trip per routed block and token.
/// - `device`: the engine decides (``Op/routerDecision``) and runs the block's ops predicated on the
///   flag (``ComputeEngine/encodePredicated(on:_:)``); the host reads all flags once per token, with
///   the logits. Skipped blocks' kernels still launch on GPU engines, but read no weights.
///
/// Prefill always decides on the host, because compacting the executing rows needs their count.
public enum RouterDecisionSite: String, Sendable, CaseIterable {
    case host, device
}

/// Which blocks each token executes (method.md §1–2).
public enum ExecutionPolicy: Sendable {
    /// Every token runs every block: the plain model.
    case dense
    /// Trained (or random) routers decide: execute block `l` for a token iff `p_exec > threshold`.
    case routed(RouterSet, threshold: Float)
    /// A deterministic per-token pattern with average execution ratio `ratio` (over all blocks,
    /// always-on ones included), for exercising layer skip without trained routers.
    case forcedRatio(Double, RouterConfiguration)
    /// The named blocks are skipped by every token (positions included): the model without them.
    case skipBlocks(Set<Int>)

    /// Always-on blocks and positions of this policy (none for dense and skip patterns).
    var alwaysOn: (blocks: Int, positions: Int) {
        switch self {
        case .dense, .skipBlocks: (0, 0)
        case let .routed(routers, _): (routers.configuration.alwaysOnBlocks, routers.configuration.alwaysOnPositions)
        case let .forcedRatio(_, c): (c.alwaysOnBlocks, c.alwaysOnPositions)
        }
    }

    /// Validates the policy against a model of `layers` blocks.
    public func validated(layers: Int) throws -> ExecutionPolicy {
        switch self {
        case .dense: break
        case let .routed(routers, threshold):
            guard routers.layers == layers else { throw QTaleError.invalidArgument("routers are for \(routers.layers) blocks; the model has \(layers)") }
            guard threshold >= 0 && threshold < 1 else { throw QTaleError.invalidArgument("--threshold must be in [0, 1), got \(threshold)") }
        case let .forcedRatio(ratio, c):
            let floor = Double(c.alwaysOnBlocks) / Double(layers)
            guard ratio >= floor && ratio <= 1 else {
                throw QTaleError.invalidArgument("--exec-ratio must be between \(floor) (the \(c.alwaysOnBlocks) always-on blocks of \(layers)) and 1, got \(ratio)")
            }
        case let .skipBlocks(blocks):
            if let bad = blocks.first(where: { $0 < 0 || $0 >= layers }) {
                throw QTaleError.invalidArgument("--skip-pattern names block \(bad); the model has blocks 0...\(layers - 1)")
            }
        }
        return self
    }

    /// Parses a block list such as `"5,7,9-12"`.
    public static func parseBlocks(_ text: String) throws -> Set<Int> {
        var blocks = Set<Int>()
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            switch bounds.count {
            case 1 where bounds[0] != nil: blocks.insert(bounds[0]!)
            case 2 where bounds[0] != nil && bounds[1] != nil && bounds[0]! <= bounds[1]!: blocks.formUnion(bounds[0]!...bounds[1]!)
            default: throw QTaleError.invalidArgument("--skip-pattern '\(text)': '\(part)' is not a block or a range like 9-12")
            }
        }
        return blocks
    }

    /// The forced pattern's decision: a golden-ratio sequence over (token, routed block) pairs, so every
    /// block and every token sees about the same ratio, deterministically.
    static func forcedExecutes(position: Int, block: Int, ratio: Double, configuration c: RouterConfiguration, layers: Int) -> Bool {
        let routed = layers - c.alwaysOnBlocks
        guard routed > 0 else { return true }
        let routedRatio = (ratio * Double(layers) - Double(c.alwaysOnBlocks)) / Double(routed)
        let index = Double(position * routed + (block - c.alwaysOnBlocks))
        let phase = (index * 0.618_033_988_749_894_9).truncatingRemainder(dividingBy: 1)
        return phase < routedRatio
    }
}
