import Dispatch
import QTaleCore

/// GPTQ (Frantar et al. 2022; reference IST-DASLab/gptq `fasterquant`), as method.md §4 gives it:
/// quantize one input column at a time and push each column's rounding error onto the columns not yet
/// quantized, weighted by the inverse Hessian, so that `‖WX − ŴX‖²` stays small rather than `‖W − Ŵ‖²`.
///
///     dead inputs (H_ii = 0):  H_ii = 1, W[:, i] = 0
///     act-order (optional):    columns by descending diag(H), with static groups
///     H += dampening · mean(diag H) · I                         (dampening 0.01)
///     U  = upper Cholesky factor of H⁻¹
///     for blocks [i1, i2) of 128 columns:
///         for i in block:  (group start: parameters from the current W[:, i ..< i+g])
///             q = Q(w_i);  err = (w_i − q) / U_ii;  W[:, i:i2] −= err ⊗ U[i, i:i2]
///         W[:, i2:] −= Err_block · U[i1:i2, i2:]               (lazy batch update)
///
/// Choices where the reference leaves room, and why:
/// - **Rows are independent.** Every update touches one row of W only (U is shared, read-only), so
///   rows are swept in tiles of 4 on all cores with no synchronisation; each tile holds its rows in a
///   padded float32 buffer and runs the lazy update as a 4-row × 32-column register-tiled kernel
///   (`SIMD16<Float>`; two vector loads of U feed eight FMAs). Float32 for W and U, as the reference.
/// - **Exact stored values.** `q` is what engines will compute from the stored binary16 scale and offset
///   (``GroupParameters/dequantize(_:)``), so the fed-back error is the error the model sees.
/// - **Dynamic groups see the fully updated weights.** The reference reads group parameters from its
///   lazily updated copy of W, which at a group start inside a 128-column block lacks that block's
///   earlier updates; here block ends are moved so that no group starting inside a block extends past
///   it, and the parameters are taken from the block's current values (method.md: "the current (updated)
///   W"). For g = 32, 64, 128 the blocks are the reference's.
/// - **Act-order implies static groups** (the reference's `static_groups`): the layout stores one scale and
///   offset per *original* column group, so group parameters are computed from the original (dead-zeroed)
///   weights of each group before the sweep, and column `perm[i]` uses its own group's. Codes come back
///   in the original column order.
/// - The sort for act-order is stable (ties by column index), so results are reproducible.
public enum GPTQ {
    public struct Options: Hashable, Sendable {
        /// Quantize columns in order of descending `diag(H)` (implies static groups).
        public var actOrder: Bool
        /// Group parameters from the original weights before the sweep instead of at each group start.
        public var staticGroups: Bool
        /// Relative dampening λ: `H += λ · mean(diag H) · I`.
        public var dampening: Double
        /// Columns per lazy-update block; a positive multiple of 32.
        public var blockSize: Int

        public init(actOrder: Bool = false, staticGroups: Bool = false, dampening: Double = 0.01, blockSize: Int = 128) {
            self.actOrder = actOrder
            self.staticGroups = staticGroups
            self.dampening = dampening
            self.blockSize = blockSize
        }
    }

    public struct Result: Sendable {
        /// The quantized weights, codes in the original column order.
        public var matrix: PackedMatrix
        /// GPTQ's loss estimate `Σ (w − q)² / U_ii² / 2` over all weights (the reference's `sum(Losses)`);
        /// with `H = 2/N · XᵀX` it tracks `‖WX − ŴX‖² / N`.
        public var squaredError: Double
        /// Inputs whose Hessian diagonal was zero (their weights were zeroed before quantization).
        public var deadColumns: Int
    }

    /// Quantizes `weights` (`[rows × columns]`, rows = output channels, row-major) with the Hessian
    /// `hessian` (`[columns × columns]`, row-major, e.g. from ``HessianAccumulator``).
    public static func quantize(_ weights: [Float], rows: Int, columns: Int, hessian: [Double],
                                quantizer: GroupQuantizer, options: Options = Options()) throws -> Result {
        try validate(weights: weights.count, rows: rows, columns: columns, hessian: hessian.count, options: options)
        let n = columns
        var h = hessian
        var w = weights
        // Dead inputs.
        var dead = 0
        for i in 0..<n where h[i * n + i] == 0 {
            h[i * n + i] = 1
            for r in 0..<rows { w[r * n + i] = 0 }
            dead += 1
        }
        let useStatic = options.staticGroups || options.actOrder
        let format = quantizer.format
        let groupSize = format.groupSize, groups = format.groupsPerRow(columns: n)
        var builder = CodeMatrixBuilder(format: format, rows: rows, columns: n)

        // Static groups: parameters of each original column group, before any update.
        var staticParameters: [GroupParameters] = []
        if useStatic {
            staticParameters.reserveCapacity(rows * groups)
            w.withUnsafeBufferPointer { w in
                for r in 0..<rows {
                    for g in 0..<groups {
                        let start = g * groupSize, end = min(n, start + groupSize)
                        let p = quantizer.parameters(for: UnsafeBufferPointer(rebasing: w[(r * n + start) ..< (r * n + end)]))
                        staticParameters.append(p)
                    }
                }
            }
            for (k, p) in staticParameters.enumerated() {
                builder.scales[k] = p.scale
                builder.offsets[k] = p.offset
            }
        }

        // Act-order permutation (stable: ties keep column order).
        var permutation = Array(0..<n)
        if options.actOrder {
            permutation.sort { a, b in
                let da = h[a * n + a], db = h[b * n + b]
                return da > db || (da == db && a < b)
            }
        }
        var hp = h
        if options.actOrder {
            for i in 0..<n { for j in 0..<n { hp[i * n + j] = h[permutation[i] * n + permutation[j]] } }
        }
        var meanDiagonal = 0.0
        for i in 0..<n { meanDiagonal += hp[i * n + i] }
        meanDiagonal /= Double(n)
        let damp = options.dampening * meanDiagonal
        for i in 0..<n { hp[i * n + i] += damp }

        let u: [Double]
        do {
            u = try Cholesky.upperFactorOfInverse(hp, n: n)
        } catch let QTaleError.invalidArgument(message) {
            throw QTaleError.invalidArgument("GPTQ: the dampened Hessian of a \(rows) × \(n) linear is not usable: \(message)")
        }

        // U in float32, rows padded to a multiple of 32 columns (zeros), as the sweep reads it.
        let stride = (n + 31) / 32 * 32
        var uf = [Float](repeating: 0, count: n * stride)
        for i in 0..<n { for j in i..<n { uf[i * stride + j] = Float(u[i * n + j]) } }

        let tiles = (rows + 3) / 4
        var tileLosses = [Double](repeating: 0, count: tiles)
        let blockSize = options.blockSize
        let blockEnds = blockBoundaries(columns: n, blockSize: blockSize, groupSize: groupSize, dynamicGroups: !useStatic)

        w.withUnsafeBufferPointer { w in
            uf.withUnsafeBufferPointer { uf in
                builder.codes.withUnsafeMutableBufferPointer { codes in
                    builder.scales.withUnsafeMutableBufferPointer { scales in
                        builder.offsets.withUnsafeMutableBufferPointer { offsets in
                            tileLosses.withUnsafeMutableBufferPointer { tileLosses in
                                staticParameters.withUnsafeBufferPointer { staticParameters in
                                    permutation.withUnsafeBufferPointer { permutation in
                                        let sweep = TileSweep(
                                            w: w.baseAddress!, u: uf.baseAddress!, rows: rows, columns: n, stride: stride,
                                            quantizer: quantizer, groups: groups, blockEnds: blockEnds, blockSize: blockSize,
                                            permutation: permutation.baseAddress!,
                                            staticParameters: useStatic ? staticParameters.baseAddress : nil,
                                            codes: codes.baseAddress!, scales: scales.baseAddress!, offsets: offsets.baseAddress!)
                                        ParallelWork.forEachRange(tiles, estimatedWork: rows * n * n / 2) { range in
                                            sweep.run(tiles: range, losses: tileLosses.baseAddress!)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Result(matrix: try builder.packed(), squaredError: tileLosses.reduce(0, +), deadColumns: dead)
    }

    /// The same with a float32 Hessian (widened to float64 first).
    public static func quantize(_ weights: [Float], rows: Int, columns: Int, hessian: [Float],
                                quantizer: GroupQuantizer, options: Options = Options()) throws -> Result {
        try quantize(weights, rows: rows, columns: columns, hessian: hessian.map { Double($0) },
                     quantizer: quantizer, options: options)
    }

    private static func validate(weights: Int, rows: Int, columns: Int, hessian: Int, options: Options) throws {
        guard rows > 0, columns > 0, weights == rows * columns else {
            throw QTaleError.invalidArgument("GPTQ: \(weights) weights do not form a \(rows) × \(columns) matrix")
        }
        guard hessian == columns * columns else {
            throw QTaleError.invalidArgument("GPTQ: the Hessian must be [\(columns) × \(columns)], got \(hessian) values")
        }
        guard options.blockSize > 0, options.blockSize % 32 == 0 else {
            throw QTaleError.invalidArgument("GPTQ: block size \(options.blockSize) must be a positive multiple of 32")
        }
        guard options.dampening >= 0, options.dampening.isFinite else {
            throw QTaleError.invalidArgument("GPTQ: dampening \(options.dampening) must be a finite number ≥ 0")
        }
    }

    /// Block ends: every `blockSize` columns, moved earlier where a dynamic group would start inside a
    /// block and end past it (its parameters must see all earlier updates).
    static func blockBoundaries(columns n: Int, blockSize: Int, groupSize: Int, dynamicGroups: Bool) -> [Int] {
        var ends: [Int] = []
        var i1 = 0
        while i1 < n {
            var i2 = min(i1 + blockSize, n)
            if dynamicGroups {
                var s = (i1 / groupSize + 1) * groupSize
                while s < i2 {
                    if min(s + groupSize, n) > i2 { i2 = s; break }
                    s += groupSize
                }
            }
            ends.append(i2)
            i1 = i2
        }
        return ends
    }
}

/// The sweep over tiles of 4 rows; read-only shared state plus disjoint output rows, so tiles run on any thread.
private struct TileSweep {
    let w: UnsafePointer<Float>           // [rows × columns], original column order, dead columns zeroed
    let u: UnsafePointer<Float>           // [columns × stride], permuted order, upper triangular
    let rows: Int, columns: Int, stride: Int
    let quantizer: GroupQuantizer
    let groups: Int
    let blockEnds: [Int]
    let blockSize: Int
    let permutation: UnsafePointer<Int>
    let staticParameters: UnsafePointer<GroupParameters>?
    let codes: UnsafeMutablePointer<UInt8>     // [rows × columns], original order
    let scales: UnsafeMutablePointer<Float16>  // [rows × groups]
    let offsets: UnsafeMutablePointer<Float16>

    func run(tiles: Range<Int>, losses: UnsafeMutablePointer<Double>) {
        let n = columns, ns = stride
        let groupSize = quantizer.format.groupSize
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 4 * ns)
        let negatedErrors = UnsafeMutablePointer<Float>.allocate(capacity: 4 * blockSize)
        defer { buffer.deallocate(); negatedErrors.deallocate() }
        var current = [GroupParameters](repeating: GroupParameters(scale: 1, offset: 0, zero: 0, maxCode: 1), count: 4)

        for tile in tiles {
            let r0 = 4 * tile, count = min(4, rows - r0)
            // The tile's rows in sweep (permuted) order; missing rows and padding are zero.
            buffer.update(repeating: 0, count: 4 * ns)
            negatedErrors.update(repeating: 0, count: 4 * blockSize)
            for t in 0..<count {
                let source = w + (r0 + t) * n, row = buffer + t * ns
                for i in 0..<n { row[i] = source[permutation[i]] }
            }
            var loss = 0.0
            var i1 = 0
            for i2 in blockEnds {
                for i in i1..<i2 {
                    if staticParameters == nil && i % groupSize == 0 {
                        let end = min(n, i + groupSize)
                        for t in 0..<count {
                            let p = quantizer.parameters(for: UnsafeBufferPointer(start: buffer + t * ns + i, count: end - i))
                            current[t] = p
                            scales[(r0 + t) * groups + i / groupSize] = p.scale
                            offsets[(r0 + t) * groups + i / groupSize] = p.offset
                        }
                    }
                    let d = u[i * ns + i]
                    let column = permutation[i]
                    let uRow = u + i * ns
                    // Intra-block update over whole vectors from the one holding column i to the block end
                    // (a multiple of 32 or the padded row end); U is zero left of its diagonal, and column i
                    // itself becomes q, which is no longer read.
                    let from = i & ~15, to = (i2 + 15) & ~15
                    for t in 0..<count {
                        let p = staticParameters?[(r0 + t) * groups + column / groupSize] ?? current[t]
                        let row = buffer + t * ns
                        let x = row[i]
                        let code = p.code(for: x)
                        let q = p.dequantize(code)
                        codes[(r0 + t) * n + column] = UInt8(code)
                        let e = (x - q) / d
                        loss += Double(x - q) * Double(x - q) / (Double(d) * Double(d)) / 2
                        negatedErrors[t * blockSize + (i - i1)] = -e
                        let s = FloatVector(repeating: -e)
                        var j = from
                        while j < to {
                            row.store(row.vector(at: j) + s * uRow.vector(at: j), at: j)
                            j += 16
                        }
                    }
                }
                if i2 < n {
                    lazyUpdate(block: i1..<i2, from: i2 & ~31)
                }
                i1 = i2
            }
            losses[tile] = loss
        }

        /// `W[tile rows, j ≥ from] += (−Err)[tile rows, block] · U[block, j ≥ from]`, 4 rows × 32 columns per step.
        func lazyUpdate(block: Range<Int>, from: Int) {
            let e0 = UnsafePointer(negatedErrors), e1 = e0 + blockSize, e2 = e1 + blockSize, e3 = e2 + blockSize
            let w0 = buffer, w1 = w0 + ns, w2 = w1 + ns, w3 = w2 + ns
            let uBlock = u + block.lowerBound * ns
            var j = from
            while j < ns {
                var a0 = w0.vector(at: j), b0 = w0.vector(at: j + 16)
                var a1 = w1.vector(at: j), b1 = w1.vector(at: j + 16)
                var a2 = w2.vector(at: j), b2 = w2.vector(at: j + 16)
                var a3 = w3.vector(at: j), b3 = w3.vector(at: j + 16)
                var uRow = uBlock + j
                for b in 0..<block.count {
                    let x = uRow.vector(at: 0), y = uRow.vector(at: 16)
                    var s = FloatVector(repeating: e0[b]); a0.addProduct(s, x); b0.addProduct(s, y)
                    s = FloatVector(repeating: e1[b]); a1.addProduct(s, x); b1.addProduct(s, y)
                    s = FloatVector(repeating: e2[b]); a2.addProduct(s, x); b2.addProduct(s, y)
                    s = FloatVector(repeating: e3[b]); a3.addProduct(s, x); b3.addProduct(s, y)
                    uRow += ns
                }
                w0.store(a0, at: j); w0.store(b0, at: j + 16)
                w1.store(a1, at: j); w1.store(b1, at: j + 16)
                w2.store(a2, at: j); w2.store(b2, at: j + 16)
                w3.store(a3, at: j); w3.store(b3, at: j + 16)
                j += 32
            }
        }
    }
}
