import QTaleCore

/// Accumulates GPTQ's Hessian `H = 2/N · Σ_t x_t x_tᵀ` of one linear's inputs over calibration batches.
///
/// **Normalisation.** `N` counts tokens, so `H` is the mean over calibration tokens (the reference divides
/// by the number of sequences instead; GPTQ's result does not depend on the scale of `H`, because the
/// dampening is relative to `mean(diag H)`). The sum is kept in float64 and divided once at the end, which
/// is the reference's running mean without its repeated rescaling.
///
/// **Cost.** The Gram matrix is the heavy part (65k tokens × 1536² for a down_proj), so it goes through a
/// ``MatrixMultiplying`` (normally the user's engine): batches are transposed into a `[columns × chunk]`
/// float32 buffer and every `chunkTokens` tokens the buffer's Gram matrix `Xᵀ·(Xᵀ)ᵀ` is computed and
/// added to the float64 sum. Only the upper triangle is needed: the columns are split into row blocks and
/// block `i` is multiplied with rows `i ...` only (about 60% of the full product's work).
/// Float32 accumulation covers at most one chunk; chunks add up in float64.
public final class HessianAccumulator {
    public let columns: Int
    /// Tokens transposed per Gram product.
    public let chunkTokens: Int
    /// Tokens added so far.
    public private(set) var tokenCount = 0

    private let multiplier: any MatrixMultiplying
    /// `[columns × chunkTokens]`: column `c` of the pending tokens is row `c` (Xᵀ).
    private var pending: [Float]
    private var pendingTokens = 0
    /// Σ x xᵀ in float64; entries with `j ≥ i` are valid.
    private var sum: [Double]
    private var product: [Float] = []

    public init(columns: Int, multiplier: any MatrixMultiplying, chunkTokens: Int = 4096) throws {
        guard columns > 0, chunkTokens > 0 else {
            throw QTaleError.invalidArgument("Hessian accumulator: columns (\(columns)) and chunk (\(chunkTokens)) must be positive")
        }
        self.columns = columns
        self.chunkTokens = chunkTokens
        self.multiplier = multiplier
        pending = [Float](repeating: 0, count: columns * chunkTokens)
        sum = [Double](repeating: 0, count: columns * columns)
    }

    /// Adds `tokens` input vectors, row-major `[tokens × columns]`.
    public func add(_ x: UnsafeBufferPointer<Float>, tokens: Int) throws {
        guard tokens >= 0, x.count >= tokens * columns else {
            throw QTaleError.invalidArgument("Hessian accumulator: \(x.count) values do not hold \(tokens) tokens of \(columns) inputs")
        }
        guard let base = x.baseAddress, tokens > 0 else { return }
        var t0 = 0
        while t0 < tokens {
            let count = min(tokens - t0, chunkTokens - pendingTokens)
            transpose(base + t0 * columns, tokens: count)
            t0 += count
            if pendingTokens == chunkTokens { try flush() }
        }
    }

    public func add(_ x: [Float], tokens: Int) throws {
        try x.withUnsafeBufferPointer { try add($0, tokens: tokens) }
    }

    /// `H = 2/N · Σ x xᵀ`, `[columns × columns]` row-major, exactly symmetric.
    public func hessian() throws -> [Double] {
        try flush()
        guard tokenCount > 0 else {
            throw QTaleError.invalidArgument("Hessian accumulator: no calibration tokens were added")
        }
        let n = columns, factor = 2 / Double(tokenCount)
        var h = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in i..<n {
                let v = sum[i * n + j] * factor
                h[i * n + j] = v
                h[j * n + i] = v
            }
        }
        return h
    }

    /// Forgets every token added.
    public func reset() {
        pendingTokens = 0
        tokenCount = 0
        for i in sum.indices { sum[i] = 0 }
    }

    /// Appends `tokens` rows of `x` to the pending buffer as columns, in 16 × 16 tiles.
    private func transpose(_ x: UnsafePointer<Float>, tokens: Int) {
        let n = columns, stride = chunkTokens, first = pendingTokens
        pending.withUnsafeMutableBufferPointer { pending in
            let out = pending.baseAddress!
            var t0 = 0
            while t0 < tokens {
                let t1 = min(t0 + 16, tokens)
                var c0 = 0
                while c0 < n {
                    let c1 = min(c0 + 16, n)
                    for t in t0..<t1 {
                        let row = x + t * n
                        for c in c0..<c1 { out[c * stride + first + t] = row[c] }
                    }
                    c0 = c1
                }
                t0 = t1
            }
        }
        pendingTokens += tokens
        tokenCount += tokens
    }

    /// Adds the pending tokens' Gram matrix (upper triangle by row blocks) to the float64 sum.
    private func flush() throws {
        let k = pendingTokens
        guard k > 0 else { return }
        let n = columns
        // Rows of the pending buffer must be contiguous `[n × k]`: close the gaps of a partial chunk.
        if k < chunkTokens {
            pending.withUnsafeMutableBufferPointer { p in
                for c in 1..<max(1, n) {
                    (p.baseAddress! + c * k).update(from: p.baseAddress! + c * chunkTokens, count: k)
                }
            }
        }
        let block = Self.rowBlock(columns: n)
        if product.count < block * n { product = [Float](repeating: 0, count: block * n) }
        try pending.withUnsafeBufferPointer { p in
            try product.withUnsafeMutableBufferPointer { out in
                try sum.withUnsafeMutableBufferPointer { sum in
                    var r0 = 0
                    while r0 < n {
                        let m = min(block, n - r0), width = n - r0
                        let a = UnsafeBufferPointer(rebasing: p[(r0 * k) ..< ((r0 + m) * k)])
                        let b = UnsafeBufferPointer(rebasing: p[(r0 * k) ..< (n * k)])
                        try multiplier.multiplyTransposed(a, rows: m, b, rows: width, inner: k,
                                                          into: UnsafeMutableBufferPointer(rebasing: out[0 ..< (m * width)]))
                        for i in 0..<m {
                            let target = sum.baseAddress! + (r0 + i) * n + r0
                            let source = out.baseAddress! + i * width
                            // Only j ≥ i is kept, but adding the whole row is simpler and as cheap.
                            for j in 0..<width { target[j] += Double(source[j]) }
                        }
                        r0 += m
                    }
                }
            }
        }
        pendingTokens = 0
    }

    /// Rows per triangular block: about a sixth of the columns, at least 128, a multiple of 32.
    static func rowBlock(columns n: Int) -> Int {
        max(128, ((n + 5) / 6 + 31) / 32 * 32)
    }
}
