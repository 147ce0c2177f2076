import Dispatch
import Foundation
import QTaleCore

/// MagR, weight magnitude reduction (Zhang et al., NeurIPS 2024; `docs/method.md` §5): a pre-processing
/// step before GPTQ or round-to-nearest that lowers each output channel's (or each group's) largest
/// weight magnitude while keeping the layer's output on the calibration activations. A smaller range
/// gives a finer quantization grid; the weights stay a plain matrix, so inference pays nothing.
///
/// For a weight `W` `[rows × columns]` (rows = output channels) and activations `X` `[tokens × columns]`
/// it runs proximal gradient descent on
///
///     min_W′  ½‖X̃ (W′ − W)ᵀ‖²_F + α Σ_r ‖W′_r‖_∞        (per channel; per group: Σ over groups)
///
/// where `X̃` is `X` with its singular values divided by the largest, so the gradient
/// `(W′ − W)·X̃ᵀX̃` is 1-Lipschitz and the step size is 1:
///
///     Z  = W′ − (W′ − W)·G̃,   G̃ = XᵀX / λ_max(XᵀX)
///     W′ = prox_{α‖·‖∞}(Z)   for every row (or every group of a row)
///
/// What was matched against the reference code (`MagR.py` in AozhongZhang/MagR):
/// - `W_proximal_preprocess` works on `Ŵ = Wᵀ` `[columns × rows]` with `Ŵ ← prox((Ŵ − XᵀX(Ŵ − Wᵀ))ᵀ)ᵀ`;
///   transposing gives the row form above (`G̃` is symmetric). The prox runs over dim 1 of
///   `[rows × columns]`, i.e. per output channel across its inputs; `W_proximal_preprocess_groupwise`
///   views each row as `[groups × groupSize]` and runs it per group of consecutive inputs.
/// - The reference rescales `X`'s singular values so that σ_max = 1 (an SVD); XᵀX then has largest
///   eigenvalue 1, which is what dividing the Gram matrix by its largest eigenvalue does. Any positive
///   multiple of `XᵀX` (GPTQ's `H = 2XᵀX/n`) gives the same `G̃`.
/// - α = 1e-3 per channel and 1e-4 per group (the repository's README); 200 iterations (README and
///   the per-channel function; the groupwise function's default is 150, the README says 200).
/// - The reference's `X` is the last calibration batch only (`add_batch` overwrites `self.X`); here the
///   caller passes the Gram matrix of all calibration tokens, as the paper states the objective.
/// - Groups: the reference requires `columns % groupSize == 0`; here a shorter last group (576
///   inputs in groups of 128) is its own group, as in the quantized layout.
///
/// The product `(W′ − W)·G̃` is `rows × columns²` multiply-adds per iteration (576 × 1536² for
/// SmolLM2's down_proj), so it goes through ``MatrixMultiplying`` and runs on the engine: since `G̃` is
/// symmetric, `(W′ − W)·G̃ = (W′ − W)·G̃ᵀ = multiplyTransposed(W′ − W, G̃)`.
public struct MagR: Sendable {
    /// Which block of weights shares one ℓ∞ penalty.
    public enum Granularity: Hashable, Sendable {
        /// One penalty per output channel (row), for per-channel quantization.
        case perChannel
        /// One penalty per group of this many consecutive inputs within a row, for group-wise
        /// quantization with the same group size.
        case perGroup(Int)
    }

    public var granularity: Granularity
    /// The ℓ∞ penalty weight α.
    public var alpha: Float
    /// Proximal gradient iterations.
    public var iterations: Int

    /// α defaults to ``defaultAlpha(for:)``; 200 iterations as in the reference.
    public init(granularity: Granularity, alpha: Float? = nil, iterations: Int = 200) {
        self.granularity = granularity
        self.alpha = alpha ?? Self.defaultAlpha(for: granularity)
        self.iterations = iterations
    }

    /// The reference's penalty: 1e-3 per channel, 1e-4 per group (the paper tunes it for groups of 128).
    public static func defaultAlpha(for granularity: Granularity) -> Float {
        switch granularity {
        case .perChannel: 1e-3
        case .perGroup: 1e-4
        }
    }

    /// The range shrink β for the quantizer that follows MagR (`scale = β·(max − min)/(2^b − 1)`, the
    /// `beta` of the reference `quant.py` `Quantizer.configure`): MagR pulls the extremes in, and a
    /// slightly tighter grid then clips the few weights left near them at a lower cost than the
    /// coarser step everywhere. Values from `docs/method.md` §5 (the MagR paper's settings): 1.0 at
    /// 4 bits and above per channel, 0.9 at 3 bits and below per channel, 0.95 with groups (the paper
    /// uses groups of 128; the same value is used for every group size). The stored reference scripts
    /// leave `beta` at its default 1.0, so these values are the paper's, not the code's.
    public static func rangeShrink(bits: Int, groupSize: Int?) -> Float {
        if groupSize != nil { return 0.95 }
        return bits >= 4 ? 1.0 : 0.9
    }

    /// Runs MagR on `weight` `[rows × columns]` with the calibration Gram matrix `gram` `[columns ×
    /// columns]` (`XᵀX`, or any positive multiple of it; symmetric) and returns the adjusted weight.
    /// A zero Gram matrix (no signal on any input) returns the weight unchanged.
    public func preprocess(weight: [Float], rows: Int, columns: Int, gram: [Float],
                           multiplier: any MatrixMultiplying) throws -> [Float] {
        guard rows > 0, columns > 0, weight.count == rows * columns else {
            throw QTaleError.invalidArgument("MagR: weight has \(weight.count) values, expected \(rows) × \(columns)")
        }
        guard gram.count == columns * columns else {
            throw QTaleError.invalidArgument("MagR: Gram matrix has \(gram.count) values, expected \(columns) × \(columns)")
        }
        guard alpha > 0, alpha.isFinite, iterations >= 0 else {
            throw QTaleError.invalidArgument("MagR: α must be positive and the iteration count non-negative")
        }
        if case let .perGroup(g) = granularity, g <= 0 {
            throw QTaleError.invalidArgument("MagR: group size \(g) must be positive")
        }
        let lambda = gram.withUnsafeBufferPointer { Self.largestEigenvalue(ofSymmetric: $0, size: columns) }
        guard lambda > 0, lambda.isFinite else { return weight }
        let inverse = Float(1 / lambda)
        let normalised = gram.map { $0 * inverse }

        let segment: Int? = if case let .perGroup(g) = granularity { g } else { nil }
        var current = weight                                           // W′
        var difference = [Float](repeating: 0, count: rows * columns)  // W′ − W
        var product = [Float](repeating: 0, count: rows * columns)     // (W′ − W)·G̃
        for iteration in 0..<iterations {
            if iteration > 0 {  // W′ = W on entry, so the first gradient is zero
                for i in 0..<current.count { difference[i] = current[i] - weight[i] }
                try difference.withUnsafeBufferPointer { d in
                    try normalised.withUnsafeBufferPointer { g in
                        try product.withUnsafeMutableBufferPointer { p in
                            try multiplier.multiplyTransposed(d, rows: rows, g, rows: columns, inner: columns, into: p)
                        }
                    }
                }
                for i in 0..<current.count { current[i] -= product[i] }  // Z
            }
            Self.proximalLInfinity(&current, rows: rows, columns: columns, segmentLength: segment, alpha: alpha)
        }
        return current
    }

    /// `prox_{α‖·‖∞}(z) = z − α·Proj_{‖·‖₁≤1}(z/α)` for every row (or every segment of a row), in place.
    ///
    /// By the Moreau decomposition this is `z − Proj_{‖·‖₁≤α}(z)`, and with the projection a soft
    /// threshold at level θ (``L1BallProjection``) the residual is `z` clipped to `[−θ, θ]` (zero when
    /// `‖z‖₁ ≤ α`). It is computed in that clipped form, which is the same value as the reference's
    /// `x − scale·project(x/scale)` without its cancellation.
    public static func proximalLInfinity(_ z: inout [Float], rows: Int, columns: Int,
                                         segmentLength: Int?, alpha: Float) {
        precondition(z.count == rows * columns, "MagR: matrix has the wrong size")
        z.withUnsafeMutableBufferPointer { m in
            L1BallProjection.forEachSegment(m.baseAddress!, rows: rows, columns: columns,
                                            segmentLength: segmentLength, radius: alpha) { segment, theta in
                for i in segment.indices { segment[i] = min(max(segment[i], -theta), theta) }
            }
        }
    }

    /// The largest eigenvalue of the symmetric positive semi-definite `[size × size]` matrix `a`, by
    /// power iteration: the Lipschitz constant of MagR's gradient. It stops when the Rayleigh quotient
    /// changes by less than `tolerance` (relative). The Rayleigh quotient approaches λ_max from below,
    /// so a step of 1/λ̂ is a hair over 1/λ_max; proximal gradient descent is stable for any step below
    /// 2/λ_max, so that is harmless.
    public static func largestEigenvalue(ofSymmetric a: UnsafeBufferPointer<Float>, size n: Int,
                                         maxIterations: Int = 500, tolerance: Double = 1e-7) -> Double {
        precondition(a.count >= n * n, "largestEigenvalue: matrix has the wrong size")
        guard n > 0 else { return 0 }
        // Start from the diagonal's square roots plus a fixed perturbation: positive weight on every
        // direction an input with signal spans, and deterministic.
        var v = (0..<n).map { i in Float(sqrt(max(Double(a[i * n + i]), 0))) + Float(1 + (i * 7919) % 13) * 1e-3 }
        var norm = sqrt(v.reduce(0.0) { $0 + Double($1) * Double($1) })
        guard norm > 0 else { return 0 }
        for i in 0..<n { v[i] = Float(Double(v[i]) / norm) }
        var w = [Float](repeating: 0, count: n)
        var previous = 0.0
        var rayleigh = 0.0
        for _ in 0..<maxIterations {
            symmetricMatrixVector(a, n: n, v, into: &w)  // w = A v
            var dot = 0.0
            var square = 0.0
            for i in 0..<n {
                dot += Double(v[i]) * Double(w[i])
                square += Double(w[i]) * Double(w[i])
            }
            rayleigh = dot  // ‖v‖ = 1
            norm = sqrt(square)
            guard norm > 0 else { return 0 }
            for i in 0..<n { v[i] = Float(Double(w[i]) / norm) }
            if abs(rayleigh - previous) <= tolerance * abs(rayleigh) { break }
            previous = rayleigh
        }
        // ‖A v‖ ≥ vᵀA v for unit v, and both converge to λ_max; the larger is the better estimate.
        return max(rayleigh, norm)
    }

    /// `out = a·v` for the row-major `[n × n]` matrix `a`; rows in parallel, dot products in SIMD.
    static func symmetricMatrixVector(_ a: UnsafeBufferPointer<Float>, n: Int, _ v: [Float], into out: inout [Float]) {
        let workers = min(ProcessInfo.processInfo.activeProcessorCount, max(1, n / 64))
        let perWorker = (n + workers - 1) / workers
        v.withUnsafeBufferPointer { vp in
            out.withUnsafeMutableBufferPointer { op in
                let base = a.baseAddress!
                let vBase = vp.baseAddress!
                let outBase = op.baseAddress!
                DispatchQueue.concurrentPerform(iterations: workers) { worker in
                    let end = min(n, (worker + 1) * perWorker)
                    var row = worker * perWorker
                    while row < end {
                        outBase[row] = dot(base + row * n, vBase, n)
                        row += 1
                    }
                }
            }
        }
    }

    /// `Σ x[i]·y[i]` with 16-wide SIMD accumulators.
    @inline(__always) static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD16<Float>(repeating: 0)
        var i = 0
        let rx = UnsafeRawPointer(x), ry = UnsafeRawPointer(y)
        while i + 16 <= n {
            let a = rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            let b = ry.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            acc.addProduct(a, b)
            i += 16
        }
        var s = acc.sum()
        while i < n {
            s += x[i] * y[i]
            i += 1
        }
        return s
    }
}
