import Dispatch
import Foundation
import QTaleCore

/// AWQ's weight clipping search (`docs/method.md` §3): for every output channel and quantization group,
/// try clamping the group to `[−m, m]` with `m = max|w| · (1 − i/20)`, `i = 0 ..< 10`, quantize, and keep
/// the `m` whose quantized group changes the group's partial dot products with the calibration inputs
/// least. Clipping a few outliers shortens the grid step for all the other weights of the group; the
/// search decides per group whether that trade pays on real inputs.
///
/// The error of a candidate is AWQ's `mean_t (Σ_{k∈group} x[t,k]·(q_k − w_k))²` over sampled tokens,
/// with `q` the group as engines will dequantize it (``GroupQuantizer``, binary16 scale and offset).
///
/// Matched against `awq/quantize/auto_clip.py` in mit-han-lab/llm-awq (`auto_clip_layer`, as in AutoAWQ's
/// `_compute_best_clip`): `n_grid = 20`, `max_shrink = 0.5` (so `i = 0 ..< 10`, shrinking to at most 55%);
/// `org_max = |w|.amax` over the group; `max_val = org_max·(1 − i/20)` in float32; `clamp(w, −max_val,
/// max_val)` then the asymmetric quantizer; tokens `0, s, 2s, …` with `s = max(1, tokens / 512)`
/// (`input_feat[:, 0::n_token // n_sample_token]`; AutoAWQ adds the `max(1, ·)`); the comparison is
/// `err < min_errs` starting from the unclipped candidate, so clipping is only chosen when it strictly
/// helps and the result is never worse than no clipping. The reference skips q and k (the attention
/// scores amplify their errors); that choice is the caller's.
///
/// **Speed.** The direct evaluation costs `tokens × columns` multiply-adds per row and candidate
/// (1536 × 576 × 512 × 10 ≈ 4.5e9 for SmolLM2's up_proj). Since the error is the quadratic form
/// `dᵀ (X_gᵀX_g) d / T` of the group's difference `d = q − w`, groups no longer than half the token count
/// use each group's Gram matrix instead, built once in float64: `groupSize²` multiply-adds per candidate
/// instead of `tokens × groupSize` (4× fewer at groups of 128 and 512 tokens, 16× at 32), and in
/// float64 the comparison between candidates is exact to far below any real difference. Longer groups
/// (per-channel quantization) evaluate directly in float32 SIMD. Rows are shared out over the cores.
/// Measured on the 2-core development machine, 1536 × 576 at 3 bits and 512 tokens: 0.62 s direct,
/// 0.36 s with Gram matrices at groups of 128, 0.20 s at groups of 32.
public enum AWQClipSearch {
    /// `n_grid`.
    public static let gridSize = 20
    /// `max_shrink`: candidates `i = 0 ..< Int(maxShrink · gridSize)`.
    public static let maxShrink = 0.5
    /// `n_sample_token`.
    public static let sampleTokenCount = 512

    /// How the error of a candidate is computed; both give the same value up to rounding.
    enum Evaluation { case automatic, gram, direct }

    /// The reference's token sample: rows `0, s, 2s, …` of the `[tokens × columns]` inputs with
    /// `s = max(1, tokens / count)`: every token below `2·count`, else between `count` and `2·count − 1`.
    public static func sampleTokens(_ x: [Float], tokens: Int, columns: Int,
                                    count: Int = sampleTokenCount) throws -> (values: [Float], tokens: Int) {
        guard tokens > 0, columns > 0, x.count == tokens * columns, count > 0 else {
            throw QTaleError.invalidArgument("AWQ clip: \(x.count) inputs do not form \(tokens) × \(columns)")
        }
        let stride = max(1, tokens / count)
        if stride == 1 { return (x, tokens) }
        let kept = Array(Swift.stride(from: 0, to: tokens, by: stride))
        var out = [Float]()
        out.reserveCapacity(kept.count * columns)
        for t in kept { out += x[(t * columns)..<((t + 1) * columns)] }
        return (out, kept.count)
    }

    /// The searched clip bounds.
    public struct Result: Sendable {
        /// `[rows × groupsPerRow]` clip maxima, to pass as `clipMaxima` to ``RoundToNearest`` (or to
        /// clamp the weight with ``clipped(_:rows:columns:maxima:groupSize:)``). An unclipped group
        /// keeps its own `max|w|`, which clamps nothing.
        public var maxima: [Float]
        /// The chosen candidate's error per group, `mean_t (partial dot difference)²`.
        public var errors: [Double]
        /// The unclipped (`i = 0`) error per group.
        public var unclippedErrors: [Double]
        /// The chosen `i` per group (`m = max|w|·(1 − i/20)`).
        public var shrinkSteps: [Int]
        public var groupsPerRow: Int
    }

    /// Searches the clip bounds of `weight` `[rows × columns]` (rows = output channels) against the
    /// inputs `[tokens × columns]` it multiplies (already scaled by AWQ's `1/s` when scales were applied).
    /// The inputs are sampled with ``sampleTokens(_:tokens:columns:count:)`` first unless
    /// `sampleTokens` is nil.
    public static func search(weight: [Float], rows: Int, columns: Int, inputs: [Float], tokens: Int,
                              quantizer: GroupQuantizer, gridSize: Int = gridSize, maxShrink: Double = maxShrink,
                              sampleTokens sampleCount: Int? = sampleTokenCount) throws -> Result {
        try search(weight: weight, rows: rows, columns: columns, inputs: inputs, tokens: tokens, quantizer: quantizer,
                   gridSize: gridSize, maxShrink: maxShrink, sampleTokens: sampleCount, evaluation: .automatic)
    }

    static func search(weight: [Float], rows: Int, columns: Int, inputs: [Float], tokens: Int,
                       quantizer: GroupQuantizer, gridSize: Int, maxShrink: Double, sampleTokens sampleCount: Int?,
                       evaluation: Evaluation) throws -> Result {
        guard rows > 0, columns > 0, weight.count == rows * columns else {
            throw QTaleError.invalidArgument("AWQ clip: \(weight.count) weights do not form \(rows) × \(columns)")
        }
        guard tokens > 0, inputs.count == tokens * columns else {
            throw QTaleError.invalidArgument("AWQ clip: \(inputs.count) inputs do not form \(tokens) × \(columns)")
        }
        guard gridSize > 0, maxShrink >= 0, maxShrink < 1 else {
            throw QTaleError.invalidArgument("AWQ clip: grid \(gridSize) and shrink \(maxShrink) are out of range")
        }
        let (x, t) = if let sampleCount {
            try sampleTokens(inputs, tokens: tokens, columns: columns, count: sampleCount)
        } else {
            (inputs, tokens)
        }
        let groupSize = quantizer.format.groupSize
        let groups = quantizer.format.groupsPerRow(columns: columns)
        let steps = max(1, Int(maxShrink * Double(gridSize)))
        let factors = (0..<steps).map { Float(1 - Double($0) / Double(gridSize)) }
        let useGram = switch evaluation {
        case .gram: true
        case .direct: false
        case .automatic: 2 * min(groupSize, columns) <= t
        }
        let grams = useGram ? groupGrams(x, tokens: t, columns: columns, groupSize: groupSize) : []

        var maxima = [Float](repeating: 0, count: rows * groups)
        var errors = [Double](repeating: 0, count: rows * groups)
        var unclipped = [Double](repeating: 0, count: rows * groups)
        var chosen = [Int](repeating: 0, count: rows * groups)
        let workers = min(rows, 4 * ProcessInfo.processInfo.activeProcessorCount)
        let inverseTokens = 1 / Double(t)
        weight.withUnsafeBufferPointer { w in
            x.withUnsafeBufferPointer { x in
                maxima.withUnsafeMutableBufferPointer { maxima in
                    errors.withUnsafeMutableBufferPointer { errors in
                        unclipped.withUnsafeMutableBufferPointer { unclipped in
                            chosen.withUnsafeMutableBufferPointer { chosen in
                                DispatchQueue.concurrentPerform(iterations: workers) { worker in
                                    let length = min(groupSize, columns)
                                    let d = UnsafeMutablePointer<Float>.allocate(capacity: length)
                                    let dd = UnsafeMutablePointer<Double>.allocate(capacity: length)
                                    defer { d.deallocate(); dd.deallocate() }
                                    for r in (rows * worker / workers)..<(rows * (worker + 1) / workers) {
                                        for g in 0..<groups {
                                            let start = g * groupSize, end = min(columns, start + groupSize)
                                            let n = end - start
                                            let values = w.baseAddress! + r * columns + start
                                            var lo = values[0], hi = values[0]
                                            for k in 0..<n {
                                                lo = min(lo, values[k])
                                                hi = max(hi, values[k])
                                            }
                                            let orgMax = max(abs(lo), abs(hi))
                                            var best = Double.infinity, bestStep = 0
                                            for (step, factor) in factors.enumerated() {
                                                let bound = orgMax * factor
                                                let p = quantizer.parameters(minimum: lo, maximum: hi, clip: bound)
                                                for k in 0..<n { d[k] = p.quantize(values[k]) - values[k] }
                                                let error: Double
                                                if useGram {
                                                    for k in 0..<n { dd[k] = Double(d[k]) }
                                                    error = quadraticForm(grams[g], dd, n) * inverseTokens
                                                } else {
                                                    error = directError(x.baseAddress! + start, stride: columns,
                                                                        tokens: t, d, n) * inverseTokens
                                                }
                                                if step == 0 { unclipped[r * groups + g] = error }
                                                if error < best {
                                                    best = error
                                                    bestStep = step
                                                }
                                            }
                                            // The unclipped candidate always scores (errors are finite for
                                            // finite inputs), so best is its error or lower.
                                            maxima[r * groups + g] = orgMax * factors[bestStep]
                                            errors[r * groups + g] = best.isFinite ? best : unclipped[r * groups + g]
                                            chosen[r * groups + g] = bestStep
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Result(maxima: maxima, errors: errors, unclippedErrors: unclipped, shrinkSteps: chosen, groupsPerRow: groups)
    }

    /// `weight` with every group clamped to `[−m, m]` (`maxima` `[rows × groupsPerRow]`), as the
    /// reference's `apply_clip` does before the final quantization.
    public static func clipped(_ weight: [Float], rows: Int, columns: Int, maxima: [Float], groupSize: Int) throws -> [Float] {
        let groups = (columns + groupSize - 1) / groupSize
        guard weight.count == rows * columns, maxima.count == rows * groups else {
            throw QTaleError.invalidArgument("AWQ clip: maxima must be [\(rows) × \(groups)] for a \(rows) × \(columns) weight")
        }
        var out = weight
        for r in 0..<rows {
            for k in 0..<columns {
                let m = maxima[r * groups + k / groupSize]
                out[r * columns + k] = min(max(out[r * columns + k], -m), m)
            }
        }
        return out
    }

    /// `X_gᵀX_g` `[n × n]` in float64 for every group's columns of the `[tokens × columns]` inputs.
    static func groupGrams(_ x: [Float], tokens: Int, columns: Int, groupSize: Int) -> [[Double]] {
        let groups = (columns + groupSize - 1) / groupSize
        var grams = [[Double]](repeating: [], count: groups)
        x.withUnsafeBufferPointer { x in
            grams.withUnsafeMutableBufferPointer { grams in
                DispatchQueue.concurrentPerform(iterations: groups) { g in
                    let start = g * groupSize, n = min(columns, start + groupSize) - start
                    var gram = [Double](repeating: 0, count: n * n)
                    var row = [Double](repeating: 0, count: n)
                    gram.withUnsafeMutableBufferPointer { gram in
                        row.withUnsafeMutableBufferPointer { row in
                            for t in 0..<tokens {
                                let xt = x.baseAddress! + t * columns + start
                                for k in 0..<n { row[k] = Double(xt[k]) }
                                // Rank-one update of the upper triangle; mirrored below.
                                for i in 0..<n {
                                    let xi = row[i]
                                    if xi == 0 { continue }
                                    axpy(xi, row.baseAddress! + i, gram.baseAddress! + i * n + i, n - i)
                                }
                            }
                            for i in 0..<n {
                                for j in 0..<i { gram[i * n + j] = gram[j * n + i] }
                            }
                        }
                    }
                    grams[g] = gram
                }
            }
        }
        return grams
    }

    /// `y += a·x` over `n` doubles.
    @inline(__always) static func axpy(_ a: Double, _ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, _ n: Int) {
        var i = 0
        let va = SIMD8<Double>(repeating: a)
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
        while i + 8 <= n {
            var vy = ry.loadUnaligned(fromByteOffset: i * 8, as: SIMD8<Double>.self)
            vy.addProduct(va, rx.loadUnaligned(fromByteOffset: i * 8, as: SIMD8<Double>.self))
            ry.storeBytes(of: vy, toByteOffset: i * 8, as: SIMD8<Double>.self)
            i += 8
        }
        while i < n {
            y[i] += a * x[i]
            i += 1
        }
    }

    /// `dᵀ G d` for the row-major symmetric `[n × n]` `gram`.
    @inline(__always) static func quadraticForm(_ gram: [Double], _ d: UnsafeMutablePointer<Double>, _ n: Int) -> Double {
        gram.withUnsafeBufferPointer { g in
            var total = 0.0
            let rd = UnsafeRawPointer(d)
            for i in 0..<n {
                let di = d[i]
                if di == 0 { continue }
                let rg = UnsafeRawPointer(g.baseAddress! + i * n)
                var acc = SIMD8<Double>(repeating: 0)
                var j = 0
                while j + 8 <= n {
                    acc.addProduct(rg.loadUnaligned(fromByteOffset: j * 8, as: SIMD8<Double>.self),
                                   rd.loadUnaligned(fromByteOffset: j * 8, as: SIMD8<Double>.self))
                    j += 8
                }
                var s = acc.sum()
                while j < n {
                    s += g[i * n + j] * d[j]
                    j += 1
                }
                total += di * s
            }
            return max(total, 0)
        }
    }

    /// `Σ_t (Σ_k x[t, k]·d[k])²` over `tokens` rows of `stride` floats starting at `x`.
    @inline(__always) static func directError(_ x: UnsafePointer<Float>, stride: Int, tokens: Int,
                                              _ d: UnsafeMutablePointer<Float>, _ n: Int) -> Double {
        var total = 0.0
        let rd = UnsafeRawPointer(d)
        for t in 0..<tokens {
            let rx = UnsafeRawPointer(x + t * stride)
            var acc = SIMD16<Float>(repeating: 0)
            var k = 0
            while k + 16 <= n {
                acc.addProduct(rx.loadUnaligned(fromByteOffset: k * 4, as: SIMD16<Float>.self),
                               rd.loadUnaligned(fromByteOffset: k * 4, as: SIMD16<Float>.self))
                k += 16
            }
            var s = acc.sum()
            while k < n {
                s += x[t * stride + k] * d[k]
                k += 1
            }
            total += Double(s) * Double(s)
        }
        return total
    }
}
