import QTaleCore
import QTaleModel

extension ModelQuantizer {
    /// AWQ for block `l` (see the type's overview); `hidden` becomes the float block's outputs.
    func quantizeBlockAWQ(_ l: Int, session: LlamaModel, hidden: inout [[Float]]) throws -> String {
        let c = model.configuration
        let original = model.weights.blocks[l]
        let reference = try probe(l, weights: original, session: session, hidden: hidden,
                                  collect: [.attentionInput, .attended, .attentionOutput, .mlpInput, .mlpHidden, .mlpOutput])
        let acts = reference.activations
        let rtn = try quantizer()
        var w: [LinearKind: [Float]] = [:]
        for kind in LinearKind.allCases { w[kind] = try weights(.linear(block: l, kind)) }
        var attentionNorm = try weights(.attentionNorm(block: l)), ffnNorm = try weights(.ffnNorm(block: l))
        let qDim = c.nHeads * c.headDim
        func tokens(_ point: BlockProbePoint, width: Int) -> Int { acts[point]!.count / width }

        /// Searches the scale of the linears `kinds` reading `input` (`width` channels); `loss` gets their
        /// quantize-dequantized weights in the original input space, in `kinds` order.
        func search(_ kinds: [LinearKind], input: BlockProbePoint, width: Int,
                    loss: ([[Float]]) throws -> Double) throws -> AWQScaleSearch.Result {
            let magnitude = try AWQScaleSearch.activationMagnitude(acts[input]!, tokens: tokens(input, width: width), columns: width)
            let linears = kinds.map { AWQScaleSearch.Linear(weight: w[$0]!, rows: $0.shape(in: c).rows, columns: width) }
            return try AWQScaleSearch.searchBestScale(candidates: AWQScaleSearch.candidateScales(activationMagnitude: magnitude),
                                                      linears: linears, quantizer: rtn, loss: loss)
        }
        /// Runs the block with `kinds` replaced by dense `weights` up to `point` and returns its activations.
        func run(_ kinds: [LinearKind], _ weights: [[Float]], observe point: BlockProbePoint) throws -> [Float] {
            var linears: [LinearKind: HostTensor] = [:]
            for (kind, values) in zip(kinds, weights) {
                linears[kind] = .float(values, rows: kind.shape(in: c).rows, columns: kind.shape(in: c).columns)
            }
            // The candidate's buffers must outlive the probe that reads them.
            let storage = EngineTensors(engine: engine)
            let block = try candidate(l, linears: linears, storage: storage)
            return try withExtendedLifetime(storage) {
                try probe(l, weights: block, session: session, hidden: hidden, collect: [point], stopAfter: point).activations[point]!
            }
        }
        /// `x · Wᵀ` for the single linear `kind` on the host-collected input `point`.
        func apply(_ kind: LinearKind, _ weight: [Float], to point: BlockProbePoint) throws -> [Float] {
            let (rows, columns) = kind.shape(in: c)
            return try product(acts[point]!, rows: tokens(point, width: columns), weight, rows: rows, inner: columns)
        }

        // [q, k, v] behind the attention norm; loss on the attention sublayer's output.
        let qkv: [LinearKind] = [.query, .key, .value]
        let sAttention = try search(qkv, input: .attentionInput, width: c.dModel) {
            Self.meanSquaredError(try run(qkv, $0, observe: .attentionOutput), acts[.attentionOutput]!)
        }
        for kind in qkv { w[kind] = Self.scaleColumns(w[kind]!, rows: kind.shape(in: c).rows, by: sAttention.scales) }
        attentionNorm = Self.divide(attentionNorm, by: sAttention.scales)

        // [o] behind v (v's output rows absorb 1/s), only when v and o have the same width: under
        // grouped-query attention one v row feeds several heads' o columns, so no per-column scale folds.
        var sOutput: AWQScaleSearch.Result?
        if c.nKVHeads == c.nHeads {
            let result = try search([.attentionOutput], input: .attended, width: qDim) {
                Self.meanSquaredError(try apply(.attentionOutput, $0[0], to: .attended), acts[.attentionOutput]!)
            }
            w[.attentionOutput] = Self.scaleColumns(w[.attentionOutput]!, rows: c.dModel, by: result.scales)
            w[.value] = Self.divideRows(w[.value]!, columns: c.dModel, by: result.scales)
            sOutput = result
        }

        // [gate, up] behind the MLP norm; loss on the MLP output.
        let gateUp: [LinearKind] = [.gate, .up]
        let sMLP = try search(gateUp, input: .mlpInput, width: c.dModel) {
            Self.meanSquaredError(try run(gateUp, $0, observe: .mlpOutput), acts[.mlpOutput]!)
        }
        for kind in gateUp { w[kind] = Self.scaleColumns(w[kind]!, rows: kind.shape(in: c).rows, by: sMLP.scales) }
        ffnNorm = Self.divide(ffnNorm, by: sMLP.scales)

        // [down] behind up (up's output rows absorb 1/s); loss on down's own output.
        let sDown = try search([.down], input: .mlpHidden, width: c.ffnDim) {
            Self.meanSquaredError(try apply(.down, $0[0], to: .mlpHidden), acts[.mlpOutput]!)
        }
        w[.down] = Self.scaleColumns(w[.down]!, rows: c.dModel, by: sDown.scales)
        w[.up] = Self.divideRows(w[.up]!, columns: c.dModel, by: sDown.scales)

        // Clipping search on every linear but q and k, against the inputs the scaled linears now see.
        let scaledInputs: [LinearKind: (BlockProbePoint, [Float])] = [
            .value: (.attentionInput, sAttention.scales), .attentionOutput: (.attended, sOutput?.scales ?? []),
            .gate: (.mlpInput, sMLP.scales), .up: (.mlpInput, sMLP.scales), .down: (.mlpHidden, sDown.scales),
        ]
        for kind in LinearKind.allCases {
            let (rows, columns) = kind.shape(in: c)
            var clip: [Float]?
            if let (point, s) = scaledInputs[kind] {
                let n = tokens(point, width: columns)
                let x = s.isEmpty ? acts[point]! : Self.divideColumns(acts[point]!, rows: n, by: s)
                clip = try AWQClipSearch.search(weight: w[kind]!, rows: rows, columns: columns, inputs: x, tokens: n,
                                                quantizer: rtn).maxima
            }
            replaced[.linear(block: l, kind)] = .packed(try RoundToNearest.quantize(w[kind]!, rows: rows, columns: columns,
                                                                                   quantizer: rtn, clipMaxima: clip))
        }
        replaced[.attentionNorm(block: l)] = .float(attentionNorm, rows: 1, columns: c.dModel)
        replaced[.ffnNorm(block: l)] = .float(ffnNorm, rows: 1, columns: c.dModel)
        hidden = reference.outputs
        func alpha(_ r: AWQScaleSearch.Result?) -> String { r.map { String(format: "%.2f", Double($0.index) / Double(AWQScaleSearch.gridSize)) } ?? "-" }
        return "α qkv \(alpha(sAttention)) o \(alpha(sOutput)) gate/up \(alpha(sMLP)) down \(alpha(sDown))"
    }

    /// `a · bᵀ` on the engine.
    func product(_ a: [Float], rows m: Int, _ b: [Float], rows n: Int, inner k: Int) throws -> [Float] {
        var out = [Float](repeating: 0, count: m * n)
        try a.withUnsafeBufferPointer { a in
            try b.withUnsafeBufferPointer { b in
                try out.withUnsafeMutableBufferPointer { try multiplier.multiplyTransposed(a, rows: m, b, rows: n, inner: k, into: $0) }
            }
        }
        return out
    }

    static func meanSquaredError(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count, "meanSquaredError: shapes differ")
        var sum = 0.0
        for i in a.indices { let d = Double(a[i] - b[i]); sum += d * d }
        return sum / Double(max(1, a.count))
    }

    /// `W · diag(s)`: column `k` of every row times `s[k]`.
    static func scaleColumns(_ w: [Float], rows: Int, by s: [Float]) -> [Float] {
        let columns = s.count
        var out = w
        for r in 0..<rows { for k in 0..<columns { out[r * columns + k] *= s[k] } }
        return out
    }

    /// `X · diag(s)⁻¹`.
    static func divideColumns(_ x: [Float], rows: Int, by s: [Float]) -> [Float] {
        scaleColumns(x, rows: rows, by: s.map { 1 / $0 })
    }

    /// `diag(s)⁻¹ · W`: row `r` divided by `s[r]`.
    static func divideRows(_ w: [Float], columns: Int, by s: [Float]) -> [Float] {
        var out = w
        for r in s.indices { for k in 0..<columns { out[r * columns + k] /= s[r] } }
        return out
    }

    static func divide(_ v: [Float], by s: [Float]) -> [Float] { zip(v, s).map { $0 / $1 } }
}
