import QTaleCore

/// The GPU kernels of `Kernels/` (one per op family, named as in the files).
public enum KernelName: String, CaseIterable, Sendable {
    case embed
    case rmsNorm = "rms_norm"
    case matmulVector = "matmul_vec"
    case matmulMatrix = "matmul_mat"
    case rope
    case attention
    case swiGLU = "swiglu"
    case add
    case copy
    case linear
    case silu
    /// Row gather and scatter (`Op.gatherRows`, `Op.scatterRows`): one kernel, a direction parameter.
    case moveRows = "move_rows"
    case routerDecision = "router_decision"

    private static let order = allCases

    /// Position in `allCases`: engines keep their compiled kernels in arrays indexed by it.
    @inline(__always) public var index: Int { Self.order.firstIndex(of: self)! }

    /// Storage buffers the kernel binds, in contract order.
    public var bindingCount: Int {
        switch self {
        case .embed, .matmulVector, .matmulMatrix: 5
        case .rmsNorm, .swiGLU, .add, .moveRows: 3
        case .rope, .copy, .silu, .routerDecision: 2
        case .attention: 6
        case .linear: 4
        }
    }
}

/// Up to six buffers, stored inline so a launch costs no allocation.
public struct KernelBindings: Sendable {
    public private(set) var count = 0
    private var storage: (BufferHandle, BufferHandle, BufferHandle, BufferHandle, BufferHandle, BufferHandle)

    public init(_ handles: BufferHandle...) {
        precondition(handles.count <= 6, "at most six bindings")
        let none = BufferHandle(id: -1)
        storage = (none, none, none, none, none, none)
        for h in handles { append(h) }
    }

    mutating func append(_ handle: BufferHandle) {
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: handle, toByteOffset: count * MemoryLayout<BufferHandle>.stride, as: BufferHandle.self) }
        count += 1
    }

    public subscript(index: Int) -> BufferHandle {
        precondition(index < count)
        return withUnsafeBytes(of: storage) { $0.load(fromByteOffset: index * MemoryLayout<BufferHandle>.stride, as: BufferHandle.self) }
    }
}

/// Sixteen 32-bit parameter words (Vulkan push constants, an OpenCL struct argument).
public struct KernelParameters: Sendable {
    public static let wordCount = 16
    public private(set) var words: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32,
                                    UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32)
        = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    private var count = 0

    public init() {}

    public mutating func append(_ value: Int) {
        precondition(count < Self.wordCount && value >= Int(Int32.min) && value <= Int(Int32.max), "parameter out of range")
        set(UInt32(bitPattern: Int32(value)))
    }

    public mutating func append(_ value: Float) { set(value.bitPattern) }

    private mutating func set(_ word: UInt32) {
        withUnsafeMutableBytes(of: &words) { $0.storeBytes(of: word, toByteOffset: 4 * count, as: UInt32.self) }
        count += 1
    }

    /// The words as bytes, for `clSetKernelArg` and `vkCmdPushConstants`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: words, body)
    }
}

/// One kernel dispatch: what runs, on which buffers, with which parameters, over how many work-groups.
public struct KernelLaunch: Sendable {
    public var kernel: KernelName
    public var bindings: KernelBindings
    public var parameters: KernelParameters
    /// Work-groups in x, y and z; each has ``KernelPlanner/workgroupSize`` invocations along x.
    public var groups: (x: Int, y: Int, z: Int)
}
