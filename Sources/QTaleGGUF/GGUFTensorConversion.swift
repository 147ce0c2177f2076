import QTaleCore

/// Conversions from GGUF tensor encodings into the project's own forms.
///
/// - Float tensors (F32, F16, BF16) become `[Float]`.
/// - Q4_0, Q4_1 and Q8_0 become a ``PackedMatrix`` losslessly: the same codes, scales and offsets,
///   regrouped into the ``QuantizationFormat`` layout (group 32, the GGUF block size).
extension GGUFFile {
    /// The tensor's values as float32. Quantized types are dequantized.
    public func floats(_ tensor: GGUFTensorInfo) throws -> [Float] {
        let raw = data(of: tensor)
        switch tensor.type {
        case .f32:
            return (0..<tensor.elementCount).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        case .f16:
            return (0..<tensor.elementCount).map { Float(raw.loadUnaligned(fromByteOffset: 2 * $0, as: Float16.self)) }
        case .bf16:
            return (0..<tensor.elementCount).map {
                Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) << 16)
            }
        case .q4_0, .q4_1, .q8_0:
            return try packedMatrix(tensor).dequantized()
        }
    }

    /// The tensor as a group-32 quantized matrix of `rows × columns` (GGUF `dimensions[1...] × dimensions[0]`).
    public func packedMatrix(_ tensor: GGUFTensorInfo) throws -> PackedMatrix {
        let bits: Int
        switch tensor.type {
        case .q4_0, .q4_1: bits = 4
        case .q8_0: bits = 8
        default:
            throw QTaleError.invalidModel("tensor '\(tensor.name)' is \(tensor.type), not a quantized type (Q4_0, Q4_1 or Q8_0)")
        }
        let format = try QuantizationFormat(bits: bits, groupSize: 32)
        var matrix = try PackedMatrix(format: format, rows: tensor.rows, columns: tensor.columns)
        let raw = data(of: tensor)
        let blockBytes = tensor.type.block.bytes
        let packBytes = format.bytesPerPack
        matrix.codes.withUnsafeMutableBytes { codes in
            matrix.scales.withUnsafeMutableBufferPointer { scales in
                matrix.offsets.withUnsafeMutableBufferPointer { offsets in
                    // GGUF rows are contiguous runs of blocks, exactly like our packs, so block b is pack b.
                    for b in 0..<(tensor.elementCount / 32) {
                        let block = raw.baseAddress! + b * blockBytes
                        let d = block.loadUnaligned(as: Float16.self)
                        let pack = codes.baseAddress! + b * packBytes
                        scales[b] = d
                        switch tensor.type {
                        case .q4_0:
                            // w = d * (q - 8): same nibble order as our 4-bit packs.
                            offsets[b] = -8 * d
                            pack.copyMemory(from: block + 2, byteCount: 16)
                        case .q4_1:
                            // w = d * q + m.
                            offsets[b] = block.loadUnaligned(fromByteOffset: 2, as: Float16.self)
                            pack.copyMemory(from: block + 4, byteCount: 16)
                        default:
                            // Q8_0: w = d * q with signed q; code = q + 128, offset = -128 d (exact: a power of two).
                            offsets[b] = -128 * d
                            for i in 0..<32 {
                                let q = block.load(fromByteOffset: 2 + i, as: Int8.self)
                                pack.storeBytes(of: UInt8(Int(q) + 128), toByteOffset: i, as: UInt8.self)
                            }
                        }
                    }
                }
            }
        }
        return matrix
    }
}
