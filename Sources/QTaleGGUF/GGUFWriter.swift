import Foundation
import QTaleCore

/// Writes GGUF v3 files: metadata plus raw tensor bytes. Used to build small synthetic models for tests
/// and to export models; the file appears atomically (temporary file, then rename).
public struct GGUFWriter {
    public enum Value {
        case uint32(UInt32), int32(Int32), float32(Float), bool(Bool), string(String)
        case strings([String]), int32s([Int32]), floats([Float])
    }

    public struct Tensor {
        public var name: String
        /// GGUF order: fastest-varying first.
        public var dimensions: [Int]
        public var rawType: UInt32
        public var data: [UInt8]

        public init(name: String, dimensions: [Int], rawType: UInt32, data: [UInt8]) {
            self.name = name
            self.dimensions = dimensions
            self.rawType = rawType
            self.data = data
        }
    }

    public var metadata: [(String, Value)] = []
    public var tensors: [Tensor] = []
    public var alignment = 32

    public init() {}

    public mutating func add(_ key: String, _ value: Value) { metadata.append((key, value)) }

    /// A float32 tensor.
    public mutating func add(_ name: String, dimensions: [Int], floats: [Float]) {
        tensors.append(Tensor(name: name, dimensions: dimensions, rawType: GGUFTensorType.f32.rawValue,
                              data: floats.withUnsafeBytes { Array($0) }))
    }

    /// Quantizes `values` (`rows × columns`, row-major) to GGUF Q4_1 or Q8_0 blocks with round-to-nearest.
    public mutating func addQuantized(_ name: String, type: GGUFTensorType, rows: Int, columns: Int, values: [Float]) {
        precondition(columns % 32 == 0 && values.count == rows * columns)
        var data: [UInt8] = []
        for block in stride(from: 0, to: values.count, by: 32) {
            let v = values[block ..< block + 32]
            switch type {
            case .q4_1:
                let lo = v.min()!, hi = v.max()!
                let d = Float16((hi - lo) / 15), m = Float16(lo)
                let inverse = Float(d) == 0 ? 0 : 1 / Float(d)
                let q = v.map { UInt8(max(0, min(15, (($0 - Float(m)) * inverse).rounded()))) }
                data += withUnsafeBytes(of: d.bitPattern.littleEndian, Array.init)
                data += withUnsafeBytes(of: m.bitPattern.littleEndian, Array.init)
                data += (0..<16).map { q[$0] | q[$0 + 16] << 4 }
            case .q8_0:
                let amax = v.map(abs).max()!
                let d = Float16(amax / 127)
                let inverse = Float(d) == 0 ? 0 : 1 / Float(d)
                data += withUnsafeBytes(of: d.bitPattern.littleEndian, Array.init)
                data += v.map { UInt8(bitPattern: Int8(max(-127, min(127, ($0 * inverse).rounded())))) }
            default:
                preconditionFailure("addQuantized writes Q4_1 or Q8_0")
            }
        }
        tensors.append(Tensor(name: name, dimensions: [columns, rows], rawType: type.rawValue, data: data))
    }

    /// The whole file's bytes.
    public func bytes(version: UInt32 = 3) -> [UInt8] {
        var metadata = metadata
        if alignment != 32 && !metadata.contains(where: { $0.0 == "general.alignment" }) {
            metadata.append(("general.alignment", .uint32(UInt32(alignment))))
        }
        var out: [UInt8] = Array("GGUF".utf8)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func string(_ s: String) { u64(UInt64(s.utf8.count)); out += Array(s.utf8) }
        u32(version)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count))
        for (key, value) in metadata {
            string(key)
            switch value {
            case .uint32(let v): u32(4); u32(v)
            case .int32(let v): u32(5); u32(UInt32(bitPattern: v))
            case .float32(let v): u32(6); u32(v.bitPattern)
            case .bool(let v): u32(7); out.append(v ? 1 : 0)
            case .string(let v): u32(8); string(v)
            case .strings(let v): u32(9); u32(8); u64(UInt64(v.count)); v.forEach(string)
            case .int32s(let v): u32(9); u32(5); u64(UInt64(v.count)); v.forEach { u32(UInt32(bitPattern: $0)) }
            case .floats(let v): u32(9); u32(6); u64(UInt64(v.count)); v.forEach { u32($0.bitPattern) }
            }
        }
        var offset = 0
        for t in tensors {
            string(t.name)
            u32(UInt32(t.dimensions.count))
            t.dimensions.forEach { u64(UInt64($0)) }
            u32(t.rawType)
            u64(UInt64(offset))
            offset += (t.data.count + alignment - 1) / alignment * alignment
        }
        func pad() { while out.count % alignment != 0 { out.append(0) } }
        pad()
        for t in tensors {
            out += t.data
            pad()
        }
        return out
    }

    /// Writes the file atomically.
    public func write(to path: String) throws {
        do {
            try Data(bytes()).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw QTaleError.io("cannot write '\(path)': \(error.localizedDescription)")
        }
    }
}
