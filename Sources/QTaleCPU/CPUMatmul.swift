import QTaleCore

extension CPUEngine {
    /// `output = input · dequantize(weight)ᵀ`, or `output +=` that product with `accumulate`.
    ///
    /// Inputs are first copied into a zero-padded scratch of `packsPerRow * 32` columns, so kernels
    /// run whole packs without tail cases (padded codes are zero, padded inputs are zero).
    /// - One token (decode): a fused dequant-dot per row that never materialises weights; each group
    ///   contributes `scale * Σ code·x + offset * Σ x`, with `Σ x` per group precomputed once. For 4-bit
    ///   weights with ``DecodeActivations/splitInt8`` or ``DecodeActivations/int8``, `Σ code·x` runs on
    ///   int8 terms of `x` (`CPUInt8Decode.swift`).
    /// - A few tokens: each worker dequantizes 4 rows into its scratch and reuses them for every token.
    /// - Many tokens (prefill, scoring, calibration): each worker dequantizes 64 rows at a time and runs
    ///   the packed register-tiled GEMM of ``linear(input:weight:bias:output:slice:)`` on them.
    /// Numerics: float32 accumulation, reassociated; tests compare with the reference by NMSE.
    func matmul(input: TensorView, weight: QuantizedMatrix, output: TensorView, accumulate: Bool, slice: WorkSlice) {
        switch weight.format.bits {
        case 4: matmul(FourBitCodes.self, input: input, weight: weight, output: output, accumulate: accumulate, slice: slice)
        case 8: matmul(EightBitCodes.self, input: input, weight: weight, output: output, accumulate: accumulate, slice: slice)
        default: matmul(ThreeBitCodes.self, input: input, weight: weight, output: output, accumulate: accumulate, slice: slice)
        }
    }

    /// Rows of weights dequantized together in prefill with few tokens.
    static let tileRows = 4
    /// Rows of weights dequantized together for the GEMM path (a multiple of ``linearNR``); a slice's
    /// scratch holds `dequantizedChunkRows × paddedColumns` floats.
    static let dequantizedChunkRows = 64

    private func matmul<U: CodeUnpacker>(_ unpacker: U.Type, input: TensorView, weight: QuantizedMatrix,
                                         output: TensorView, accumulate: Bool, slice: WorkSlice) {
        let host = HostQuantizedMatrix(weight, in: store)
        let tokens = input.rows, columns = weight.columns
        let packs = weight.format.packsPerRow(columns: columns)
        let paddedColumns = packs * QuantizationFormat.codesPerPack
        let groups = host.groupsPerRow
        let groupSize = weight.format.groupSize
        if Self.usesPackedLinear(tokens: tokens, outputs: weight.rows) {
            // Many tokens: dequantize a chunk of rows at a time and run the dense register-tiled GEMM on
            // it; the dequantization is repaid by every token that reuses the chunk.
            let dense = scratch.worker(slice.worker)
            let chunks = slice.range(of: (weight.rows + Self.dequantizedChunkRows - 1) / Self.dequantizedChunkRows)
            let x = UnsafePointer(store.pointer(input, as: Float.self))
            let out = store.pointer(output, as: Float.self)
            // With `accumulate`, each chunk's whole product goes to `product` and is then added once per
            // output: the GEMM accumulates block by block, and adding each block into a large residual
            // would round at the residual's scale each time.
            let product: UnsafeMutablePointer<Float>? = accumulate ? .allocate(capacity: tokens * Self.dequantizedChunkRows) : nil
            defer { product?.deallocate() }
            for chunk in chunks {
                let first = chunk * Self.dequantizedChunkRows, count = min(Self.dequantizedChunkRows, weight.rows - first)
                for r in 0..<count {
                    Self.dequantizeRow(U.self, host: host, row: first + r, packs: packs, groupSize: groupSize,
                                       into: dense + r * paddedColumns)
                }
                Self.packedLinear(x: x, xStride: input.rowStride, w: UnsafePointer(dense), wStride: paddedColumns, bias: nil,
                                  out: product ?? out + first, outStride: product == nil ? output.rowStride : count,
                                  tokens: tokens, inner: columns, columns: 0..<count)
                if let product {
                    for t in 0..<tokens {
                        let row = out + t * output.rowStride + first
                        for r in 0..<count { row[r] += product[t * count + r] }
                    }
                }
            }
            return
        }

        // Padded inputs, then per-token group sums for the offset term, in this worker's scratch
        // (each slice pads its own copy: cheaper than a barrier).
        let x = scratch.worker(slice.worker)
        let groupSums = x + tokens * paddedColumns
        let source = store.pointer(input, as: Float.self)
        for t in 0..<tokens {
            let row = x + t * paddedColumns
            row.update(from: source + t * input.rowStride, count: columns)
            row.advanced(by: columns).update(repeating: 0, count: paddedColumns - columns)
            for g in 0..<groups {
                // Groups are whole packs and the padding is zeros, so whole vectors sum each group.
                let start = g * groupSize, end = min(paddedColumns, start + groupSize)
                var sum = FloatVector()
                for k in stride(from: start, to: end, by: SIMDWidth.lanes) { sum += row.vector(at: k) }
                groupSums[t * groups + g] = sum.treeSum
            }
        }
        let out = store.pointer(output, as: Float.self)
        let outStride = output.rowStride

        if tokens == 1 {
            if U.self == FourBitCodes.self && decodeActivations != .float32 {
                int8Decode(decodeActivations, host: host, x: UnsafePointer(x), groupSums: UnsafePointer(groupSums),
                           packs: packs, groupSize: groupSize, rows: slice.range(of: weight.rows), out: out,
                           accumulate: accumulate, space: UnsafeMutableRawPointer(groupSums + groups))
                return
            }
            for n in slice.range(of: weight.rows) {
                let sum = Self.dotRow(U.self, host: host, row: n, x: UnsafePointer(x), groupSums: UnsafePointer(groupSums),
                                      packs: packs, groupSize: groupSize)
                out[n] = accumulate ? out[n] + sum : sum
            }
            return
        }

        let tile = Self.tileRows
        let w = groupSums + tokens * groups
        for block in slice.range(of: (weight.rows + tile - 1) / tile) {
            let first = block * tile, count = min(tile, weight.rows - first)
            for r in 0..<tile {
                // Rows past the end repeat the last row; their results are not stored.
                Self.dequantizeRow(U.self, host: host, row: first + min(r, count - 1), packs: packs,
                                   groupSize: groupSize, into: w + r * paddedColumns)
            }
            for t in 0..<tokens {
                let xt = UnsafePointer(x + t * paddedColumns)
                let sums = Self.dot4(UnsafePointer(w), stride: paddedColumns, x: xt, count: paddedColumns)
                for r in 0..<count {
                    let o = t * outStride + first + r
                    out[o] = accumulate ? out[o] + sums[r] : sums[r]
                }
            }
        }
    }

    /// One output of the fused dequant-dot: `Σ_g scale_g · (Σ_{k∈g} code_k x_k) + Σ_g offset_g · (Σ_{k∈g} x_k)`.
    /// The offset term is a vector dot over groups; group-32 formats (one pack per group, as GGUF's)
    /// take a loop without an inner group loop.
    @inline(__always)
    static func dotRow<U: CodeUnpacker>(_: U.Type, host: HostQuantizedMatrix, row n: Int, x: UnsafePointer<Float>,
                                        groupSums: UnsafePointer<Float>, packs: Int, groupSize: Int) -> Float {
        let codes = host.codes + n * host.codeBytesPerRow
        let scales = host.scales + n * host.groupsPerRow
        let offsets = host.offsets + n * host.groupsPerRow
        let groups = host.groupsPerRow
        var acc = FloatVector()
        if groupSize == QuantizationFormat.codesPerPack {
            var pack = 0
            while pack < packs {
                let (low, high) = U.unpack(codes + pack * U.bytesPerPack)
                var groupAcc = low * x.vector(at: pack * 32)
                groupAcc.addProduct(high, x.vector(at: pack * 32 + 16))
                acc.addProduct(groupAcc, FloatVector(repeating: Float(scales[pack])))
                pack += 1
            }
        } else {
            let packsPerGroup = groupSize / QuantizationFormat.codesPerPack
            var pack = 0
            for g in 0..<groups {
                var groupAcc = FloatVector()
                let end = min(packs, pack + packsPerGroup)
                while pack < end {
                    let (low, high) = U.unpack(codes + pack * U.bytesPerPack)
                    groupAcc.addProduct(low, x.vector(at: pack * 32))
                    groupAcc.addProduct(high, x.vector(at: pack * 32 + 16))
                    pack += 1
                }
                acc.addProduct(groupAcc, FloatVector(repeating: Float(scales[g])))
            }
        }
        return acc.treeSum + offsetTerm(offsets: offsets, groupSums: groupSums, groups: groups)
    }

    /// `Σ_g offset_g · (Σ_{k∈g} x_k)`: the offsets' share of a row's dot product.
    @inline(__always)
    static func offsetTerm(offsets: UnsafePointer<Float16>, groupSums: UnsafePointer<Float>, groups: Int) -> Float {
        var acc = FloatVector()
        var g = 0
        while g + 16 <= groups {
            acc.addProduct(FloatVector(halves: offsets + g), groupSums.vector(at: g))
            g += 16
        }
        var tail: Float = 0
        while g < groups {
            tail += Float(offsets[g]) * groupSums[g]
            g += 1
        }
        return acc.treeSum + tail
    }

    /// Writes row `n` dequantized (`scale * code + offset`) into `out[0 ..< packs*32]`.
    @inline(__always)
    static func dequantizeRow<U: CodeUnpacker>(_: U.Type, host: HostQuantizedMatrix, row n: Int, packs: Int,
                                               groupSize: Int, into out: UnsafeMutablePointer<Float>) {
        let codes = host.codes + n * host.codeBytesPerRow
        let packsPerGroup = groupSize / QuantizationFormat.codesPerPack
        for pack in 0..<packs {
            let g = n * host.groupsPerRow + pack / packsPerGroup
            let scale = FloatVector(repeating: Float(host.scales[g]))
            let offset = FloatVector(repeating: Float(host.offsets[g]))
            let (low, high) = U.unpack(codes + pack * U.bytesPerPack)
            out.store(low * scale + offset, at: pack * 32)
            out.store(high * scale + offset, at: pack * 32 + 16)
        }
    }

    /// Four dot products of consecutive rows of `w` (row stride `stride`) with `x`; `count` is a multiple of 16.
    @inline(__always)
    static func dot4(_ w: UnsafePointer<Float>, stride: Int, x: UnsafePointer<Float>, count: Int) -> SIMD4<Float> {
        var a0 = FloatVector(), a1 = FloatVector(), a2 = FloatVector(), a3 = FloatVector()
        var k = 0
        while k < count {
            let xv = x.vector(at: k)
            a0.addProduct(w.vector(at: k), xv)
            a1.addProduct(w.vector(at: stride + k), xv)
            a2.addProduct(w.vector(at: 2 * stride + k), xv)
            a3.addProduct(w.vector(at: 3 * stride + k), xv)
            k += 16
        }
        return SIMD4(a0.treeSum, a1.treeSum, a2.treeSum, a3.treeSum)
    }

    /// Dense float32 `output = input · weightᵀ + bias`, parallel over output columns (weight rows).
    ///
    /// Two paths, because the op serves both the routers in the token loop (one or a few tokens) and
    /// calibration (Gram matrices and MagR, thousands of tokens, K up to 65536):
    /// - Few tokens: one SIMD dot product per output; packing would cost as much as the product.
    /// - Otherwise a packed, register-tiled GEMM in the style of BLIS/GotoBLAS: for each block of
    ///   ``linearKC`` inner elements, the slice's weight rows are packed into panels of
    ///   ``linearNR`` columns (`[k][32]`, so one panel row is two vectors) and the inputs into panels of
    ///   ``linearMR`` rows (`[k][6]`, broadcast one at a time); a 6 × 32 microkernel keeps its tile in 12
    ///   vector registers for the whole block, so each pair of vector loads feeds 12 FMAs and the inner loop
    ///   has no horizontal sums. Packs are zero-padded, so ragged edges run the same kernel into a
    ///   scratch tile. The weight panel (`KC × 32` floats, 32 KiB) stays in L1 while every input panel of
    ///   the block streams past it from L2.
    /// Numerics: float32 accumulation, reassociated; tests compare with a float64 reference by NMSE.
    func linear(input: TensorView, weight: TensorView, bias: TensorView?, output: TensorView, slice: WorkSlice) {
        let x = UnsafePointer(store.pointer(input, as: Float.self))
        let w = UnsafePointer(store.pointer(weight, as: Float.self))
        let b = bias.map { UnsafePointer(store.pointer($0, as: Float.self)) }
        let out = store.pointer(output, as: Float.self)
        guard Self.usesPackedLinear(tokens: input.rows, outputs: weight.rows), weight.columns > 0 else {
            for n in slice.range(of: weight.rows) {
                let row = w + n * weight.rowStride
                for t in 0..<input.rows {
                    out[t * output.rowStride + n] = dot(x + t * input.rowStride, row, count: weight.columns) + (b?[n] ?? 0)
                }
            }
            return
        }
        // Slices own whole weight panels, so only the last slice has a ragged panel.
        let panels = slice.range(of: (weight.rows + Self.linearNR - 1) / Self.linearNR)
        let n0 = panels.lowerBound * Self.linearNR, n1 = min(weight.rows, panels.upperBound * Self.linearNR)
        guard n0 < n1 else { return }
        Self.packedLinear(x: x, xStride: input.rowStride, w: w, wStride: weight.rowStride, bias: b,
                          out: out, outStride: output.rowStride, tokens: input.rows, inner: weight.columns,
                          columns: n0..<n1)
    }

    /// Input rows per microkernel tile (broadcast operands).
    static let linearMR = 6
    /// Output columns per microkernel tile: two 16-lane vectors.
    static let linearNR = 32
    /// Inner elements per packed block: a `KC × NR` weight panel is 32 KiB.
    static let linearKC = 256
    /// Input rows per packed block (`MC × KC` floats, 96 KiB, sit in L2).
    static let linearMC = 96
    /// Output columns per packed weight block (`NC × KC` floats, 512 KiB).
    static let linearNC = 512

    /// Whether `.linear` takes the packed GEMM: packing costs about one pass over the weights, which only
    /// pays when several tokens reuse each packed panel.
    @inline(__always)
    static func usesPackedLinear(tokens: Int, outputs: Int) -> Bool { tokens >= 16 && outputs >= 16 }

    /// Columns `columns` of `out[t][n] = Σ_k x[t][k]·w[n][k] + bias[n]` with the packed GEMM.
    /// Allocates its packing buffers per call (well under a millisecond against the product it serves).
    static func packedLinear(x: UnsafePointer<Float>, xStride: Int, w: UnsafePointer<Float>, wStride: Int,
                             bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>, outStride: Int,
                             tokens: Int, inner: Int, columns: Range<Int>) {
        let mr = linearMR, nr = linearNR, kc = min(linearKC, inner)
        let weightPanels = UnsafeMutablePointer<Float>.allocate(capacity: linearNC * kc)
        let inputPanels = UnsafeMutablePointer<Float>.allocate(capacity: linearMC * kc)
        let edgeTile = UnsafeMutablePointer<Float>.allocate(capacity: mr * nr)
        defer { weightPanels.deallocate(); inputPanels.deallocate(); edgeTile.deallocate() }

        // The kernel accumulates into `out`, so start from the bias (or skip loading on the first block).
        if let bias {
            for t in 0..<tokens {
                (out + t * outStride + columns.lowerBound).update(from: bias + columns.lowerBound, count: columns.count)
            }
        }

        var jc = columns.lowerBound
        while jc < columns.upperBound {
            let nb = min(linearNC, columns.upperBound - jc)
            let panelsN = (nb + nr - 1) / nr
            var pc = 0
            while pc < inner {
                let kb = min(kc, inner - pc)
                let accumulate = pc > 0 || bias != nil
                packPanels(w + jc * wStride + pc, stride: wStride, rows: nb, inner: kb, width: linearNR, into: weightPanels)
                var ic = 0
                while ic < tokens {
                    let mb = min(linearMC, tokens - ic)
                    let panelsM = (mb + mr - 1) / mr
                    packPanels(x + ic * xStride + pc, stride: xStride, rows: mb, inner: kb, width: linearMR, into: inputPanels)
                    for jp in 0..<panelsN {
                        let bPanel = UnsafePointer(weightPanels + jp * nr * kb)
                        let width = min(nr, nb - jp * nr)
                        for ip in 0..<panelsM {
                            let aPanel = UnsafePointer(inputPanels + ip * mr * kb)
                            let height = min(mr, mb - ip * mr)
                            let c = out + (ic + ip * mr) * outStride + jc + jp * nr
                            if width == nr && height == mr {
                                linearKernel(inner: kb, a: aPanel, b: bPanel, c: c, cStride: outStride, accumulate: accumulate)
                            } else {
                                for i in 0..<mr {
                                    for j in 0..<nr {
                                        edgeTile[i * nr + j] = accumulate && i < height && j < width ? c[i * outStride + j] : 0
                                    }
                                }
                                linearKernel(inner: kb, a: aPanel, b: bPanel, c: edgeTile, cStride: nr, accumulate: true)
                                for i in 0..<height {
                                    (c + i * outStride).update(from: edgeTile + i * nr, count: width)
                                }
                            }
                        }
                    }
                    ic += mb
                }
                pc += kb
            }
            jc += nb
        }
    }

    /// `rows` rows × `inner` elements of a row-major matrix into panels `[rows/width][inner][width]`
    /// (weights: `width` = NR, inputs: MR), zero-padding the last panel.
    @inline(__always)
    static func packPanels(_ m: UnsafePointer<Float>, stride: Int, rows: Int, inner: Int, width: Int,
                           into panels: UnsafeMutablePointer<Float>) {
        for p in 0..<(rows + width - 1) / width {
            let panel = panels + p * width * inner
            for j in 0..<width {
                let r = p * width + j
                if r < rows {
                    let source = m + r * stride
                    for k in 0..<inner { panel[k * width + j] = source[k] }
                } else {
                    for k in 0..<inner { panel[k * width + j] = 0 }
                }
            }
        }
    }

    /// The 6 × 32 microkernel: `c[i][0..<32] (+)= Σ_k a[k][i] · b[k][0..<32]` over packed panels,
    /// the tile held in 12 vector accumulators.
    @inline(__always)
    static func linearKernel(inner: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                             c: UnsafeMutablePointer<Float>, cStride ldc: Int, accumulate: Bool) {
        var c00 = FloatVector(), c01 = FloatVector(), c10 = FloatVector(), c11 = FloatVector()
        var c20 = FloatVector(), c21 = FloatVector(), c30 = FloatVector(), c31 = FloatVector()
        var c40 = FloatVector(), c41 = FloatVector(), c50 = FloatVector(), c51 = FloatVector()
        if accumulate {
            c00 = c.vector(at: 0); c01 = c.vector(at: 16)
            c10 = c.vector(at: ldc); c11 = c.vector(at: ldc + 16)
            c20 = c.vector(at: 2 * ldc); c21 = c.vector(at: 2 * ldc + 16)
            c30 = c.vector(at: 3 * ldc); c31 = c.vector(at: 3 * ldc + 16)
            c40 = c.vector(at: 4 * ldc); c41 = c.vector(at: 4 * ldc + 16)
            c50 = c.vector(at: 5 * ldc); c51 = c.vector(at: 5 * ldc + 16)
        }
        var a = a, b = b
        for _ in 0..<inner {
            let b0 = b.vector(at: 0), b1 = b.vector(at: 16)
            var s = FloatVector(repeating: a[0])
            c00.addProduct(s, b0); c01.addProduct(s, b1)
            s = FloatVector(repeating: a[1])
            c10.addProduct(s, b0); c11.addProduct(s, b1)
            s = FloatVector(repeating: a[2])
            c20.addProduct(s, b0); c21.addProduct(s, b1)
            s = FloatVector(repeating: a[3])
            c30.addProduct(s, b0); c31.addProduct(s, b1)
            s = FloatVector(repeating: a[4])
            c40.addProduct(s, b0); c41.addProduct(s, b1)
            s = FloatVector(repeating: a[5])
            c50.addProduct(s, b0); c51.addProduct(s, b1)
            a += 6
            b += 32
        }
        c.store(c00, at: 0); c.store(c01, at: 16)
        c.store(c10, at: ldc); c.store(c11, at: ldc + 16)
        c.store(c20, at: 2 * ldc); c.store(c21, at: 2 * ldc + 16)
        c.store(c30, at: 3 * ldc); c.store(c31, at: 3 * ldc + 16)
        c.store(c40, at: 4 * ldc); c.store(c41, at: 4 * ldc + 16)
        c.store(c50, at: 5 * ldc); c.store(c51, at: 5 * ldc + 16)
    }
}
