import QTaleCore
import QTaleModel

extension ModelQuantizer {
    /// GPTQ (optionally after MagR) for block `l`: Hessians from the float block, quantized linears,
    /// then the quantized block's outputs replace `hidden`. Returns each linear's relative output error.
    func quantizeBlockGPTQ(_ l: Int, session: LlamaModel, hidden: inout [[Float]]) throws -> [LinearKind: Double] {
        let c = model.configuration
        // One Hessian per distinct input: q/k/v share one, gate/up share one.
        let widths: [BlockProbePoint: Int] = [.attentionInput: c.dModel, .attended: c.nHeads * c.headDim,
                                              .mlpInput: c.dModel, .mlpHidden: c.ffnDim]
        let hessians = try widths.mapValues { try HessianAccumulator(columns: $0, multiplier: multiplier) }
        let original = model.weights.blocks[l]
        for sequence in hidden {
            var captured: [BlockProbePoint: [Float]] = [:]
            _ = try session.probeBlock(l, weights: original, hidden: sequence) { point, view in
                if widths[point] != nil { captured[point] = try self.engine.readFloats(view) }
            }
            for (point, x) in captured {
                try hessians[point]!.add(x, tokens: x.count / widths[point]!)
            }
        }

        let matrices = try hessians.mapValues { try $0.hessian() }
        var quantized: [LinearKind: HostTensor] = [:]
        var errors: [LinearKind: Double] = [:]
        for kind in LinearKind.allCases {
            let role = TensorRole.linear(block: l, kind)
            let (rows, columns) = kind.shape(in: c)
            let hessian = matrices[Self.input(of: kind)]!
            var w = try weights(role)
            var shrink: Float = 1
            if settings.method == .magrGPTQ {
                // The group variant with this run's group size, α = 1e-4 (method.md §5).
                let magr = MagR(granularity: .perGroup(format.groupSize))
                w = try magr.preprocess(weight: w, rows: rows, columns: columns, gram: hessian.map { Float($0) },
                                        multiplier: multiplier)
                shrink = MagR.rangeShrink(bits: format.bits, groupSize: format.groupSize)
            }
            let result = try GPTQ.quantize(w, rows: rows, columns: columns, hessian: hessian,
                                           quantizer: quantizer(rangeShrink: shrink, rangeIncludesZero: true),
                                           options: GPTQ.Options(actOrder: settings.actOrder, staticGroups: settings.actOrder))
            quantized[kind] = .packed(result.matrix)
            errors[kind] = try relativeError(original: try weights(role), quantized: result.matrix, hessian: hessian)
            replaced[role] = .packed(result.matrix)
        }
        let storage = EngineTensors(engine: engine)
        let block = try candidate(l, linears: quantized, storage: storage)
        hidden = try withExtendedLifetime(storage) { try hidden.map { try session.probeBlock(l, weights: block, hidden: $0) } }
        return errors
    }

    /// `tr((W − Ŵ) H (W − Ŵ)ᵀ) / tr(W H Wᵀ)`: the output error on the calibration inputs relative to the
    /// output's energy, which is what GPTQ minimises. The products run on the engine (H is symmetric,
    /// so `D·H = D·Hᵀ`).
    func relativeError(original w: [Float], quantized: PackedMatrix, hessian h: [Double]) throws -> Double {
        let rows = quantized.rows, n = quantized.columns
        let q = quantized.dequantized()
        let d = (0 ..< rows * n).map { w[$0] - q[$0] }
        let hFloat = h.map { Float($0) }
        func quadratic(_ m: [Float]) throws -> Double {
            var product = [Float](repeating: 0, count: rows * n)
            try m.withUnsafeBufferPointer { a in
                try hFloat.withUnsafeBufferPointer { b in
                    try product.withUnsafeMutableBufferPointer {
                        try multiplier.multiplyTransposed(a, rows: rows, b, rows: n, inner: n, into: $0)
                    }
                }
            }
            var sum = 0.0
            for i in 0 ..< rows * n { sum += Double(product[i]) * Double(m[i]) }
            return sum
        }
        let energy = try quadratic(w)
        return energy > 0 ? try quadratic(d) / energy : 0
    }
}
