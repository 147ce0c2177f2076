import QTaleCore

/// Unpacks one pack of 32 codes (see ``QuantizationFormat``) into two 16-lane float vectors:
/// codes 0-15 and codes 16-31. One conformer per bit width, so kernels specialise per format.
protocol CodeUnpacker {
    static var bytesPerPack: Int { get }
    static func unpack(_ pack: UnsafePointer<UInt8>) -> (FloatVector, FloatVector)
}

enum EightBitCodes: CodeUnpacker {
    static var bytesPerPack: Int { 32 }
    @inline(__always) static func unpack(_ pack: UnsafePointer<UInt8>) -> (FloatVector, FloatVector) {
        let raw = UnsafeRawPointer(pack)
        return (FloatVector(codes: raw.loadUnaligned(as: ByteVector.self)),
                FloatVector(codes: raw.loadUnaligned(fromByteOffset: 16, as: ByteVector.self)))
    }
}

enum FourBitCodes: CodeUnpacker {
    static var bytesPerPack: Int { 16 }
    @inline(__always) static func unpack(_ pack: UnsafePointer<UInt8>) -> (FloatVector, FloatVector) {
        let bytes = UnsafeRawPointer(pack).loadUnaligned(as: ByteVector.self)
        return (FloatVector(codes: bytes & 0x0F), FloatVector(codes: bytes &>> 4))
    }
}

enum ThreeBitCodes: CodeUnpacker {
    static var bytesPerPack: Int { 12 }
    /// Lane `i` shifts bit `i` of a 16-bit half of the high-bit word down to bit 0.
    static let laneShifts = SIMD16<UInt32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

    @inline(__always) static func unpack(_ pack: UnsafePointer<UInt8>) -> (FloatVector, FloatVector) {
        let raw = UnsafeRawPointer(pack)
        let low = raw.loadUnaligned(as: SIMD8<UInt8>.self)
        let high = raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        let first = SIMD16<UInt8>(lowHalf: low & 3, highHalf: (low &>> 2) & 3) | highBits(high) &<< 2
        let second = SIMD16<UInt8>(lowHalf: (low &>> 4) & 3, highHalf: low &>> 6) | highBits(high &>> 16) &<< 2
        return (FloatVector(codes: first), FloatVector(codes: second))
    }

    /// Bits 0-15 of `word` as one byte lane each (lane loop: the generic narrowing init is not inlined).
    @inline(__always) static func highBits(_ word: UInt32) -> SIMD16<UInt8> {
        let bits = (SIMD16<UInt32>(repeating: word) &>> laneShifts) & 1
        var out = SIMD16<UInt8>()
        for i in 0..<16 { out[i] = UInt8(truncatingIfNeeded: bits[i]) }
        return out
    }
}
