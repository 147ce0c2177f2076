import QTaleCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Kernels of the ``TrainingOp``s (contracts and gradient conventions in `TrainingOp.swift`; the float64
/// specification in `Reference+Backward.swift`). Float32 accumulation throughout; tests compare with the
/// reference by NMSE. Every kernel writes only its slice's share of each output, so slices never race:
/// ops with two outputs of different shapes (`dX` and `dW`, `dQ` and `dK`/`dV`) split both.
extension CPUEngine {
    // MARK: Training forwards

    func fill(_ view: TensorView, value: Float, slice: WorkSlice) {
        let out = store.pointer(view, as: Float.self)
        for r in slice.range(of: view.rows) { (out + r * view.rowStride).update(repeating: value, count: view.columns) }
    }

    /// `output[t] = w[t]·block[t] + (1 − w[t])·residual[t]` (written so that w = 1 and w = 0 are exact).
    func gatedResidual(block: TensorView, residual: TensorView, gate: TensorView, output: TensorView, slice: WorkSlice) {
        let b = store.pointer(block, as: Float.self), x = store.pointer(residual, as: Float.self)
        let w = store.pointer(gate, as: Float.self), out = store.pointer(output, as: Float.self)
        for t in slice.range(of: block.rows) {
            let (br, xr, orow) = (b + t * block.rowStride, x + t * residual.rowStride, out + t * output.rowStride)
            let on = w[t], off = 1 - w[t]
            let (onVector, offVector) = (FloatVector(repeating: on), FloatVector(repeating: off))
            var c = 0
            while c + 16 <= block.columns {
                orow.store(onVector * br.vector(at: c) + offVector * xr.vector(at: c), at: c)
                c += 16
            }
            while c < block.columns {
                orow[c] = on * br[c] + off * xr[c]
                c += 1
            }
        }
    }

    /// Gated causal attention, parallel over (query, head) pairs like ``attention``. Keys with gate 0
    /// are skipped; the maximum subtracted before `exp` is over the keys that count.
    func gatedAttention(query: TensorView, keys: TensorView, values: TensorView, keyGate: TensorView,
                        queryPositions: TensorView, heads: Int, kvHeads: Int, headDim: Int,
                        output: TensorView, logNormalizers: TensorView, slice: WorkSlice) {
        let q = store.pointer(query, as: Float.self)
        let k = UnsafePointer(store.pointer(keys, as: Float.self))
        let v = UnsafePointer(store.pointer(values, as: Float.self))
        let w = store.pointer(keyGate, as: Float.self)
        let position = store.pointer(queryPositions, as: Int32.self)
        let out = store.pointer(output, as: Float.self)
        let lambdas = store.pointer(logNormalizers, as: Float.self)
        let group = heads / kvHeads
        let scale = 1 / Float(headDim).squareRoot()
        let scores = scratch.worker(slice.worker)
        let accumulator = scores + keys.rows
        for item in slice.range(of: query.rows * heads) {
            let t = item / heads, h = item % heads
            let qh = UnsafePointer(q + t * query.rowStride + h * headDim)
            let kvOffset = (h / group) * headDim
            let visible = Self.visibleKeys(position[t], keys.rows)
            let target = out + t * output.rowStride + h * headDim
            var maxScore = -Float.infinity
            for s in visible where w[s] != 0 {
                scores[s] = dot(qh, k + s * keys.rowStride + kvOffset, count: headDim) * scale
                maxScore = max(maxScore, scores[s])
            }
            accumulator.update(repeating: 0, count: headDim)
            var total: Float = 0
            if maxScore > -Float.infinity {
                for s in visible where w[s] != 0 {
                    let weight = w[s] * expf(scores[s] - maxScore)
                    total += weight
                    addScaled(accumulator, weight, v + s * values.rowStride + kvOffset, count: headDim)
                }
            }
            guard total > 0 else {
                target.update(repeating: 0, count: headDim)
                lambdas[t * logNormalizers.rowStride + h] = .infinity
                continue
            }
            let inverse = 1 / total
            for d in 0..<headDim { target[d] = accumulator[d] * inverse }
            lambdas[t * logNormalizers.rowStride + h] = maxScore + logf(total)
        }
    }

    /// Keys `0 ..< S` visible to a query at `position` (`s <= position`).
    @inline(__always) static func visibleKeys(_ position: Int32, _ keyCount: Int) -> Range<Int> {
        0 ..< max(0, min(keyCount, Int(position) + 1))
    }

    // MARK: Normalisation and rotation

    /// RMSNorm backward. `dX` by rows of the slice; `dG` by columns of the slice, for which every row's
    /// `r_t` is recomputed into scratch (a pass over the input, cheap against the products around it).
    func rmsNormBackward(input: TensorView, weight: TensorView, epsilon: Float, outputGradient: TensorView,
                         inputGradient: TensorView, accumulate: Bool, weightGradient: TensorView?, slice: WorkSlice) {
        let x = store.pointer(input, as: Float.self), dy = store.pointer(outputGradient, as: Float.self)
        let g = UnsafePointer(store.pointer(weight, as: Float.self))
        let dx = store.pointer(inputGradient, as: Float.self)
        let columns = input.columns
        let inverseColumns = 1 / Float(columns)
        @inline(__always) func inverseRMS(_ row: UnsafePointer<Float>) -> Float {
            1 / (dot(row, row, count: columns) * inverseColumns + epsilon).squareRoot()
        }
        for t in slice.range(of: input.rows) {
            let xr = UnsafePointer(x + t * input.rowStride), dyr = UnsafePointer(dy + t * outputGradient.rowStride)
            let target = dx + t * inputGradient.rowStride
            let r = inverseRMS(xr)
            // Σ_j g[j]·dY[j]·x[j]
            var acc = FloatVector()
            var c = 0
            while c + 16 <= columns {
                acc.addProduct(g.vector(at: c) * dyr.vector(at: c), xr.vector(at: c))
                c += 16
            }
            var projection = acc.treeSum
            while c < columns {
                projection += g[c] * dyr[c] * xr[c]
                c += 1
            }
            let coefficient = r * r * r * inverseColumns * projection
            for c in 0..<columns {
                let value = r * g[c] * dyr[c] - xr[c] * coefficient
                target[c] = accumulate ? target[c] + value : value
            }
        }
        guard let weightGradient else { return }
        let range = slice.range(of: columns)
        guard !range.isEmpty else { return }
        let r = scratch.worker(slice.worker)
        for t in 0..<input.rows { r[t] = inverseRMS(UnsafePointer(x + t * input.rowStride)) }
        let dg = store.pointer(weightGradient, as: Float.self)
        for t in 0..<input.rows {
            let (xr, dyr) = (x + t * input.rowStride, dy + t * outputGradient.rowStride)
            for c in range { dg[c] += dyr[c] * xr[c] * r[t] }
        }
    }

    // MARK: Linear layers

    /// `dX (+)= dY · dequantize(W)`, parallel over rows of `dY`. Each slice dequantizes the whole weight
    /// once into its scratch (``dequantizeRow``, zero-padded to whole packs) and runs the register-tiled
    /// product over it; the op is split only when every slice has enough rows to repay that pass.
    func matmulBackward(outputGradient: TensorView, weight: QuantizedMatrix, inputGradient: TensorView,
                        accumulate: Bool, slice: WorkSlice) {
        switch weight.format.bits {
        case 4: matmulBackward(FourBitCodes.self, outputGradient: outputGradient, weight: weight,
                               inputGradient: inputGradient, accumulate: accumulate, slice: slice)
        case 8: matmulBackward(EightBitCodes.self, outputGradient: outputGradient, weight: weight,
                               inputGradient: inputGradient, accumulate: accumulate, slice: slice)
        default: matmulBackward(ThreeBitCodes.self, outputGradient: outputGradient, weight: weight,
                                inputGradient: inputGradient, accumulate: accumulate, slice: slice)
        }
    }

    private func matmulBackward<U: CodeUnpacker>(_: U.Type, outputGradient: TensorView, weight: QuantizedMatrix,
                                                 inputGradient: TensorView, accumulate: Bool, slice: WorkSlice) {
        let rows = slice.range(of: outputGradient.rows)
        guard !rows.isEmpty else { return }
        let host = HostQuantizedMatrix(weight, in: store)
        let packs = weight.format.packsPerRow(columns: weight.columns)
        let padded = packs * QuantizationFormat.codesPerPack
        let edge = scratch.worker(slice.worker)
        let w = edge + Self.edgeTileFloats
        for n in 0..<weight.rows {
            Self.dequantizeRow(U.self, host: host, row: n, packs: packs, groupSize: weight.format.groupSize, into: w + n * padded)
        }
        let dy = UnsafePointer(store.pointer(outputGradient, as: Float.self))
        let dx = store.pointer(inputGradient, as: Float.self)
        Self.multiply(rows: rows.count, columns: weight.columns, inner: weight.rows,
                      a: dy + rows.lowerBound * outputGradient.rowStride, aRowStride: outputGradient.rowStride, aInnerStride: 1,
                      b: UnsafePointer(w), bStride: padded, bReadableColumns: padded,
                      c: dx + rows.lowerBound * inputGradient.rowStride, cStride: inputGradient.rowStride,
                      accumulate: accumulate, scratch: edge)
    }

    /// Dense linear backward. `dX = dY · W` by rows of the slice; `dW += dYᵀ · X` and `db += Σ_t dY[t]`
    /// by weight rows of the slice. Both products run the register-tiled kernel ``multiply``.
    func linearBackward(input: TensorView, weight: TensorView, outputGradient: TensorView, inputGradient: TensorView?,
                        accumulate: Bool, weightGradient: TensorView?, biasGradient: TensorView?, slice: WorkSlice) {
        let x = UnsafePointer(store.pointer(input, as: Float.self))
        let w = UnsafePointer(store.pointer(weight, as: Float.self))
        let dy = UnsafePointer(store.pointer(outputGradient, as: Float.self))
        let scratch = scratch.worker(slice.worker)
        let (tokens, outputs, inner) = (input.rows, weight.rows, weight.columns)
        if let inputGradient {
            let rows = slice.range(of: tokens)
            if !rows.isEmpty {
                Self.multiply(rows: rows.count, columns: inner, inner: outputs,
                              a: dy + rows.lowerBound * outputGradient.rowStride, aRowStride: outputGradient.rowStride, aInnerStride: 1,
                              b: w, bStride: weight.rowStride, bReadableColumns: inner,
                              c: store.pointer(inputGradient, as: Float.self) + rows.lowerBound * inputGradient.rowStride,
                              cStride: inputGradient.rowStride, accumulate: accumulate, scratch: scratch)
            }
        }
        let rows = slice.range(of: outputs)
        guard !rows.isEmpty else { return }
        if let weightGradient {
            // dW[n][k] += Σ_t dY[t][n]·X[t][k]: A is dYᵀ (rows n, inner t), B is X.
            Self.multiply(rows: rows.count, columns: inner, inner: tokens,
                          a: dy + rows.lowerBound, aRowStride: 1, aInnerStride: outputGradient.rowStride,
                          b: x, bStride: input.rowStride, bReadableColumns: inner,
                          c: store.pointer(weightGradient, as: Float.self) + rows.lowerBound * weightGradient.rowStride,
                          cStride: weightGradient.rowStride, accumulate: true, scratch: scratch)
        }
        if let biasGradient {
            let db = store.pointer(biasGradient, as: Float.self)
            for n in rows {
                var sum: Float = 0
                for t in 0..<tokens { sum += dy[t * outputGradient.rowStride + n] }
                db[n] += sum
            }
        }
    }

    /// Floats of the edge tile at the start of a ``multiply`` scratch.
    static let edgeTileFloats = 4 * 32

    /// Scratch floats ``multiply`` needs for `inner`: the edge tile and one zero-padded 32-column panel of `b`.
    static func multiplyScratchFloats(inner: Int) -> Int { edgeTileFloats + 32 * inner }

    /// `c[i][j] (+)= Σ_r a[i·aRowStride + r·aInnerStride] · b[r·bStride + j]` for `i < rows`, `j < columns`:
    /// `C = A·B` with `A` `[rows × inner]` (any strides, so it may be a transpose), `B` `[inner × columns]`
    /// row-major, overwriting `c` or adding to it.
    ///
    /// Tiles of 4 rows × 32 columns are held in 8 vector accumulators over the whole inner loop (per inner
    /// step: two loads of `b`, four broadcasts of `a`, eight FMAs), so `c` is read and written once.
    /// Each `b` row must be readable up to `bReadableColumns` (≥ `columns`); a last panel that would read
    /// past that is first copied into a zero-padded panel in `scratch` (``multiplyScratchFloats(inner:)``),
    /// and ragged tiles run into the edge tile at the start of `scratch`.
    static func multiply(rows: Int, columns: Int, inner: Int,
                         a: UnsafePointer<Float>, aRowStride: Int, aInnerStride: Int,
                         b: UnsafePointer<Float>, bStride: Int, bReadableColumns: Int,
                         c: UnsafeMutablePointer<Float>, cStride: Int, accumulate: Bool,
                         scratch: UnsafeMutablePointer<Float>) {
        let edgeTile = scratch, paddedPanel = scratch + edgeTileFloats
        var j0 = 0
        while j0 < columns {
            let width = min(32, columns - j0)
            var panel = b + j0, panelStride = bStride
            if j0 + 32 > bReadableColumns {
                for r in 0..<inner {
                    let row = paddedPanel + r * 32
                    row.update(from: b + r * bStride + j0, count: width)
                    (row + width).update(repeating: 0, count: 32 - width)
                }
                panel = UnsafePointer(paddedPanel)
                panelStride = 32
            }
            var i0 = 0
            while i0 < rows {
                let height = min(4, rows - i0)
                // Rows past the end repeat the last row; their results are not stored.
                let a0 = a + i0 * aRowStride
                let a1 = a + (i0 + min(1, height - 1)) * aRowStride
                let a2 = a + (i0 + min(2, height - 1)) * aRowStride
                let a3 = a + (i0 + min(3, height - 1)) * aRowStride
                let target = c + i0 * cStride + j0
                if height == 4 && width == 32 {
                    multiplyKernel(inner: inner, a0, a1, a2, a3, aInnerStride: aInnerStride, b: panel, bStride: panelStride,
                                   c: target, cStride: cStride, accumulate: accumulate)
                } else {
                    for i in 0..<4 {
                        for j in 0..<32 { edgeTile[i * 32 + j] = accumulate && i < height && j < width ? target[i * cStride + j] : 0 }
                    }
                    multiplyKernel(inner: inner, a0, a1, a2, a3, aInnerStride: aInnerStride, b: panel, bStride: panelStride,
                                   c: edgeTile, cStride: 32, accumulate: true)
                    for i in 0..<height { (target + i * cStride).update(from: edgeTile + i * 32, count: width) }
                }
                i0 += 4
            }
            j0 += 32
        }
    }

    /// The 4 × 32 tile of ``multiply``: `c[i][0..<32] (+)= Σ_r a_i[r·aInnerStride] · b[r·bStride ..< +32]`.
    @inline(__always)
    static func multiplyKernel(inner: Int, _ a0: UnsafePointer<Float>, _ a1: UnsafePointer<Float>,
                               _ a2: UnsafePointer<Float>, _ a3: UnsafePointer<Float>, aInnerStride: Int,
                               b: UnsafePointer<Float>, bStride: Int,
                               c: UnsafeMutablePointer<Float>, cStride ldc: Int, accumulate: Bool) {
        var c00 = FloatVector(), c01 = FloatVector(), c10 = FloatVector(), c11 = FloatVector()
        var c20 = FloatVector(), c21 = FloatVector(), c30 = FloatVector(), c31 = FloatVector()
        if accumulate {
            c00 = c.vector(at: 0); c01 = c.vector(at: 16)
            c10 = c.vector(at: ldc); c11 = c.vector(at: ldc + 16)
            c20 = c.vector(at: 2 * ldc); c21 = c.vector(at: 2 * ldc + 16)
            c30 = c.vector(at: 3 * ldc); c31 = c.vector(at: 3 * ldc + 16)
        }
        var offsetA = 0, offsetB = 0
        for _ in 0..<inner {
            let b0 = b.vector(at: offsetB), b1 = b.vector(at: offsetB + 16)
            var s = FloatVector(repeating: a0[offsetA])
            c00.addProduct(s, b0); c01.addProduct(s, b1)
            s = FloatVector(repeating: a1[offsetA])
            c10.addProduct(s, b0); c11.addProduct(s, b1)
            s = FloatVector(repeating: a2[offsetA])
            c20.addProduct(s, b0); c21.addProduct(s, b1)
            s = FloatVector(repeating: a3[offsetA])
            c30.addProduct(s, b0); c31.addProduct(s, b1)
            offsetA += aInnerStride
            offsetB += bStride
        }
        c.store(c00, at: 0); c.store(c01, at: 16)
        c.store(c10, at: ldc); c.store(c11, at: ldc + 16)
        c.store(c20, at: 2 * ldc); c.store(c21, at: 2 * ldc + 16)
        c.store(c30, at: 3 * ldc); c.store(c31, at: 3 * ldc + 16)
    }

    // MARK: Gated attention backward

    /// Gated attention backward in two partitions per slice: query rows and heads (→ `dQ`), and keys
    /// (→ `dK`, `dV`, `dw` of every key head of the key, so `dw[s]` has one writer). Probabilities are
    /// recomputed from the saved `λ`; `D = dO·output` per row and head is computed once per slice into
    /// scratch for the key partition.
    func gatedAttentionBackward(query: TensorView, keys: TensorView, values: TensorView, keyGate: TensorView,
                                queryPositions: TensorView, heads: Int, kvHeads: Int, headDim: Int, output: TensorView,
                                logNormalizers: TensorView, outputGradient: TensorView, queryGradient: TensorView,
                                keyGradient: TensorView, valueGradient: TensorView, keyGateGradient: TensorView,
                                slice: WorkSlice) {
        let q = UnsafePointer(store.pointer(query, as: Float.self))
        let k = UnsafePointer(store.pointer(keys, as: Float.self))
        let v = UnsafePointer(store.pointer(values, as: Float.self))
        let w = UnsafePointer(store.pointer(keyGate, as: Float.self))
        let position = UnsafePointer(store.pointer(queryPositions, as: Int32.self))
        let o = UnsafePointer(store.pointer(output, as: Float.self))
        let lambdas = UnsafePointer(store.pointer(logNormalizers, as: Float.self))
        let dO = UnsafePointer(store.pointer(outputGradient, as: Float.self))
        let dq = store.pointer(queryGradient, as: Float.self)
        let dk = store.pointer(keyGradient, as: Float.self), dv = store.pointer(valueGradient, as: Float.self)
        let dw = store.pointer(keyGateGradient, as: Float.self)
        let (queries, keyCount, group) = (query.rows, keys.rows, heads / kvHeads)
        let scale = 1 / Float(headDim).squareRoot()
        let dValues = scratch.worker(slice.worker)
        let dqAccumulator = dValues + queries * heads
        let dkAccumulator = dqAccumulator + headDim, dvAccumulator = dkAccumulator + headDim
        @inline(__always) func rowD(_ t: Int, _ h: Int) -> Float {
            dot(dO + t * outputGradient.rowStride + h * headDim, o + t * output.rowStride + h * headDim, count: headDim)
        }

        // dQ: per query row and head, Σ over visible keys with nonzero gate.
        for item in slice.range(of: queries * heads) {
            let t = item / heads, h = item % heads
            let target = dq + t * queryGradient.rowStride + h * headDim
            let lambda = lambdas[t * logNormalizers.rowStride + h]
            guard lambda < .infinity else {
                target.update(repeating: 0, count: headDim)
                continue
            }
            let qh = q + t * query.rowStride + h * headDim, dOh = dO + t * outputGradient.rowStride + h * headDim
            let kvOffset = (h / group) * headDim
            let d = rowD(t, h)
            dqAccumulator.update(repeating: 0, count: headDim)
            for s in Self.visibleKeys(position[t], keyCount) where w[s] != 0 {
                let ks = k + s * keys.rowStride + kvOffset
                let p = expf(dot(qh, ks, count: headDim) * scale - lambda)
                let g = dot(dOh, v + s * values.rowStride + kvOffset, count: headDim)
                addScaled(dqAccumulator, w[s] * p * (g - d) * scale, ks, count: headDim)
            }
            target.update(from: dqAccumulator, count: headDim)
        }

        // dK, dV, dw: per key, Σ over the query rows that see it and the heads that read its key head.
        let keyRange = slice.range(of: keyCount)
        guard !keyRange.isEmpty else { return }
        for t in 0..<queries {
            for h in 0..<heads {
                dValues[t * heads + h] = lambdas[t * logNormalizers.rowStride + h] < .infinity ? rowD(t, h) : 0
            }
        }
        for s in keyRange {
            var gateGradient: Float = 0
            for kvHead in 0..<kvHeads {
                let kvOffset = kvHead * headDim
                let ks = k + s * keys.rowStride + kvOffset, vs = v + s * values.rowStride + kvOffset
                dkAccumulator.update(repeating: 0, count: headDim)
                dvAccumulator.update(repeating: 0, count: headDim)
                for t in 0..<queries where Int(position[t]) >= s {
                    for h in kvHead * group ..< (kvHead + 1) * group {
                        let lambda = lambdas[t * logNormalizers.rowStride + h]
                        guard lambda < .infinity else { continue }
                        let qh = q + t * query.rowStride + h * headDim, dOh = dO + t * outputGradient.rowStride + h * headDim
                        let p = expf(dot(qh, ks, count: headDim) * scale - lambda)
                        let g = dot(dOh, vs, count: headDim)
                        let centred = g - dValues[t * heads + h]
                        gateGradient += p * centred
                        if w[s] != 0 {
                            addScaled(dvAccumulator, w[s] * p, dOh, count: headDim)
                            addScaled(dkAccumulator, w[s] * p * centred * scale, qh, count: headDim)
                        }
                    }
                }
                (dk + s * keyGradient.rowStride + kvOffset).update(from: dkAccumulator, count: headDim)
                (dv + s * valueGradient.rowStride + kvOffset).update(from: dvAccumulator, count: headDim)
            }
            dw[s] += gateGradient
        }
    }

    // MARK: Elementwise

    /// `dG = dY·u·silu′(g)`, `dU = dY·silu(g)`; every element is read before either output is written.
    func swiGLUBackward(gate: TensorView, up: TensorView, outputGradient: TensorView, gateGradient: TensorView,
                        upGradient: TensorView, slice: WorkSlice) {
        let g = store.pointer(gate, as: Float.self), u = store.pointer(up, as: Float.self)
        let dy = store.pointer(outputGradient, as: Float.self)
        let dg = store.pointer(gateGradient, as: Float.self), du = store.pointer(upGradient, as: Float.self)
        for r in slice.range(of: gate.rows) {
            let (gr, ur, dyr) = (g + r * gate.rowStride, u + r * up.rowStride, dy + r * outputGradient.rowStride)
            let (dgr, dur) = (dg + r * gateGradient.rowStride, du + r * upGradient.rowStride)
            for c in 0..<gate.columns {
                let (x, y, d) = (gr[c], ur[c], dyr[c])
                let sigma = 1 / (1 + expf(-x))
                dur[c] = d * x * sigma
                dgr[c] = d * y * sigma * (1 + x * (1 - sigma))
            }
        }
    }

    /// `dX = dY·silu′(x)`.
    func siluBackward(input: TensorView, outputGradient: TensorView, inputGradient: TensorView, slice: WorkSlice) {
        let x = store.pointer(input, as: Float.self), dy = store.pointer(outputGradient, as: Float.self)
        let dx = store.pointer(inputGradient, as: Float.self)
        for r in slice.range(of: input.rows) {
            let (xr, dyr, dxr) = (x + r * input.rowStride, dy + r * outputGradient.rowStride, dx + r * inputGradient.rowStride)
            for c in 0..<input.columns {
                let value = xr[c]
                let sigma = 1 / (1 + expf(-value))
                dxr[c] = dyr[c] * sigma * (1 + value * (1 - sigma))
            }
        }
    }

    /// Per row: `dw[t] += Σ_c dY·(block − residual)` first, then `dBlock = w·dY`, `dResidual = (1 − w)·dY`.
    func gatedResidualBackward(block: TensorView, residual: TensorView, gate: TensorView, outputGradient: TensorView,
                               blockGradient: TensorView, residualGradient: TensorView, gateGradient: TensorView,
                               slice: WorkSlice) {
        let b = store.pointer(block, as: Float.self), x = store.pointer(residual, as: Float.self)
        let w = store.pointer(gate, as: Float.self), dy = store.pointer(outputGradient, as: Float.self)
        let db = store.pointer(blockGradient, as: Float.self), dx = store.pointer(residualGradient, as: Float.self)
        let dw = store.pointer(gateGradient, as: Float.self)
        let columns = block.columns
        for t in slice.range(of: block.rows) {
            let (br, xr, dyr) = (b + t * block.rowStride, x + t * residual.rowStride, dy + t * outputGradient.rowStride)
            let (dbr, dxr) = (db + t * blockGradient.rowStride, dx + t * residualGradient.rowStride)
            var acc = FloatVector()
            var c = 0
            while c + 16 <= columns {
                acc.addProduct(dyr.vector(at: c), br.vector(at: c) - xr.vector(at: c))
                c += 16
            }
            var sum = acc.treeSum
            while c < columns {
                sum += dyr[c] * (br[c] - xr[c])
                c += 1
            }
            dw[t] += sum
            let on = w[t], off = 1 - w[t]
            for c in 0..<columns {
                let d = dyr[c]
                dbr[c] = on * d
                dxr[c] = off * d
            }
        }
    }
}

/// `out[0..<count] += scale · x[0..<count]`.
@inline(__always)
func addScaled(_ out: UnsafeMutablePointer<Float>, _ scale: Float, _ x: UnsafePointer<Float>, count: Int) {
    let s = FloatVector(repeating: scale)
    var i = 0
    while i + 16 <= count {
        var acc = out.vector(at: i)
        acc.addProduct(s, x.vector(at: i))
        out.store(acc, at: i)
        i += 16
    }
    while i < count {
        out[i] += scale * x[i]
        i += 1
    }
}
