import QTaleCore

extension CPUEngine {
    /// `output = input · dequantize(weight)ᵀ`.
    ///
    /// Inputs are first copied into a zero-padded scratch of `packsPerRow * 32` columns, so kernels
    /// run whole packs without tail cases (padded codes are zero, padded inputs are zero).
    /// - One token (decode): a fused dequant-dot per row that never materialises weights; each group
    ///   contributes `scale * Σ code·x + offset * Σ x`, with `Σ x` per group precomputed once.
    /// - Several tokens (prefill): each worker dequantizes 4 rows into its scratch and reuses them
    ///   for every token.
    /// Numerics: float32 accumulation, reassociated; tests compare with the reference by NMSE.
    func matmul(input: TensorView, weight: QuantizedMatrix, output: TensorView, slice: WorkSlice) {
        switch weight.format.bits {
        case 4: matmul(FourBitCodes.self, input: input, weight: weight, output: output, slice: slice)
        case 8: matmul(EightBitCodes.self, input: input, weight: weight, output: output, slice: slice)
        default: matmul(ThreeBitCodes.self, input: input, weight: weight, output: output, slice: slice)
        }
    }

    /// Rows of weights dequantized together in prefill.
    static let tileRows = 4

    private func matmul<U: CodeUnpacker>(_ unpacker: U.Type, input: TensorView, weight: QuantizedMatrix,
                                         output: TensorView, slice: WorkSlice) {
        let host = HostQuantizedMatrix(weight, in: store)
        let tokens = input.rows, columns = weight.columns
        let packs = weight.format.packsPerRow(columns: columns)
        let paddedColumns = packs * QuantizationFormat.codesPerPack
        let groups = host.groupsPerRow
        let groupSize = weight.format.groupSize

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
                let start = g * groupSize, end = min(columns, start + groupSize)
                var sum: Float = 0
                for k in start..<end { sum += row[k] }
                groupSums[t * groups + g] = sum
            }
        }
        let out = store.pointer(output, as: Float.self)
        let outStride = output.rowStride

        if tokens == 1 {
            for n in slice.range(of: weight.rows) {
                out[n] = Self.dotRow(U.self, host: host, row: n, x: UnsafePointer(x), groupSums: UnsafePointer(groupSums),
                                     packs: packs, groupSize: groupSize)
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
                for r in 0..<count { out[t * outStride + first + r] = sums[r] }
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
        var g = 0
        while g + 16 <= groups {
            acc.addProduct(FloatVector(halves: offsets + g), groupSums.vector(at: g))
            g += 16
        }
        var offsetTerm: Float = 0
        while g < groups {
            offsetTerm += Float(offsets[g]) * groupSums[g]
            g += 1
        }
        return acc.treeSum + offsetTerm
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
    func linear(input: TensorView, weight: TensorView, bias: TensorView?, output: TensorView, slice: WorkSlice) {
        let x = UnsafePointer(store.pointer(input, as: Float.self))
        let w = UnsafePointer(store.pointer(weight, as: Float.self))
        let b = bias.map { UnsafePointer(store.pointer($0, as: Float.self)) }
        let out = store.pointer(output, as: Float.self)
        for n in slice.range(of: weight.rows) {
            let row = w + n * weight.rowStride
            for t in 0..<input.rows {
                out[t * output.rowStride + n] = dot(x + t * input.rowStride, row, count: weight.columns) + (b?[n] ?? 0)
            }
        }
    }
}
