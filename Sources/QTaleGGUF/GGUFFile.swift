import QTaleCore

/// A metadata value from a GGUF file.
public enum GGUFValue: Sendable, CustomStringConvertible {
    case uint(UInt64)
    case int(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)
    case array([GGUFValue])

    public var int: Int? {
        switch self {
        case .uint(let v): v <= UInt64(Int.max) ? Int(v) : nil
        case .int(let v): Int(v)
        default: nil
        }
    }
    public var double: Double? {
        switch self {
        case .float(let v): v
        case .uint, .int: int.map(Double.init)
        default: nil
        }
    }
    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var bool: Bool? { if case .bool(let b) = self { b } else { nil } }
    public var array: [GGUFValue]? { if case .array(let a) = self { a } else { nil } }

    public var description: String {
        switch self {
        case .uint(let v): "\(v)"
        case .int(let v): "\(v)"
        case .float(let v): "\(v)"
        case .bool(let v): "\(v)"
        case .string(let v): v.count > 60 ? "\"\(v.prefix(57))...\"" : "\"\(v)\""
        case .array(let a): "[\(a.count) items]"
        }
    }
}

/// Tensor element types this project reads. GGUF type ids are ggml's.
public enum GGUFTensorType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8, bf16 = 30

    /// Elements per block and bytes per block.
    public var block: (elements: Int, bytes: Int) {
        switch self {
        case .f32: (1, 4)
        case .f16, .bf16: (1, 2)
        case .q4_0: (32, 18)
        case .q4_1: (32, 20)
        case .q8_0: (32, 34)
        }
    }

    public var description: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .bf16: "BF16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q8_0: "Q8_0"
        }
    }

    /// ggml's names for the types we do not read, so errors can name them.
    static let otherNames: [UInt32: String] = [
        6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
        16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
        23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0",
        39: "MXFP4",
    ]
}

/// One tensor's header entry and where its data lies in the file.
public struct GGUFTensorInfo: Sendable {
    public let name: String
    /// GGUF order: `dimensions[0]` is the fastest-varying (columns of a matrix).
    public let dimensions: [Int]
    public let type: GGUFTensorType
    /// Offset from the start of the file.
    public let fileOffset: Int
    public let byteCount: Int

    public var elementCount: Int { dimensions.reduce(1, *) }
    /// For a matrix: rows (`dimensions[1]`) and columns (`dimensions[0]`).
    public var rows: Int { dimensions.count > 1 ? dimensions[1...].reduce(1, *) : 1 }
    public var columns: Int { dimensions.first ?? 1 }
}

/// A GGUF (v2/v3) file over a memory mapping: metadata, tensor infos and tensor bytes.
///
/// Every read is bounds-checked; malformed files raise ``QTaleError/invalidModel(_:)`` naming the problem.
public final class GGUFFile: @unchecked Sendable {
    public let file: MappedFile
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order (for `qtale info`).
    public let metadataKeys: [String]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    private let tensorIndex: [String: Int]

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        var reader = ByteReader(bytes: file.bytes, path: file.path)
        let magic = try reader.bytes(4)
        guard magic.elementsEqual("GGUF".utf8) else {
            throw QTaleError.invalidModel("'\(file.path)' is not a GGUF file (bad magic \(Array(magic).map { String(format2: $0) }.joined()))")
        }
        version = try reader.scalar(UInt32.self)
        guard version == 2 || version == 3 else {
            throw QTaleError.invalidModel("'\(file.path)': GGUF version \(version) is not supported (2 and 3 are)")
        }
        let tensorCount = try reader.count(limit: file.bytes.count / 24, what: "tensor count")
        let keyCount = try reader.count(limit: file.bytes.count / 12, what: "metadata count")
        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        for _ in 0..<keyCount {
            let key = try reader.string()
            metadata[key] = try reader.value(type: reader.scalar(UInt32.self), depth: 0)
            keys.append(key)
        }
        self.metadata = metadata
        metadataKeys = keys
        alignment = metadata["general.alignment"]?.int ?? 32
        guard alignment > 0, alignment.nonzeroBitCount == 1, alignment <= 1 << 20 else {
            throw QTaleError.invalidModel("'\(file.path)': general.alignment \(alignment) is not a power of two")
        }

        var infos: [(String, [Int], UInt32, UInt64)] = []
        for _ in 0..<tensorCount {
            let name = try reader.string()
            let dimensionCount = try reader.scalar(UInt32.self)
            guard dimensionCount >= 1 && dimensionCount <= 4 else {
                throw QTaleError.invalidModel("tensor '\(name)' has \(dimensionCount) dimensions (1 to 4 allowed)")
            }
            var dimensions: [Int] = []
            for _ in 0..<dimensionCount {
                let d = try reader.scalar(UInt64.self)
                guard d >= 1 && d <= UInt64(Int32.max) else {
                    throw QTaleError.invalidModel("tensor '\(name)' has dimension \(d), out of range")
                }
                dimensions.append(Int(d))
            }
            let type = try reader.scalar(UInt32.self)
            let offset = try reader.scalar(UInt64.self)
            infos.append((name, dimensions, type, offset))
        }
        let dataStart = (reader.offset + alignment - 1) / alignment * alignment

        var tensors: [GGUFTensorInfo] = []
        var index: [String: Int] = [:]
        for (name, dimensions, rawType, offset) in infos {
            guard let type = GGUFTensorType(rawValue: rawType) else {
                let typeName = GGUFTensorType.otherNames[rawType].map { "tensor type \($0) (type \(rawType))" } ?? "an unknown type \(rawType)"
                throw QTaleError.invalidModel("tensor '\(name)' has \(typeName), which qtale does not read (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)")
            }
            var elements = 1
            for d in dimensions {
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow, product <= 1 << 40 else {
                    throw QTaleError.invalidModel("tensor '\(name)': dimensions \(dimensions) overflow")
                }
                elements = product
            }
            let block = type.block
            guard dimensions[0] % block.elements == 0 else {
                throw QTaleError.invalidModel("tensor '\(name)': \(type) needs a row length (dimension 0) that is a multiple of \(block.elements), got \(dimensions[0])")
            }
            let byteCount = elements / block.elements * block.bytes
            let (start, overflow) = dataStart.addingReportingOverflow(Int(truncatingIfNeeded: offset))
            guard offset < UInt64(Int.max / 2), !overflow, start + byteCount <= file.bytes.count else {
                throw QTaleError.invalidModel("tensor '\(name)': data at offset \(offset) (+\(byteCount) bytes) lies beyond the end of the file (\(file.bytes.count) bytes); the file is truncated or corrupt")
            }
            guard index[name] == nil else { throw QTaleError.invalidModel("tensor '\(name)' appears twice") }
            index[name] = tensors.count
            tensors.append(GGUFTensorInfo(name: name, dimensions: dimensions, type: type, fileOffset: start, byteCount: byteCount))
        }
        self.tensors = tensors
        tensorIndex = index
    }

    public func tensor(named name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// The tensor's bytes inside the mapping.
    public func data(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[tensor.fileOffset ..< tensor.fileOffset + tensor.byteCount])
    }
}

/// Bounds-checked little-endian reads over the mapped header.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var offset = 0

    init(bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    func truncated(_ what: String) -> QTaleError {
        .invalidModel("'\(path)' is truncated: the header ends inside \(what) at byte \(offset) of \(bytes.count)")
    }

    mutating func bytes(_ count: Int) throws -> UnsafeRawBufferPointer.SubSequence {
        guard count >= 0, count <= bytes.count - offset else { throw truncated("a field of \(count) bytes") }
        defer { offset += count }
        return bytes[offset ..< offset + count]
    }

    mutating func scalar<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        let start = offset
        _ = try bytes(MemoryLayout<T>.size)
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: start, as: T.self))
    }

    /// A 64-bit count, refused when larger than `limit` (the file could not hold that many items).
    mutating func count(limit: Int, what: String) throws -> Int {
        let n = try scalar(UInt64.self)
        guard n <= UInt64(limit) else { throw QTaleError.invalidModel("'\(path)': \(what) \(n) is impossible for a file of \(bytes.count) bytes; the file is truncated or corrupt") }
        return Int(n)
    }

    mutating func string() throws -> String {
        let length = try count(limit: bytes.count - offset, what: "string length")
        return String(decoding: try bytes(length), as: UTF8.self)
    }

    mutating func value(type: UInt32, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint(UInt64(try scalar(UInt8.self)))
        case 1: return .int(Int64(try scalar(Int8.self)))
        case 2: return .uint(UInt64(try scalar(UInt16.self)))
        case 3: return .int(Int64(try scalar(Int16.self)))
        case 4: return .uint(UInt64(try scalar(UInt32.self)))
        case 5: return .int(Int64(try scalar(Int32.self)))
        case 6: return .float(Double(Float(bitPattern: try scalar(UInt32.self))))
        case 7: return .bool(try scalar(UInt8.self) != 0)
        case 8: return .string(try string())
        case 9:
            guard depth < 2 else { throw QTaleError.invalidModel("'\(path)': nested metadata arrays are too deep") }
            let elementType = try scalar(UInt32.self)
            let n = try count(limit: bytes.count - offset, what: "array length")
            var items: [GGUFValue] = []
            items.reserveCapacity(n)
            for _ in 0..<n { items.append(try value(type: elementType, depth: depth + 1)) }
            return .array(items)
        case 10: return .uint(try scalar(UInt64.self))
        case 11: return .int(Int64(bitPattern: try scalar(UInt64.self)))
        case 12: return .float(Double(bitPattern: try scalar(UInt64.self)))
        default: throw QTaleError.invalidModel("'\(path)': unknown metadata value type \(type) at byte \(offset)")
        }
    }
}

extension String {
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }
}
