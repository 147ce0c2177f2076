import QTaleCore

/// Dense float32 `a · bᵀ`, the one heavy product calibration needs (Gram matrices of activations,
/// MagR's `XᵀX`), behind a protocol so that the algorithms stay engine-free and run on whichever
/// ``ComputeEngine`` the user picked.
///
/// Both operands are row-major with the shared dimension contiguous (`[m × k]` and `[n × k]`), which is
/// the layout of the engines' `.linear` op (`output = input · weightᵀ`) and of a transposed activation
/// batch, so no caller has to transpose twice.
public protocol MatrixMultiplying: AnyObject {
    /// `out[i][j] = Σ_l a[i][l] · b[j][l]`: `[m × k] · [n × k]ᵀ → [m × n]`, all row-major float32.
    func multiplyTransposed(_ a: UnsafeBufferPointer<Float>, rows m: Int,
                            _ b: UnsafeBufferPointer<Float>, rows n: Int, inner k: Int,
                            into out: UnsafeMutableBufferPointer<Float>) throws
}

/// ``MatrixMultiplying`` on a ``ComputeEngine``: uploads both operands, runs one `.linear` op
/// (`output = input · weightᵀ`, no bias) and reads the product back.
///
/// The three engine buffers only grow, so repeated calls with the same shapes (one per calibration
/// chunk) allocate nothing. Not thread-safe, like the engine it wraps.
public final class EngineMatrixMultiplier: MatrixMultiplying {
    public let engine: any ComputeEngine
    private var left: DeviceBuffer?
    private var right: DeviceBuffer?
    private var product: DeviceBuffer?

    public init(engine: any ComputeEngine) {
        self.engine = engine
    }

    public func multiplyTransposed(_ a: UnsafeBufferPointer<Float>, rows m: Int,
                                   _ b: UnsafeBufferPointer<Float>, rows n: Int, inner k: Int,
                                   into out: UnsafeMutableBufferPointer<Float>) throws {
        guard m > 0, n > 0, k > 0 else {
            throw QTaleError.invalidArgument("matrix product [\(m) × \(k)] · [\(n) × \(k)]ᵀ has an empty dimension")
        }
        guard a.count >= m * k, b.count >= n * k, out.count >= m * n else {
            throw QTaleError.invalidArgument(
                "matrix product [\(m) × \(k)] · [\(n) × \(k)]ᵀ needs \(m * k), \(n * k) and \(m * n) floats; got \(a.count), \(b.count) and \(out.count)")
        }
        let stride = MemoryLayout<Float>.stride
        let aBuffer = try Self.buffer(&left, floats: m * k, engine: engine)
        let bBuffer = try Self.buffer(&right, floats: n * k, engine: engine)
        let outBuffer = try Self.buffer(&product, floats: m * n, engine: engine)
        try engine.write(UnsafeRawBufferPointer(start: a.baseAddress, count: m * k * stride), to: aBuffer.handle, byteOffset: 0)
        try engine.write(UnsafeRawBufferPointer(start: b.baseAddress, count: n * k * stride), to: bBuffer.handle, byteOffset: 0)
        try engine.run(.linear(input: aBuffer.view(.float32, rows: m, columns: k),
                               weight: bBuffer.view(.float32, rows: n, columns: k),
                               bias: nil,
                               output: outBuffer.view(.float32, rows: m, columns: n)))
        try engine.read(outBuffer.handle, byteOffset: 0,
                        into: UnsafeMutableRawBufferPointer(start: out.baseAddress, count: m * n * stride))
    }

    /// `slot`'s buffer if it holds `floats`, else a new one (with a quarter's headroom, so slowly
    /// growing shapes do not reallocate every call).
    private static func buffer(_ slot: inout DeviceBuffer?, floats: Int, engine: any ComputeEngine) throws -> DeviceBuffer {
        let bytes = floats * MemoryLayout<Float>.stride
        if let buffer = slot, buffer.byteCount >= bytes { return buffer }
        slot = nil // free the old buffer before allocating the larger one
        let buffer = try engine.allocate(byteCount: bytes + bytes / 4)
        slot = buffer
        return buffer
    }
}
