import Foundation
import QTaleCore
import QTaleGGUF

/// Element types of safetensors tensors that qtale reads and writes.
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", i32 = "I32", i8 = "I8", u8 = "U8", i64 = "I64"

    public var byteSize: Int {
        switch self {
        case .f32, .i32: 4
        case .f16, .bf16: 2
        case .i8, .u8: 1
        case .i64: 8
        }
    }
}

/// One tensor's entry in a safetensors header.
public struct SafetensorsTensorInfo: Sendable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    /// Byte range inside the data section.
    public let dataRange: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A safetensors file over a memory mapping: `u64 header length | JSON header | data`.
/// Every offset and shape is validated; malformed files raise ``QTaleError/invalidModel(_:)``.
public final class SafetensorsFile: @unchecked Sendable {
    public let file: MappedFile
    /// `__metadata__`: string keys to string values.
    public let metadata: [String: String]
    public let tensors: [String: SafetensorsTensorInfo]
    private let dataStart: Int

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        let bytes = file.bytes, path = file.path
        guard bytes.count >= 8 else { throw QTaleError.invalidModel("'\(path)' is too short to be a safetensors file") }
        let headerLength = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard headerLength >= 2, headerLength <= 100_000_000, Int(headerLength) <= bytes.count - 8 else {
            throw QTaleError.invalidModel("'\(path)': safetensors header length \(headerLength) does not fit a file of \(bytes.count) bytes (truncated or not safetensors)")
        }
        dataStart = 8 + Int(headerLength)
        let header = Data(UnsafeRawBufferPointer(rebasing: bytes[8 ..< dataStart]))
        guard let json = try? JSONSerialization.jsonObject(with: header) as? [String: Any] else {
            throw QTaleError.invalidModel("'\(path)': the safetensors header is not a JSON object")
        }
        var metadata: [String: String] = [:]
        var tensors: [String: SafetensorsTensorInfo] = [:]
        let dataLength = bytes.count - dataStart
        for (name, value) in json {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw QTaleError.invalidModel("'\(path)': __metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw QTaleError.invalidModel("'\(path)': metadata '\(k)' is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let entry = value as? [String: Any], let dtypeName = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else {
                throw QTaleError.invalidModel("'\(path)': tensor '\(name)' has a malformed header entry")
            }
            guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
                throw QTaleError.invalidModel("'\(path)': tensor '\(name)' has dtype \(dtypeName), which qtale does not read (\(SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            var elements = 1
            for d in shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard d >= 0, !overflow, product <= 1 << 40 else {
                    throw QTaleError.invalidModel("'\(path)': tensor '\(name)' has an invalid shape \(shape)")
                }
                elements = product
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, end >= begin, end <= dataLength else {
                throw QTaleError.invalidModel("'\(path)': tensor '\(name)' data [\(begin), \(end)) lies outside the \(dataLength) data bytes (truncated or corrupt)")
            }
            guard end - begin == elements * dtype.byteSize else {
                throw QTaleError.invalidModel("'\(path)': tensor '\(name)' has \(end - begin) bytes but shape \(shape) of \(dtypeName) needs \(elements * dtype.byteSize)")
            }
            tensors[name] = SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape, dataRange: begin ..< end)
        }
        self.metadata = metadata
        self.tensors = tensors
    }

    public func data(of tensor: SafetensorsTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[(dataStart + tensor.dataRange.lowerBound) ..< (dataStart + tensor.dataRange.upperBound)])
    }

    /// The tensor named `name`, or an error naming it.
    public func tensor(_ name: String) throws -> SafetensorsTensorInfo {
        guard let t = tensors[name] else { throw QTaleError.invalidModel("'\(file.path)' has no tensor '\(name)'") }
        return t
    }

    /// A float tensor's values as float32 (F32, F16 or BF16).
    public func floats(_ tensor: SafetensorsTensorInfo) throws -> [Float] {
        let raw = data(of: tensor)
        switch tensor.dtype {
        case .f32: return (0..<tensor.elementCount).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        case .f16: return (0..<tensor.elementCount).map { Float(raw.loadUnaligned(fromByteOffset: 2 * $0, as: Float16.self)) }
        case .bf16:
            return (0..<tensor.elementCount).map { Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) << 16) }
        default:
            throw QTaleError.invalidModel("'\(file.path)': tensor '\(tensor.name)' is \(tensor.dtype.rawValue), not a float tensor")
        }
    }

    /// A tensor's raw bytes copied out (for integer and packed tensors).
    public func bytes(_ tensor: SafetensorsTensorInfo) -> [UInt8] { Array(data(of: tensor)) }
}

/// Writes safetensors files atomically (temporary file, then rename). Tensors are stored in the order added.
public struct SafetensorsWriter {
    private var entries: [(name: String, dtype: SafetensorsDType, shape: [Int], data: [UInt8])] = []
    public var metadata: [String: String] = [:]

    public init() {}

    public mutating func add(_ name: String, floats: [Float], shape: [Int]) {
        precondition(floats.count == shape.reduce(1, *), "shape does not match the values")
        entries.append((name, .f32, shape, floats.withUnsafeBytes { Array($0) }))
    }

    public mutating func add(_ name: String, dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) {
        precondition(bytes.count == shape.reduce(1, *) * dtype.byteSize, "shape does not match the bytes")
        entries.append((name, dtype, shape, bytes))
    }

    public func bytes() throws -> [UInt8] {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for e in entries {
            header[e.name] = ["dtype": e.dtype.rawValue, "shape": e.shape, "data_offsets": [offset, offset + e.data.count]]
            offset += e.data.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so the data section starts 8-byte aligned.
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) }
        out += json
        for e in entries { out += e.data }
        return out
    }

    public func write(to path: String) throws {
        do {
            try Data(try bytes()).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch let error as QTaleError {
            throw error
        } catch {
            throw QTaleError.io("cannot write '\(path)': \(error.localizedDescription)")
        }
    }
}
