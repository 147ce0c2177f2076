import Dispatch
import QTaleCore

/// Round-to-nearest (RTN): every group quantized on its own min/max grid, no error feedback.
///
/// The baseline every other method is measured against, the final step of AWQ (after its scales and
/// clips are folded in), and the reference GPTQ reduces to when the Hessian is the identity.
public enum RoundToNearest {
    /// Quantizes a row-major `[rows × columns]` float matrix (rows = output channels) into the packed layout.
    /// - Parameter clipMaxima: optional `[rows × groupsPerRow]` clip bounds (AWQ's clip search); each
    ///   group's weights are clamped to `[−clip, clip]` before quantization.
    public static func quantize(_ weights: [Float], rows: Int, columns: Int, quantizer: GroupQuantizer,
                                clipMaxima: [Float]? = nil) throws -> PackedMatrix {
        try weights.withUnsafeBufferPointer {
            try quantize($0, rows: rows, columns: columns, quantizer: quantizer, clipMaxima: clipMaxima)
        }
    }

    public static func quantize(_ weights: UnsafeBufferPointer<Float>, rows: Int, columns: Int,
                                quantizer: GroupQuantizer, clipMaxima: [Float]? = nil) throws -> PackedMatrix {
        try validate(weights, rows: rows, columns: columns, quantizer: quantizer, clipMaxima: clipMaxima)
        var builder = CodeMatrixBuilder(format: quantizer.format, rows: rows, columns: columns)
        let groups = builder.groupsPerRow
        builder.codes.withUnsafeMutableBufferPointer { codes in
            builder.scales.withUnsafeMutableBufferPointer { scales in
                builder.offsets.withUnsafeMutableBufferPointer { offsets in
                    forEachRow(rows: rows, columns: columns) { r in
                        for g in 0..<groups {
                            let (start, end) = groupBounds(g, quantizer: quantizer, columns: columns)
                            let values = UnsafeBufferPointer(rebasing: weights[(r * columns + start) ..< (r * columns + end)])
                            let p = quantizer.parameters(for: values, clip: clipMaxima?[r * groups + g] ?? .infinity)
                            scales[r * groups + g] = p.scale
                            offsets[r * groups + g] = p.offset
                            for k in start..<end { codes[r * columns + k] = UInt8(p.code(for: weights[r * columns + k])) }
                        }
                    }
                }
            }
        }
        return try builder.packed()
    }

    /// The matrix after quantize-dequantize, row-major, exactly as engines will compute it; what AWQ's
    /// scale and clip searches evaluate (no packing).
    public static func fakeQuantize(_ weights: UnsafeBufferPointer<Float>, rows: Int, columns: Int,
                                    quantizer: GroupQuantizer, clipMaxima: [Float]? = nil) throws -> [Float] {
        try validate(weights, rows: rows, columns: columns, quantizer: quantizer, clipMaxima: clipMaxima)
        let groups = quantizer.format.groupsPerRow(columns: columns)
        var out = [Float](repeating: 0, count: rows * columns)
        out.withUnsafeMutableBufferPointer { out in
            forEachRow(rows: rows, columns: columns) { r in
                for g in 0..<groups {
                    let (start, end) = groupBounds(g, quantizer: quantizer, columns: columns)
                    let values = UnsafeBufferPointer(rebasing: weights[(r * columns + start) ..< (r * columns + end)])
                    let p = quantizer.parameters(for: values, clip: clipMaxima?[r * groups + g] ?? .infinity)
                    for k in start..<end { out[r * columns + k] = p.quantize(weights[r * columns + k]) }
                }
            }
        }
        return out
    }

    public static func fakeQuantize(_ weights: [Float], rows: Int, columns: Int, quantizer: GroupQuantizer,
                                    clipMaxima: [Float]? = nil) throws -> [Float] {
        try weights.withUnsafeBufferPointer {
            try fakeQuantize($0, rows: rows, columns: columns, quantizer: quantizer, clipMaxima: clipMaxima)
        }
    }

    /// Columns `start ..< end` of group `g` (the last group of a row may be shorter).
    @inline(__always)
    static func groupBounds(_ g: Int, quantizer: GroupQuantizer, columns: Int) -> (Int, Int) {
        let start = g * quantizer.format.groupSize
        return (start, min(columns, start + quantizer.format.groupSize))
    }

    private static func validate(_ weights: UnsafeBufferPointer<Float>, rows: Int, columns: Int,
                                 quantizer: GroupQuantizer, clipMaxima: [Float]?) throws {
        guard rows > 0, columns > 0, weights.count == rows * columns else {
            throw QTaleError.invalidArgument("RTN: \(weights.count) weights do not form a \(rows) × \(columns) matrix")
        }
        let groups = quantizer.format.groupsPerRow(columns: columns)
        if let clipMaxima, clipMaxima.count != rows * groups {
            throw QTaleError.invalidArgument("RTN: clip maxima must be [\(rows) × \(groups)], got \(clipMaxima.count) values")
        }
    }

    /// Runs `body(row)` for every row, rows split across cores when the matrix is large enough to pay.
    static func forEachRow(rows: Int, columns: Int, _ body: (Int) -> Void) {
        ParallelWork.forEachRange(rows, estimatedWork: rows * columns) { range in
            for r in range { body(r) }
        }
    }
}
