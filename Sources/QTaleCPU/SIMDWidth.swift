import QTaleCore

/// The one place that fixes the CPU engine's vector width and its helpers, as ggml's simd-mappings.h does.
///
/// Kernels are written against `FloatVector` (16 float32 lanes). On AVX2 the compiler splits it into two
/// 8-lane registers; on AVX-512 it is one register.
public enum SIMDWidth {
    public static let lanes = 16
}

typealias ByteVector = SIMD16<UInt8>

extension FloatVector {
    /// Bytes widened to floats (codes 0...255).
    ///
    /// Written as a lane loop on purpose: the standard library's generic SIMD conversions are not
    /// inlined and cost a call per vector, while this loop becomes one zero-extend and one convert.
    @inline(__always) init(codes: ByteVector) {
        self.init()
        for i in 0..<16 { self[i] = Float(codes[i]) }
    }

    /// 32-bit lanes converted to floats (values below 2^24 are exact).
    @inline(__always) init(lanes: SIMD16<UInt32>) {
        self.init()
        for i in 0..<16 { self[i] = Float(lanes[i]) }
    }
}

extension FloatVector {
    /// 16 binary16 values widened (one `vcvtph2ps` on F16C/AVX-512 machines).
    @inline(__always) init(halves pointer: UnsafePointer<Float16>) {
        let h = UnsafeRawPointer(pointer).loadUnaligned(as: SIMD16<Float16>.self)
        self.init()
        for i in 0..<16 { self[i] = Float(h[i]) }
    }

    /// Sum of the lanes as a tree of halves. `sum()` adds lane by lane in order, a chain of 15
    /// dependent scalar adds; the tree is 4 vector adds.
    @inline(__always) var treeSum: Float {
        let s8 = lowHalf + highHalf
        let s4 = s8.lowHalf + s8.highHalf
        let s2 = s4.lowHalf + s4.highHalf
        return s2[0] + s2[1]
    }
}

/// Dot product of `count` floats (any count), float32 accumulation in 16 lanes.
@inline(__always)
func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var acc = FloatVector()
    var i = 0
    while i + 16 <= count {
        acc.addProduct(a.vector(at: i), b.vector(at: i))
        i += 16
    }
    var sum = acc.treeSum
    while i < count {
        sum += a[i] * b[i]
        i += 1
    }
    return sum
}
