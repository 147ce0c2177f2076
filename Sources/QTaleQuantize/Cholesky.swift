import Dispatch
import QTaleCore

/// Float64 Cholesky factorisation and the inverses GPTQ needs, on row-major `n × n` `[Double]` matrices.
///
/// GPTQ needs `U`, the upper Cholesky factor of `H⁻¹` (`UᵀU = H⁻¹`); the reference computes it as
/// `cholesky(cholesky_inverse(cholesky(H)), upper: true)`, four `n³/3` passes. ``upperFactorOfInverse(_:n:)``
/// gets the same matrix in two: with `P` the order-reversing permutation, factor `PHP = L'L'ᵀ`; then
/// `H = VVᵀ` with `V = PL'P` upper triangular, so `H⁻¹ = V⁻ᵀV⁻¹` and `U = V⁻¹ = P·L'⁻¹·P` (upper, positive
/// diagonal, hence the unique factor). At `n = 1536` (down_proj) that is ~1.2·10⁹ multiply-adds; it runs
/// once per linear, 30 × 7 times for SmolLM2.
///
/// Kernels work on contiguous rows with `SIMD8<Double>` and 4 × 4 register tiles, parallel over
/// independent row tiles (factorisation) or column panels (inversion).
public enum Cholesky {
    /// The lower factor `L` of a symmetric positive definite `a` (`a = L·Lᵀ`); only `a`'s lower triangle is
    /// read. The upper triangle of the result is zero.
    /// - Throws: ``QTaleError/invalidArgument(_:)`` naming the first pivot that is not positive.
    public static func lower(_ a: [Double], n: Int) throws -> [Double] {
        try checkShape(a, n: n)
        var l = [Double](repeating: 0, count: n * n)
        try l.withUnsafeMutableBufferPointer { l in
            try a.withUnsafeBufferPointer { a in try factor(a.baseAddress!, n: n, into: l.baseAddress!) }
        }
        return l
    }

    /// The inverse of a lower-triangular `l` with nonzero diagonal (lower triangular too).
    public static func invertLower(_ l: [Double], n: Int) throws -> [Double] {
        try checkShape(l, n: n)
        var m = [Double](repeating: 0, count: n * n)
        m.withUnsafeMutableBufferPointer { m in
            l.withUnsafeBufferPointer { l in invertLower(l.baseAddress!, n: n, into: m.baseAddress!) }
        }
        return m
    }

    /// `(L·Lᵀ)⁻¹ = L⁻ᵀ·L⁻¹` from the lower factor `l` (as `torch.cholesky_inverse`), full and symmetric.
    public static func inverse(fromLower l: [Double], n: Int) throws -> [Double] {
        let m = try invertLower(l, n: n)
        var out = [Double](repeating: 0, count: n * n)
        m.withUnsafeBufferPointer { m in
            out.withUnsafeMutableBufferPointer { out in
                let m = m.baseAddress!, out = out.baseAddress!
                // Row i of MᵀM: Σ_{k ≥ i} M[k][i] · M[k][0...k].
                ParallelWork.forEachRange(n, estimatedWork: n * n * n / 3) { rows in
                    for i in rows {
                        let row = out + i * n
                        for k in i..<n {
                            axpy(m[k * n + i], m + k * n, into: row, count: k + 1)
                        }
                    }
                }
            }
        }
        return out
    }

    /// The upper Cholesky factor `U` of `a⁻¹` (`UᵀU = a⁻¹`, positive diagonal, lower triangle zero) for a
    /// symmetric positive definite `a`: what GPTQ sweeps with.
    public static func upperFactorOfInverse(_ a: [Double], n: Int) throws -> [Double] {
        try checkShape(a, n: n)
        var reversed = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { reversed[i * n + j] = a[(n - 1 - i) * n + (n - 1 - j)] } }
        let lowerFactor = try lower(reversed, n: n)
        let inverse = try invertLower(lowerFactor, n: n)
        var u = reversed
        for i in 0..<n { for j in 0..<n { u[i * n + j] = inverse[(n - 1 - i) * n + (n - 1 - j)] } }
        return u
    }

    // MARK: - Kernels

    private static func checkShape(_ a: [Double], n: Int) throws {
        guard n > 0, a.count == n * n else {
            throw QTaleError.invalidArgument("Cholesky: \(a.count) values do not form a \(n) × \(n) matrix")
        }
    }

    /// Left-looking factorisation by tiles of 4 columns: the diagonal tile, then every 4-row tile below it
    /// (independent given the columns to the left).
    private static func factor(_ a: UnsafePointer<Double>, n: Int, into l: UnsafeMutablePointer<Double>) throws {
        var j0 = 0
        while j0 < n {
            let j1 = min(j0 + 4, n)
            // Diagonal tile.
            for i in j0..<j1 {
                for j in j0...i {
                    let s = a[i * n + j] - dot(l + i * n, l + j * n, count: j)
                    if i == j {
                        guard s > 0, s.isFinite else {
                            throw QTaleError.invalidArgument(
                                "matrix is not positive definite (pivot \(i) of \(n) is \(s)); add dampening or calibration data")
                        }
                        l[i * n + i] = s.squareRoot()
                    } else {
                        l[i * n + j] = s / l[j * n + j]
                    }
                }
            }
            // Row tiles below.
            let first = j1, tiles = (n - first + 3) / 4
            ParallelWork.forEachRange(tiles, estimatedWork: (n - first) * j0 * 4) { range in
                for tile in range {
                    let i0 = first + 4 * tile, i1 = min(i0 + 4, n)
                    let s = dots4x4(l, n: n, rows: i0, rowCount: i1 - i0, columns: j0, columnCount: j1 - j0, count: j0)
                    for i in i0..<i1 {
                        for j in j0..<j1 {
                            var v = a[i * n + j] - s[(i - i0) * 4 + (j - j0)]
                            for k in j0..<j { v -= l[i * n + k] * l[j * n + k] }
                            l[i * n + j] = v / l[j * n + j]
                        }
                    }
                }
            }
            j0 = j1
        }
    }

    /// `S[r][c] = Σ_{k < count} L[rows + r][k] · L[columns + c][k]` for up to 4 × 4 rows of `l`,
    /// as a 4 × 4 tile of vector accumulators (missing rows repeat the last one; their sums are ignored).
    @inline(__always)
    private static func dots4x4(_ l: UnsafePointer<Double>, n: Int, rows: Int, rowCount: Int,
                                columns: Int, columnCount: Int, count: Int) -> SIMD16<Double> {
        typealias V = SIMD8<Double>
        let r0 = l + rows * n, r1 = l + (rows + min(1, rowCount - 1)) * n
        let r2 = l + (rows + min(2, rowCount - 1)) * n, r3 = l + (rows + min(3, rowCount - 1)) * n
        let c0 = l + columns * n, c1 = l + (columns + min(1, columnCount - 1)) * n
        let c2 = l + (columns + min(2, columnCount - 1)) * n, c3 = l + (columns + min(3, columnCount - 1)) * n
        var a00 = V(), a01 = V(), a02 = V(), a03 = V(), a10 = V(), a11 = V(), a12 = V(), a13 = V()
        var a20 = V(), a21 = V(), a22 = V(), a23 = V(), a30 = V(), a31 = V(), a32 = V(), a33 = V()
        var k = 0
        while k + 8 <= count {
            let x0 = load(r0 + k), x1 = load(r1 + k), x2 = load(r2 + k), x3 = load(r3 + k)
            var y = load(c0 + k)
            a00.addProduct(x0, y); a10.addProduct(x1, y); a20.addProduct(x2, y); a30.addProduct(x3, y)
            y = load(c1 + k)
            a01.addProduct(x0, y); a11.addProduct(x1, y); a21.addProduct(x2, y); a31.addProduct(x3, y)
            y = load(c2 + k)
            a02.addProduct(x0, y); a12.addProduct(x1, y); a22.addProduct(x2, y); a32.addProduct(x3, y)
            y = load(c3 + k)
            a03.addProduct(x0, y); a13.addProduct(x1, y); a23.addProduct(x2, y); a33.addProduct(x3, y)
            k += 8
        }
        var s = SIMD16<Double>(a00.sum(), a01.sum(), a02.sum(), a03.sum(), a10.sum(), a11.sum(), a12.sum(), a13.sum(),
                               a20.sum(), a21.sum(), a22.sum(), a23.sum(), a30.sum(), a31.sum(), a32.sum(), a33.sum())
        while k < count {
            let x = SIMD4<Double>(r0[k], r1[k], r2[k], r3[k]), y = SIMD4<Double>(c0[k], c1[k], c2[k], c3[k])
            s += SIMD16<Double>(lowHalf: SIMD8(lowHalf: x[0] * y, highHalf: x[1] * y),
                                highHalf: SIMD8(lowHalf: x[2] * y, highHalf: x[3] * y))
            k += 1
        }
        return s
    }

    /// `M = L⁻¹` by independent panels of 16 columns: `M[i][panel] = (e_i − Σ_{k<i} L[i][k]·M[k][panel]) / L[i][i]`,
    /// four rows at a time so each loaded panel row feeds four rows' accumulators.
    private static func invertLower(_ l: UnsafePointer<Double>, n: Int, into m: UnsafeMutablePointer<Double>) {
        typealias V = SIMD8<Double>
        let width = 16
        let panels = (n + width - 1) / width
        // Panel rows are stored padded to 16 doubles so every row of a panel is two whole vectors.
        let paddedWork = UnsafeMutablePointer<Double>.allocate(capacity: ParallelWork.cores * 4 * n * width)
        defer { paddedWork.deallocate() }
        let work = n * n * n / 6
        // Panels are handed out largest first (panel 0 has the most rows).
        let chunks = work >= 1 << 16 ? min(panels, 4 * ParallelWork.cores) : 1
        let perChunkPanels = (0..<chunks).map { chunk in Array(stride(from: chunk, to: panels, by: chunks)) }
        let run = { (chunk: Int, scratch: UnsafeMutablePointer<Double>) in
            for panel in perChunkPanels[chunk] {
                let c0 = panel * width, cw = min(width, n - c0)
                // scratch: rows c0 ..< n of the panel, 16 doubles each.
                let rows = n - c0
                scratch.update(repeating: 0, count: rows * width)
                /// Row `row` of the panel, given its sum over columns before its tile (which starts at `tile`):
                /// add the tile's earlier rows, then `(e_row − sum) / L[row][row]`.
                @inline(__always) func finishRow(_ tile: Int, _ row: Int, _ x: inout V, _ y: inout V) {
                    for k in tile..<row {
                        let p = scratch + (k - c0) * width
                        let s = V(repeating: l[row * n + k])
                        x.addProduct(s, load(p))
                        y.addProduct(s, load(p + 8))
                    }
                    var ex = V(), ey = V()
                    let local = row - c0
                    if local < 8 { ex[local] = 1 } else if local < 16 { ey[local - 8] = 1 }
                    let d = V(repeating: 1 / l[row * n + row])
                    store((ex - x) * d, to: scratch + local * width)
                    store((ey - y) * d, to: scratch + local * width + 8)
                }
                var i = c0
                while i < n {
                    let ih = min(4, n - i)
                    // Accumulate Σ_{k in c0 ..< i} L[i+r][k] · M[k][panel] for up to four rows.
                    var a0 = V(), b0 = V(), a1 = V(), b1 = V(), a2 = V(), b2 = V(), a3 = V(), b3 = V()
                    let l0 = l + i * n, l1 = l + (i + min(1, ih - 1)) * n
                    let l2 = l + (i + min(2, ih - 1)) * n, l3 = l + (i + min(3, ih - 1)) * n
                    for k in c0..<i {
                        let p = scratch + (k - c0) * width
                        let x = load(p), y = load(p + 8)
                        var s = V(repeating: l0[k]); a0.addProduct(s, x); b0.addProduct(s, y)
                        s = V(repeating: l1[k]); a1.addProduct(s, x); b1.addProduct(s, y)
                        s = V(repeating: l2[k]); a2.addProduct(s, x); b2.addProduct(s, y)
                        s = V(repeating: l3[k]); a3.addProduct(s, x); b3.addProduct(s, y)
                    }
                    // The 4 × 4 triangle among the rows themselves, in order.
                    finishRow(i, i, &a0, &b0)
                    if ih > 1 { finishRow(i, i + 1, &a1, &b1) }
                    if ih > 2 { finishRow(i, i + 2, &a2, &b2) }
                    if ih > 3 { finishRow(i, i + 3, &a3, &b3) }
                    i += ih
                }
                for row in c0..<n {
                    (m + row * n + c0).update(from: scratch + (row - c0) * width, count: cw)
                }
            }
        }
        if chunks == 1 {
            run(0, paddedWork)
        } else {
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                // Scratch per concurrent chunk: chunks ≤ 4 × cores, each needs n × 16 doubles.
                run(chunk, paddedWork + chunk * n * width)
            }
        }
    }

    @inline(__always) static func load(_ p: UnsafePointer<Double>) -> SIMD8<Double> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Double>.self)
    }
    @inline(__always) static func load(_ p: UnsafeMutablePointer<Double>) -> SIMD8<Double> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Double>.self)
    }
    @inline(__always) static func store(_ v: SIMD8<Double>, to p: UnsafeMutablePointer<Double>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Double>.self)
    }

    /// `Σ_{k < count} a[k]·b[k]`.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, count: Int) -> Double {
        var acc = SIMD8<Double>(), k = 0
        while k + 8 <= count {
            acc.addProduct(load(a + k), load(b + k))
            k += 8
        }
        var s = acc.sum()
        while k < count { s += a[k] * b[k]; k += 1 }
        return s
    }
    @inline(__always)
    static func dot(_ a: UnsafeMutablePointer<Double>, _ b: UnsafeMutablePointer<Double>, count: Int) -> Double {
        dot(UnsafePointer(a), UnsafePointer(b), count: count)
    }

    /// `y[0..<count] += alpha · x[0..<count]`.
    @inline(__always)
    static func axpy(_ alpha: Double, _ x: UnsafePointer<Double>, into y: UnsafeMutablePointer<Double>, count: Int) {
        let a = SIMD8<Double>(repeating: alpha)
        var k = 0
        while k + 8 <= count {
            store(load(y + k) + a * load(x + k), to: y + k)
            k += 8
        }
        while k < count { y[k] += alpha * x[k]; k += 1 }
    }
}
