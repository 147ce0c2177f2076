import QTaleCore

/// Placeholder until the Vulkan engine lands.
public final class VulkanEngine: ComputeEngine {
    public static func probe() -> EngineProbe { .unavailable("the Vulkan engine is not built yet") }
    public init(device: Int) throws { throw QTaleError.engine("the Vulkan engine is not built yet") }
    public var name: String { "vulkan" }
    public var deviceDescription: String { "" }
    public func allocate(byteCount: Int) throws -> DeviceBuffer { throw QTaleError.engine("unavailable") }
    public func release(_ handle: BufferHandle) {}
    public func write(_ bytes: UnsafeRawBufferPointer, to buffer: BufferHandle, byteOffset: Int) throws {}
    public func read(_ buffer: BufferHandle, byteOffset: Int, into bytes: UnsafeMutableRawBufferPointer) throws {}
    public func encode(_ op: Op) throws {}
    public func synchronize() throws {}
}
