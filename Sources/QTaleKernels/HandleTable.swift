import QTaleCore

/// Maps ``BufferHandle``s to an engine's native buffer objects (a `cl_mem`, a `VkBuffer` with its memory).
/// Freed slots are reused, so handles stay small integers.
public struct HandleTable<Resource> {
    private var slots: [Resource?] = []
    private var free: [Int] = []

    public init() {}

    public mutating func insert(_ resource: Resource) -> BufferHandle {
        if let id = free.popLast() {
            slots[id] = resource
            return BufferHandle(id: id)
        }
        slots.append(resource)
        return BufferHandle(id: slots.count - 1)
    }

    /// Removes and returns the resource, for the engine to destroy.
    public mutating func remove(_ handle: BufferHandle) -> Resource? {
        guard handle.id >= 0 && handle.id < slots.count, let resource = slots[handle.id] else { return nil }
        slots[handle.id] = nil
        free.append(handle.id)
        return resource
    }

    public subscript(handle: BufferHandle) -> Resource {
        guard handle.id >= 0 && handle.id < slots.count, let resource = slots[handle.id] else {
            preconditionFailure("buffer handle \(handle.id) is not live in this engine")
        }
        return resource
    }

    /// Every live resource (for teardown).
    public var all: [Resource] { slots.compactMap { $0 } }
}
