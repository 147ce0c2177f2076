/// The vector type of every SIMD hot loop (the CPU engine's kernels, the quantizers): 16 float32 lanes,
/// one AVX-512 register or two AVX2 ones. Defined here once so that code that must not import an engine
/// (quantizers, training) shares the engine's conventions.
public typealias FloatVector = SIMD16<Float>

extension UnsafePointer where Pointee == Float {
    /// 16 floats from `self + offset`, unaligned.
    @inlinable @inline(__always) public func vector(at offset: Int) -> FloatVector {
        UnsafeRawPointer(self + offset).loadUnaligned(as: FloatVector.self)
    }
}

extension UnsafeMutablePointer where Pointee == Float {
    /// 16 floats from `self + offset`, unaligned.
    @inlinable @inline(__always) public func vector(at offset: Int) -> FloatVector {
        UnsafeRawPointer(self + offset).loadUnaligned(as: FloatVector.self)
    }

    /// Stores 16 floats at `self + offset`, unaligned.
    @inlinable @inline(__always) public func store(_ v: FloatVector, at offset: Int) {
        UnsafeMutableRawPointer(self + offset).storeBytes(of: v, as: FloatVector.self)
    }
}
