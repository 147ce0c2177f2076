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
    /// Bit `i` of the high-bit word selects lane `i` (mod 16) of each half.
    static let laneBits = SIMD16<UInt32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

    @inline(__always) static func unpack(_ pack: UnsafePointer<UInt8>) -> (FloatVector, FloatVector) {
        let raw = UnsafeRawPointer(pack)
        let low = raw.loadUnaligned(as: SIMD8<UInt8>.self)
        let high = raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        let first = SIMD16<UInt8>(lowHalf: low & 3, highHalf: (low &>> 2) & 3)
        let second = SIMD16<UInt8>(lowHalf: (low &>> 4) & 3, highHalf: low &>> 6)
        let highFirst = (SIMD16<UInt32>(repeating: high) &>> laneBits) & 1
        let highSecond = (SIMD16<UInt32>(repeating: high &>> 16) &>> laneBits) & 1
        return (FloatVector(codes: first) + FloatVector(lanes: highFirst &<< 2),
                FloatVector(codes: second) + FloatVector(lanes: highSecond &<< 2))
    }
}
