#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import QTaleCore
import QTaleTestSupport

/// One op with concrete shapes and seeded inputs, in the style of ggml's test-backend-ops.
///
/// `build` allocates inputs on an engine from a seeded generator and returns the op plus its guarded
/// outputs. Building the same case on two engines gives bit-identical inputs, so outputs compare directly.
public struct ConformanceCase: CustomStringConvertible {
    public let op: String
    public let parameters: String
    /// Largest allowed normalized mean squared error, `Σ(a−b)² / Σb²`, against the reference.
    public let maxNMSE: Double
    let build: (inout CaseBuilder) throws -> Op

    public var description: String { "\(op)(\(parameters))" }
}

/// Allocates a case's buffers on one engine.
public struct CaseBuilder {
    public let engine: any ComputeEngine
    public var random: TestRandom
    var buffers: [DeviceBuffer] = []
    var outputs: [GuardedOutput] = []

    /// Floats of sentinel written before and after every output.
    static let guardFloats = 16
    static let sentinel = Float(bitPattern: 0x7FC0_DEAD)

    init(engine: any ComputeEngine, seed: UInt64) {
        self.engine = engine
        random = TestRandom(seed: seed)
    }

    /// A float32 input `[rows × columns]` with values uniform in `range` and row stride `rowStride`.
    public mutating func input(_ rows: Int, _ columns: Int, range: ClosedRange<Float> = -1...1, rowStride: Int? = nil) throws -> TensorView {
        let stride = rowStride ?? columns
        var values = [Float](repeating: 0, count: max(1, rows * stride))
        for i in values.indices { values[i] = random.uniform(range.lowerBound, range.upperBound) }
        let buffer = try engine.makeBuffer(values)
        buffers.append(buffer)
        return TensorView(buffer: buffer.handle, type: .float32, rows: rows, columns: columns, rowStride: stride, byteOffset: 0)
    }

    /// A float32 input `[rows × columns]` whose values span six decades: uniform in -1...1, each scaled by
    /// 10^u with u uniform in -3...3, as activations with outlier channels do. Kernels that scale their
    /// input per group (OpenCL's CPU decode splits it into int16 terms) must keep every group's scale apart.
    public mutating func wideRangeInput(_ rows: Int, _ columns: Int) throws -> TensorView {
        var values = [Float](repeating: 0, count: max(1, rows * columns))
        for i in values.indices { values[i] = random.uniform(-1, 1) * Float(pow(10, Double(random.uniform(-3, 3)))) }
        let buffer = try engine.makeBuffer(values)
        buffers.append(buffer)
        return TensorView(buffer: buffer.handle, type: .float32, rows: rows, columns: columns, rowStride: columns, byteOffset: 0)
    }

    /// An int32 vector `[1 × values.count]`.
    public mutating func integers(_ values: [Int32]) throws -> TensorView {
        let buffer = try engine.makeBuffer(values.isEmpty ? [0] : values)
        buffers.append(buffer)
        return TensorView(buffer: buffer.handle, type: .int32, rows: 1, columns: values.count, rowStride: values.count, byteOffset: 0)
    }

    /// A random quantized matrix: uniform codes, positive scales, signed offsets.
    public mutating func quantized(bits: Int, groupSize: Int, rows: Int, columns: Int) throws -> QuantizedMatrix {
        let format = try QuantizationFormat(bits: bits, groupSize: groupSize)
        var packed = try PackedMatrix(format: format, rows: rows, columns: columns)
        if columns % QuantizationFormat.codesPerPack == 0 {
            // Every bit pattern is a valid pack when no pack is padded: fill bytes directly (fast for large shapes).
            for i in packed.codes.indices { packed.codes[i] = UInt8(truncatingIfNeeded: random.next()) }
        } else {
            for r in 0..<rows {
                for c in 0..<columns { packed.setCode(Int(random.next() % UInt64(format.maxCode + 1)), row: r, column: c) }
            }
        }
        let spread = 2 / Float(format.maxCode)
        for i in packed.scales.indices {
            packed.scales[i] = Float16(spread * random.uniform(0.5, 1.5))
            packed.offsets[i] = Float16(random.uniform(-1.2, -0.8))
        }
        return try engine.upload(packed, keepAlive: &buffers)
    }

    /// An output `[rows × columns]` (row stride `rowStride`) with sentinel guard regions on both sides.
    /// When `initial` is given, the output starts with those values (for in-place ops).
    public mutating func output(_ rows: Int, _ columns: Int, rowStride: Int? = nil, initialRange: ClosedRange<Float>? = nil) throws -> TensorView {
        let stride = rowStride ?? columns
        let count = rows * stride, g = Self.guardFloats
        var values = [Float](repeating: Self.sentinel, count: count + 2 * g)
        for i in 0..<count {
            let column = i % stride
            values[g + i] = column < columns ? (initialRange.map { random.uniform($0.lowerBound, $0.upperBound) } ?? 0) : Self.sentinel
        }
        let buffer = try engine.makeBuffer(values)
        buffers.append(buffer)
        let view = TensorView(buffer: buffer.handle, type: .float32, rows: rows, columns: columns, rowStride: stride,
                              byteOffset: 4 * g)
        outputs.append(GuardedOutput(view: view, totalFloats: values.count))
        return view
    }

    /// A guarded int32 output `[1 × count]` that starts as random bits, so every element must be written.
    public mutating func integerOutput(_ count: Int) throws -> TensorView {
        let floats = try output(1, count, initialRange: -1...1)
        return TensorView(buffer: floats.buffer, type: .int32, rows: 1, columns: count, rowStride: count, byteOffset: floats.byteOffset)
    }
}

struct GuardedOutput {
    let view: TensorView
    let totalFloats: Int
}
