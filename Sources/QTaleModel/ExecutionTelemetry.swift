import Foundation
import QTaleCore

/// What token-adaptive execution saved: execution ratios, dense-equivalent against actual work and
/// weight bytes, KV-cache bytes, and the per-token × per-block execution map.
public struct ExecutionTelemetry: Codable, Sendable {
    public var blocks: Int
    /// Tokens that executed each block.
    public var executedPerBlock: [Int]
    /// Tokens processed (each passes every block, executed or skipped).
    public var tokens = 0
    /// One string per token in position order, one character per block: "1" executed, "0" skipped.
    public var map: [String] = []
    public var denseFLOPs = 0.0, actualFLOPs = 0.0
    public var denseWeightBytes = 0, actualWeightBytes = 0
    /// Work and bytes of the routers themselves (included in the actual figures).
    public var routerFLOPs = 0.0, routerWeightBytes = 0
    /// KV-cache bytes held, and what a dense model would hold for the same tokens.
    public var kvCacheBytes = 0, denseKVCacheBytes = 0

    public init(blocks: Int) {
        self.blocks = blocks
        executedPerBlock = [Int](repeating: 0, count: blocks)
    }

    /// Executed share of (token, block) pairs, always-on blocks included.
    public var executionRatio: Double {
        tokens == 0 ? 1 : Double(executedPerBlock.reduce(0, +)) / Double(tokens * blocks)
    }

    /// Adds another run's counts (e.g. one evaluation window or question each); KV-cache figures keep
    /// the largest context seen, as each run starts from an empty cache.
    public mutating func accumulate(_ other: ExecutionTelemetry) {
        precondition(other.blocks == blocks, "telemetry of models with different block counts")
        for l in 0..<blocks { executedPerBlock[l] += other.executedPerBlock[l] }
        tokens += other.tokens
        map += other.map
        denseFLOPs += other.denseFLOPs
        actualFLOPs += other.actualFLOPs
        denseWeightBytes += other.denseWeightBytes
        actualWeightBytes += other.actualWeightBytes
        routerFLOPs += other.routerFLOPs
        routerWeightBytes += other.routerWeightBytes
        kvCacheBytes = max(kvCacheBytes, other.kvCacheBytes)
        denseKVCacheBytes = max(denseKVCacheBytes, other.denseKVCacheBytes)
    }

    public var perBlockRatio: [Double] { executedPerBlock.map { tokens == 0 ? 1 : Double($0) / Double(tokens) } }

    /// Keys written into JSON (computed ratios included).
    enum CodingKeys: String, CodingKey {
        case blocks, executedPerBlock, tokens, map, denseFLOPs, actualFLOPs, denseWeightBytes, actualWeightBytes
        case routerFLOPs, routerWeightBytes, kvCacheBytes, denseKVCacheBytes, executionRatio, perBlockRatio
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        blocks = try c.decode(Int.self, forKey: .blocks)
        executedPerBlock = try c.decode([Int].self, forKey: .executedPerBlock)
        tokens = try c.decode(Int.self, forKey: .tokens)
        map = try c.decode([String].self, forKey: .map)
        denseFLOPs = try c.decode(Double.self, forKey: .denseFLOPs)
        actualFLOPs = try c.decode(Double.self, forKey: .actualFLOPs)
        denseWeightBytes = try c.decode(Int.self, forKey: .denseWeightBytes)
        actualWeightBytes = try c.decode(Int.self, forKey: .actualWeightBytes)
        routerFLOPs = try c.decode(Double.self, forKey: .routerFLOPs)
        routerWeightBytes = try c.decode(Int.self, forKey: .routerWeightBytes)
        kvCacheBytes = try c.decode(Int.self, forKey: .kvCacheBytes)
        denseKVCacheBytes = try c.decode(Int.self, forKey: .denseKVCacheBytes)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(blocks, forKey: .blocks)
        try c.encode(executedPerBlock, forKey: .executedPerBlock)
        try c.encode(tokens, forKey: .tokens)
        try c.encode(map, forKey: .map)
        try c.encode(denseFLOPs, forKey: .denseFLOPs)
        try c.encode(actualFLOPs, forKey: .actualFLOPs)
        try c.encode(denseWeightBytes, forKey: .denseWeightBytes)
        try c.encode(actualWeightBytes, forKey: .actualWeightBytes)
        try c.encode(routerFLOPs, forKey: .routerFLOPs)
        try c.encode(routerWeightBytes, forKey: .routerWeightBytes)
        try c.encode(kvCacheBytes, forKey: .kvCacheBytes)
        try c.encode(denseKVCacheBytes, forKey: .denseKVCacheBytes)
        try c.encode(executionRatio, forKey: .executionRatio)
        try c.encode(perBlockRatio, forKey: .perBlockRatio)
    }

    /// A one-paragraph summary for stderr.
    public var summary: String {
        String(format: "execution ratio %.3f | FLOPs %.2f of dense (%.1f / %.1f GFLOP) | weights read %.2f of dense (%.1f / %.1f MB) | KV cache %.2f MB of %.2f MB dense",
               executionRatio, denseFLOPs == 0 ? 1 : actualFLOPs / denseFLOPs, actualFLOPs / 1e9, denseFLOPs / 1e9,
               denseWeightBytes == 0 ? 1 : Double(actualWeightBytes) / Double(denseWeightBytes),
               Double(actualWeightBytes) / 1e6, Double(denseWeightBytes) / 1e6,
               Double(kvCacheBytes) / 1e6, Double(denseKVCacheBytes) / 1e6)
    }

    /// The execution map as an SVG heat map: tokens left to right, blocks top to bottom, executed cells dark.
    public func svgHeatMap(title: String = "Executed blocks per token") -> String {
        let cell = max(2, min(12, 1200 / max(1, map.count))), left = 60, top = 40
        let width = left + cell * map.count + 20, height = top + cell * blocks + 50
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" font-family="sans-serif" font-size="11">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(left)" y="20" font-size="14">\(title) (ratio \(String(format: "%.3f", executionRatio)))</text>

            """
        for (t, row) in map.enumerated() {
            for (l, c) in row.enumerated() {
                svg += "<rect x=\"\(left + t * cell)\" y=\"\(top + l * cell)\" width=\"\(cell)\" height=\"\(cell)\" fill=\"\(c == "1" ? "#1f4e79" : "#e8eef5")\"/>\n"
            }
        }
        for l in stride(from: 0, to: blocks, by: max(1, blocks / 10)) {
            svg += "<text x=\"\(left - 6)\" y=\"\(top + l * cell + cell)\" text-anchor=\"end\">\(l)</text>\n"
        }
        svg += "<text x=\"10\" y=\"\(top + cell * blocks / 2)\" transform=\"rotate(-90 10 \(top + cell * blocks / 2))\">block</text>\n"
        svg += "<text x=\"\(left)\" y=\"\(top + cell * blocks + 30)\">token position → (\(map.count) tokens; dark = executed)</text>\n</svg>\n"
        return svg
    }

    /// Writes JSON or SVG (by extension) atomically.
    public func export(to path: String) throws {
        let data: Data
        if path.hasSuffix(".svg") {
            data = Data(svgHeatMap().utf8)
        } else {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            data = try encoder.encode(self)
        }
        do {
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw QTaleError.io("cannot write '\(path)': \(error.localizedDescription)")
        }
    }
}
