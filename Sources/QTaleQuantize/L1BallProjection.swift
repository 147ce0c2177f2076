import Dispatch
import Foundation

/// Euclidean projection onto the ℓ1 ball `{u : ‖u‖₁ ≤ radius}` (Duchi, Shalev-Shwartz, Singer and
/// Chandra, "Efficient Projections onto the l1-Ball for Learning in High Dimensions", ICML 2008).
///
/// MagR's proximal step needs it: the proximal operator of the ℓ∞ norm is the residual of an
/// ℓ1-ball projection (Moreau decomposition), see ``MagR``.
///
/// **The projection is a soft threshold.** For `‖v‖₁ > radius` the projection is
/// `u_i = sign(v_i)·max(|v_i| − θ, 0)` with the unique `θ > 0` that solves
/// `Σ_i max(|v_i| − θ, 0) = radius`; inside the ball `θ = 0` and `u = v`. Everything here computes
/// that level θ (``threshold(_:radius:)``), then applies it. Sums are accumulated in `Double` so
/// that θ stays accurate for long rows whose entries are far larger than the radius.
///
/// Two ways to find θ, with the same result:
/// - ``thresholdBySorting(_:radius:)``: Duchi et al.'s Figure 1 algorithm (sort `|v|` descending,
///   `ρ = max{j : μ_j − (Σ_{i≤j} μ_i − radius)/j > 0}`, `θ = (Σ_{i≤ρ} μ_i − radius)/ρ`), O(n log n).
///   It is the one MagR's reference code (`MagR.py`, `project_onto_l1_ball`) runs on the GPU.
/// - ``threshold(_:radius:)``: the same θ by active-set filtering (Michelot 1986, the idea behind
///   Condat 2016): start with every entry active, set `θ = (Σ_active |v_i| − radius)/|active|`, drop
///   the entries with `|v_i| ≤ θ`, repeat until nothing is dropped. θ only grows and every dropped
///   entry lies below the final θ, so the fixed point is exact. It needs a few linear passes instead
///   of a sort, which matters because MagR projects every row of every weight matrix 200 times; with
///   MagR's small radii the active set shrinks to the few largest entries within a handful of passes.
///   After ``maxFilterPasses`` passes it falls back to sorting the remaining active entries, so the
///   worst case stays O(n log n).
public enum L1BallProjection {
    /// Filtering passes before ``threshold(_:radius:)`` sorts what is left.
    public static let maxFilterPasses = 24

    /// The soft-threshold level θ ≥ 0 of the projection of `v` onto the ball of `radius` (θ = 0 when
    /// `v` is already inside the ball), by active-set filtering. `scratch` needs `v.count` elements.
    public static func threshold(_ v: UnsafeBufferPointer<Float>, radius: Float,
                                 scratch: UnsafeMutablePointer<Float>) -> Float {
        precondition(radius > 0, "L1BallProjection: radius must be positive")
        let n = v.count
        guard n > 0 else { return 0 }
        let r = Double(radius)
        var sum = 0.0
        for i in 0..<n {
            let a = abs(v[i])
            scratch[i] = a
            sum += Double(a)
        }
        if sum <= r { return 0 }
        var count = n
        var theta = (sum - r) / Double(count)
        var passes = 0
        while true {
            // Keep the entries strictly above θ (compacting in place) and re-solve for θ on them.
            let t = Float(theta)
            var kept = 0
            var keptSum = 0.0
            for i in 0..<count {
                let a = scratch[i]
                if a > t {
                    scratch[kept] = a
                    kept += 1
                    keptSum += Double(a)
                }
            }
            if kept == count || kept == 0 { break }
            count = kept
            theta = (keptSum - r) / Double(count)
            passes += 1
            if passes >= maxFilterPasses {
                return sortedThreshold(UnsafeMutableBufferPointer(start: scratch, count: count), radius: r)
            }
        }
        return Float(max(theta, 0))
    }

    /// Convenience form of ``threshold(_:radius:scratch:)`` that allocates its own scratch.
    public static func threshold(_ v: [Float], radius: Float) -> Float {
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(v.count, 1))
        defer { scratch.deallocate() }
        return v.withUnsafeBufferPointer { threshold($0, radius: radius, scratch: scratch) }
    }

    /// The same θ by Duchi et al.'s sort-based algorithm (their Figure 1).
    public static func thresholdBySorting(_ v: [Float], radius: Float) -> Float {
        precondition(radius > 0, "L1BallProjection: radius must be positive")
        var mags = v.map { abs($0) }
        let r = Double(radius)
        if mags.reduce(0.0, { $0 + Double($1) }) <= r { return 0 }
        return mags.withUnsafeMutableBufferPointer { sortedThreshold($0, radius: r) }
    }

    /// Duchi et al. Figure 1 on magnitudes whose sum exceeds `radius`; sorts `mags` in place.
    static func sortedThreshold(_ mags: UnsafeMutableBufferPointer<Float>, radius: Double) -> Float {
        var mags = mags
        mags.sort(by: >)
        var cumulative = 0.0
        var bestCumulative = 0.0
        var rho = 0
        for (j, mu) in mags.enumerated() {
            cumulative += Double(mu)
            // μ_j·j > Σ_{i≤j} μ_i − radius ⇔ entry j stays positive after thresholding at level j.
            if Double(mu) * Double(j + 1) > cumulative - radius {
                rho = j + 1
                bestCumulative = cumulative
            }
        }
        guard rho > 0 else { return 0 }
        return Float(max((bestCumulative - radius) / Double(rho), 0))
    }

    /// Projects `v` onto the ball of `radius` in place.
    public static func project(_ v: inout [Float], radius: Float) {
        let theta = threshold(v, radius: radius)
        guard theta > 0 else { return }
        for i in v.indices { v[i] = softThreshold(v[i], theta) }
    }

    /// Projects every segment of `segmentLength` consecutive elements of every row of the row-major
    /// `[rows × columns]` matrix onto the ball of `radius`, in place; the last segment of a row is
    /// shorter when `columns` is not a multiple of `segmentLength`. `segmentLength = nil` projects
    /// whole rows. Rows run in parallel.
    public static func projectRows(_ matrix: inout [Float], rows: Int, columns: Int,
                                   segmentLength: Int? = nil, radius: Float) {
        precondition(matrix.count == rows * columns, "L1BallProjection: matrix has the wrong size")
        matrix.withUnsafeMutableBufferPointer { m in
            forEachSegment(m.baseAddress!, rows: rows, columns: columns, segmentLength: segmentLength,
                           radius: radius) { segment, theta in
                guard theta > 0 else { return }
                for i in segment.indices { segment[i] = softThreshold(segment[i], theta) }
            }
        }
    }

    /// Finds θ for every segment of every row (as ``projectRows(_:rows:columns:segmentLength:radius:)``
    /// splits them) and hands the segment with its θ to `body`. Rows are shared out over the CPU cores;
    /// `body` may modify the segment it is given.
    static func forEachSegment(_ base: UnsafeMutablePointer<Float>, rows: Int, columns: Int,
                               segmentLength: Int?, radius: Float,
                               _ body: (UnsafeMutableBufferPointer<Float>, Float) -> Void) {
        let segment = max(1, min(segmentLength ?? columns, max(columns, 1)))
        guard rows > 0, columns > 0 else { return }
        let workers = min(rows, ProcessInfo.processInfo.activeProcessorCount)
        let rowsPerWorker = (rows + workers - 1) / workers
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: segment)
            defer { scratch.deallocate() }
            let end = min(rows, (worker + 1) * rowsPerWorker)
            var row = worker * rowsPerWorker
            while row < end {
                var start = 0
                while start < columns {
                    let length = min(segment, columns - start)
                    let pointer = base + row * columns + start
                    let theta = threshold(UnsafeBufferPointer(start: pointer, count: length), radius: radius,
                                          scratch: scratch)
                    body(UnsafeMutableBufferPointer(start: pointer, count: length), theta)
                    start += length
                }
                row += 1
            }
        }
    }

    @inline(__always) static func softThreshold(_ x: Float, _ theta: Float) -> Float {
        let m = abs(x) - theta
        return m > 0 ? (x < 0 ? -m : m) : 0
    }
}
