import Dispatch
import Foundation
import QTaleCore

/// The pieces of AWQ's activation-aware scale search (Lin et al. 2023; `docs/method.md` §3). The walk
/// over decoder blocks, the forward passes and the folding of `1/s` into the previous op belong to the
/// caller; this file supplies the statistics, the candidate scales, the scaled fake-quantization and the
/// arg-min loop.
///
/// **Why scales help.** Quantization error on weight column `c` reaches the output multiplied by the
/// activations of input `c`. Multiplying that column by `s[c] > 1` (and dividing input `c` by it, which
/// the previous op absorbs) leaves the float product unchanged, `(W·diag(s))·(diag(s)⁻¹x) = W·x`, but
/// puts salient columns on a finer share of the group's grid. The search picks how strongly `s` follows
/// the activation magnitudes: `s = s_x^α` for α on a grid, scored by the caller's output error.
///
/// Matched against `awq/quantize/auto_scale.py` in mit-han-lab/llm-awq (`get_act_scale`,
/// `_search_module_scale`): `s_x = mean |x|` over every token; ratios `i / 20` for `i = 0 ..< 20`;
/// `s = clamp(s_x^α, min: 1e-4)`, then `s / sqrt(max(s)·min(s))`; the candidate weight is
/// `Q(W·diag(s)) / s`; the loss is evaluated for every ratio and the first strict minimum is kept
/// (`loss < best`), so a tie keeps the smaller α. AutoAWQ (casper-hansen/AutoAWQ,
/// `awq/quantize/quantizer.py`, `_compute_best_scale`) defaults to "duo scaling",
/// `s = clamp(s_x^α / (w_mean^(1−α) + 1e-4), min: 1e-4)`; it is available through `weightMagnitude`.
public enum AWQScaleSearch {
    /// Ratios per search: α = i / 20, i = 0 ..< 20 (`n_grid = 20`).
    public static let gridSize = 20
    /// Lower bound on a candidate scale before normalisation (`clamp(min=1e-4)`).
    public static let minimumScale = 1e-4

    /// `s_x[c] = mean_t |x[t, c]|` over the row-major `[tokens × columns]` activations of the linears'
    /// shared input. Accumulates in blocks of float32 SIMD sums folded into float64.
    public static func activationMagnitude(_ x: UnsafeBufferPointer<Float>, tokens: Int, columns: Int) throws -> [Float] {
        guard tokens > 0, columns > 0, x.count == tokens * columns else {
            throw QTaleError.invalidArgument("AWQ: \(x.count) activations do not form \(tokens) × \(columns)")
        }
        let workers = min(ProcessInfo.processInfo.activeProcessorCount, max(1, tokens / 64))
        var partial = [[Double]](repeating: [Double](repeating: 0, count: columns), count: workers)
        partial.withUnsafeMutableBufferPointer { partial in
            let base = x.baseAddress!
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                let begin = tokens * worker / workers, end = tokens * (worker + 1) / workers
                var sums = [Double](repeating: 0, count: columns)
                var block = [Float](repeating: 0, count: columns)
                var t = begin
                while t < end {
                    // Up to 256 tokens in float32, then into float64: cheap and accurate.
                    let blockEnd = min(end, t + 256)
                    for i in 0..<columns { block[i] = 0 }
                    while t < blockEnd {
                        let row = base + t * columns
                        for c in 0..<columns { block[c] += abs(row[c]) }
                        t += 1
                    }
                    for c in 0..<columns { sums[c] += Double(block[c]) }
                }
                partial[worker] = sums
            }
        }
        var magnitude = [Float](repeating: 0, count: columns)
        for c in 0..<columns {
            var s = 0.0
            for w in 0..<workers { s += partial[w][c] }
            magnitude[c] = Float(s / Double(tokens))
        }
        return magnitude
    }

    public static func activationMagnitude(_ x: [Float], tokens: Int, columns: Int) throws -> [Float] {
        try x.withUnsafeBufferPointer { try activationMagnitude($0, tokens: tokens, columns: columns) }
    }

    /// AutoAWQ's weight statistic for duo scaling: every group of every row divided by its largest |w|
    /// (+1e-6), then the mean over all rows of all the linears that share the input, per input column.
    /// `weights` are row-major `[rows_i × columns]` matrices.
    public static func weightMagnitude(_ weights: [[Float]], columns: Int, groupSize: Int) throws -> [Float] {
        guard columns > 0, groupSize > 0 else { throw QTaleError.invalidArgument("AWQ: empty weight statistic") }
        var sums = [Double](repeating: 0, count: columns)
        var rowCount = 0
        for w in weights {
            guard w.count % columns == 0 else {
                throw QTaleError.invalidArgument("AWQ: a weight of \(w.count) values is not a multiple of \(columns) columns")
            }
            let rows = w.count / columns
            rowCount += rows
            for r in 0..<rows {
                var start = 0
                while start < columns {
                    let end = min(columns, start + groupSize)
                    var m: Float = 0
                    for k in start..<end { m = max(m, abs(w[r * columns + k])) }
                    let inverse = 1 / (Double(m) + 1e-6)
                    for k in start..<end { sums[k] += Double(abs(w[r * columns + k])) * inverse }
                    start = end
                }
            }
        }
        guard rowCount > 0 else { throw QTaleError.invalidArgument("AWQ: no weights for the weight statistic") }
        return sums.map { Float($0 / Double(rowCount)) }
    }

    /// The ratios α searched: `i / gridSize`, `i = 0 ..< gridSize`.
    public static func ratios(gridSize: Int = gridSize) -> [Double] {
        (0..<gridSize).map { Double($0) / Double(gridSize) }
    }

    /// One candidate: `s = clamp(s_x^α, min: 1e-4)` (with `weightMagnitude`, AutoAWQ's
    /// `clamp(s_x^α / (w_mean^(1−α) + 1e-4), min: 1e-4)`), then `s / sqrt(max(s)·min(s))`, which centres
    /// the scales geometrically around 1 so that neither the weights nor the folded inverse drift in
    /// magnitude. Computed in float64 (`0^0 = 1`: at α = 0 every scale is 1).
    public static func candidateScale(activationMagnitude: [Float], ratio: Double,
                                      weightMagnitude: [Float]? = nil) -> [Float] {
        precondition(weightMagnitude == nil || weightMagnitude!.count == activationMagnitude.count,
                     "AWQ: activation and weight statistics differ in length")
        var s = activationMagnitude.indices.map { c -> Double in
            var v = pow(Double(activationMagnitude[c]), ratio)
            if let w = weightMagnitude { v /= pow(Double(w[c]), 1 - ratio) + 1e-4 }
            return max(v, minimumScale)  // NaN (a NaN statistic) becomes 1e-4 here too, never NaN
        }
        guard let hi = s.max(), let lo = s.min() else { return [] }
        let norm = sqrt(hi * lo)
        for c in s.indices { s[c] /= norm }
        return s.map { Float($0) }
    }

    /// Every candidate of the grid, in ratio order.
    public static func candidateScales(activationMagnitude: [Float], gridSize: Int = gridSize,
                                       weightMagnitude: [Float]? = nil) -> [[Float]] {
        ratios(gridSize: gridSize).map {
            candidateScale(activationMagnitude: activationMagnitude, ratio: $0, weightMagnitude: weightMagnitude)
        }
    }

    /// `Q(W·diag(s))·diag(s)⁻¹`: what the linear computes, in the original input space, once `W` is
    /// scaled by `s`, quantized (dequantized exactly as engines will, via ``RoundToNearest``) and the
    /// inputs are divided by `s`. The caller runs its block with this weight and measures the loss.
    public static func scaledDequantized(weight: [Float], rows: Int, columns: Int, scales: [Float],
                                         quantizer: GroupQuantizer) throws -> [Float] {
        guard scales.count == columns else {
            throw QTaleError.invalidArgument("AWQ: \(scales.count) scales for \(columns) input columns")
        }
        guard rows > 0, weight.count == rows * columns else {
            throw QTaleError.invalidArgument("AWQ: \(weight.count) weights do not form \(rows) × \(columns)")
        }
        var scaled = weight
        for r in 0..<rows {
            for c in 0..<columns { scaled[r * columns + c] *= scales[c] }
        }
        var out = try RoundToNearest.fakeQuantize(scaled, rows: rows, columns: columns, quantizer: quantizer)
        for r in 0..<rows {
            for c in 0..<columns { out[r * columns + c] /= scales[c] }
        }
        return out
    }

    /// A linear layer taking part in a scale search: a row-major `[rows × columns]` weight.
    public struct Linear: Sendable {
        public var weight: [Float]
        public var rows: Int
        public var columns: Int
        public init(weight: [Float], rows: Int, columns: Int) {
            self.weight = weight
            self.rows = rows
            self.columns = columns
        }
    }

    /// The outcome of ``searchBestScale(candidates:linears:quantizer:loss:)``.
    public struct Result: Sendable {
        /// Index of the chosen candidate (its α is `index / gridSize` for ``candidateScales``).
        public var index: Int
        /// The chosen scales: multiply the linears' weight columns by them, divide the previous op's
        /// output channels by them.
        public var scales: [Float]
        /// The loss of every candidate, in order.
        public var losses: [Double]
    }

    /// Scores every candidate: for each, every linear's ``scaledDequantized(weight:rows:columns:scales:quantizer:)``
    /// weight (same order as `linears`) is handed to `loss`, which returns the caller's error (AWQ: the mean
    /// squared difference of the block's output against full precision). Keeps the first strict minimum.
    /// Throws when no candidate has a finite loss (the reference raises there too).
    public static func searchBestScale(candidates: [[Float]], linears: [Linear], quantizer: GroupQuantizer,
                                       loss: ([[Float]]) throws -> Double) throws -> Result {
        guard !candidates.isEmpty, !linears.isEmpty else {
            throw QTaleError.invalidArgument("AWQ: a scale search needs candidates and linears")
        }
        var best = Double.infinity
        var bestIndex = -1
        var losses: [Double] = []
        for (index, scales) in candidates.enumerated() {
            let weights = try linears.map {
                try scaledDequantized(weight: $0.weight, rows: $0.rows, columns: $0.columns, scales: scales, quantizer: quantizer)
            }
            let value = try loss(weights)
            losses.append(value)
            if value < best {
                best = value
                bestIndex = index
            }
        }
        guard bestIndex >= 0 else {
            throw QTaleError.invalidArgument("AWQ: no scale candidate gave a finite loss (losses: \(losses))")
        }
        return Result(index: bestIndex, scales: candidates[bestIndex], losses: losses)
    }
}
