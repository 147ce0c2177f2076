import Foundation
import QTaleCore

/// What the routers do, for QTALE's diagnostics (method.md §2): the execution ratio of each block, the
/// histogram of router logit gaps |logit_exec − logit_skip| (small gaps let the Gumbel noise flip
/// decisions: exploration), and the flip rate (share of decisions the noise changed against the
/// noiseless argmax). Gathered over the steps given to ``add(_:)`` (the CLI uses the last epoch).
public struct TrainingDiagnostics: Codable, Sendable {
    public var blocks: Int
    public var targetRatio: Double
    /// Per block: executed / decided over routed tokens (1 for always-on blocks).
    public var executionRatioPerBlock: [Double]
    /// Mean r_t over routed tokens (always-on blocks included).
    public var executionRatio: Double
    public var flipRate: Double
    public var meanEntropy: Double
    /// Histogram of |logit_exec − logit_skip| over all routed decisions: `counts[i]` in `[edges[i], edges[i+1])`,
    /// the last bin open above.
    public var gapHistogramEdges: [Double]
    public var gapHistogramCounts: [Int]
    /// The same histogram per routed block (rows follow `routedBlocks`).
    public var routedBlocks: [Int]
    public var gapHistogramPerBlock: [[Int]]
    public var decisions: Int
    public var steps: Int

    static let binWidth = 0.5, bins = 20

    public init(blocks: Int, targetRatio: Double, routedBlocks: [Int]) {
        self.blocks = blocks
        self.targetRatio = targetRatio
        executionRatioPerBlock = []
        executionRatio = 0
        flipRate = 0
        meanEntropy = 0
        gapHistogramEdges = (0...Self.bins).map { Double($0) * Self.binWidth }
        gapHistogramCounts = [Int](repeating: 0, count: Self.bins)
        self.routedBlocks = routedBlocks
        gapHistogramPerBlock = routedBlocks.map { _ in [Int](repeating: 0, count: Self.bins) }
        decisions = 0
        steps = 0
        total = SequenceStatistics(layers: blocks)
    }

    private var total: SequenceStatistics
    private enum CodingKeys: String, CodingKey {
        case blocks, targetRatio, executionRatioPerBlock, executionRatio, flipRate, meanEntropy, gapHistogramEdges,
             gapHistogramCounts, routedBlocks, gapHistogramPerBlock, decisions, steps
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        blocks = try c.decode(Int.self, forKey: .blocks)
        targetRatio = try c.decode(Double.self, forKey: .targetRatio)
        executionRatioPerBlock = try c.decode([Double].self, forKey: .executionRatioPerBlock)
        executionRatio = try c.decode(Double.self, forKey: .executionRatio)
        flipRate = try c.decode(Double.self, forKey: .flipRate)
        meanEntropy = try c.decode(Double.self, forKey: .meanEntropy)
        gapHistogramEdges = try c.decode([Double].self, forKey: .gapHistogramEdges)
        gapHistogramCounts = try c.decode([Int].self, forKey: .gapHistogramCounts)
        routedBlocks = try c.decode([Int].self, forKey: .routedBlocks)
        gapHistogramPerBlock = try c.decode([[Int]].self, forKey: .gapHistogramPerBlock)
        decisions = try c.decode(Int.self, forKey: .decisions)
        steps = try c.decode(Int.self, forKey: .steps)
        total = SequenceStatistics(layers: blocks)
    }

    /// Adds one step's statistics (collected with logit gaps).
    public mutating func add(_ stats: SequenceStatistics) {
        steps += 1
        for (i, l) in routedBlocks.enumerated() {
            for gap in stats.logitGaps[l] {
                let bin = min(Self.bins - 1, Int(Double(gap) / Self.binWidth))
                gapHistogramCounts[bin] += 1
                gapHistogramPerBlock[i][bin] += 1
            }
        }
        var s = stats
        s.logitGaps = [[Float]](repeating: [], count: blocks)
        total.add(s)
        let routed = Set(routedBlocks)
        executionRatioPerBlock = (0..<blocks).map { l in
            routed.contains(l) ? Double(total.executed[l]) / Double(max(1, total.decisions[l])) : 1
        }
        decisions = total.decisions.reduce(0, +)
        executionRatio = total.ratioSum / Double(max(1, total.routedTokens))
        flipRate = Double(total.flips) / Double(max(1, decisions))
        meanEntropy = total.entropySum / Double(max(1, decisions))
    }

    /// Two plots in one SVG document pair: the per-block execution ratio (with Ω), and the gap histogram.
    public func svg() -> (ratio: String, gaps: String) {
        var ratio = SVGLinePlot(title: String(format: "Execution ratio per block (mean %.3f, flip rate %.3f)", executionRatio, flipRate),
                                xLabel: "block", yLabel: "execution ratio")
        ratio.series = [.init(name: "executed / decided", points: executionRatioPerBlock.enumerated().map { .init(x: Double($0.offset), y: $0.element) })]
        ratio.referenceLines = [.init(name: "Ω", y: targetRatio)]
        ratio.yRange = 0...1
        var gaps = SVGLinePlot(title: "Router logit gaps |logit_exec − logit_skip|", xLabel: "gap (bin start)", yLabel: "share of decisions")
        let n = Double(max(1, gapHistogramCounts.reduce(0, +)))
        gaps.series = [.init(name: "all routed blocks", points: gapHistogramCounts.enumerated().map { .init(x: gapHistogramEdges[$0.offset], y: Double($0.element) / n) })]
        return (ratio.render(), gaps.render())
    }
}
