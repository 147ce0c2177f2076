import QTaleCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension CPUEngine {
    /// `silu(gate) * up`.
    func swiGLU(gate: TensorView, up: TensorView, output: TensorView, slice: WorkSlice) {
        let g = store.pointer(gate, as: Float.self), u = store.pointer(up, as: Float.self)
        let out = store.pointer(output, as: Float.self)
        for r in slice.range(of: gate.rows) {
            let (gr, ur, orow) = (g + r * gate.rowStride, u + r * up.rowStride, out + r * output.rowStride)
            for c in 0..<gate.columns {
                let x = gr[c]
                orow[c] = x / (1 + expf(-x)) * ur[c]
            }
        }
    }

    func add(_ a: TensorView, _ b: TensorView, output: TensorView, slice: WorkSlice) {
        let x = store.pointer(a, as: Float.self), y = store.pointer(b, as: Float.self)
        let out = store.pointer(output, as: Float.self)
        for r in slice.range(of: a.rows) {
            let (xr, yr, orow) = (x + r * a.rowStride, y + r * b.rowStride, out + r * output.rowStride)
            for c in 0..<a.columns { orow[c] = xr[c] + yr[c] }
        }
    }

    func silu(input: TensorView, output: TensorView, slice: WorkSlice) {
        let x = store.pointer(input, as: Float.self), out = store.pointer(output, as: Float.self)
        for r in slice.range(of: input.rows) {
            let (xr, orow) = (x + r * input.rowStride, out + r * output.rowStride)
            for c in 0..<input.columns { orow[c] = xr[c] / (1 + expf(-xr[c])) }
        }
    }

    /// Gather (`output[m] = source[indices[m]]`) or scatter (`output[indices[m]] = source[m]`) of whole rows.
    func moveRows(source: TensorView, indices: TensorView, output: TensorView, gather: Bool, slice: WorkSlice) {
        let bytes = source.type.byteSize
        let index = store.pointer(indices, as: Int32.self)
        let from = store.pointer(source.buffer) + source.byteOffset
        let to = store.pointer(output.buffer) + output.byteOffset
        for m in slice.range(of: indices.columns) {
            let (s, d) = gather ? (Int(index[m]), m) : (m, Int(index[m]))
            (to + d * output.rowStride * bytes).copyMemory(from: from + s * source.rowStride * bytes, byteCount: source.columns * bytes)
        }
    }

    func copy(source: TensorView, destination: TensorView, slice: WorkSlice) {
        let bytes = source.type.byteSize
        let from = store.pointer(source.buffer) + source.byteOffset
        let to = store.pointer(destination.buffer) + destination.byteOffset
        for r in slice.range(of: source.rows) {
            (to + r * destination.rowStride * bytes).copyMemory(from: from + r * source.rowStride * bytes,
                                                               byteCount: source.columns * bytes)
        }
    }

    /// `decisions[t] = 1` iff the token's router logits clear the threshold's margin (``RouterDecisionRule``).
    func routerDecision(logits: TensorView, threshold: Float, decisions: TensorView, slice: WorkSlice) {
        let l = store.pointer(logits, as: Float.self), d = store.pointer(decisions, as: Int32.self)
        let margin = RouterDecisionRule.margin(threshold: threshold)
        for t in slice.range(of: logits.rows) {
            let row = l + t * logits.rowStride
            d[t] = RouterDecisionRule.executes(skip: row[0], execute: row[1], margin: margin) ? 1 : 0
        }
    }
}
