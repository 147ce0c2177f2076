import CVulkan
import QTaleCore

/// One engine buffer: a `VkBuffer` bound whole to its own `VkDeviceMemory`.
struct VulkanBuffer {
    let buffer: VkBuffer
    let memory: VkDeviceMemory
    /// Bytes the buffer holds (the requested size rounded up to 16, so that 32-bit loads of a
    /// buffer of binary16 values never straddle its end).
    let size: Int
    /// The persistent host mapping, when the memory is host-visible; nil for device-local memory
    /// reached through the staging buffer.
    let mapped: UnsafeMutableRawPointer?
}

extension VulkanDevice {
    /// Creates a storage buffer of at least `byteCount` bytes. Prefers memory the host maps directly
    /// (`hostMapped`); falls back to device-local memory when there is none or it is exhausted. With
    /// `hostMapped` false the buffer is never mapped (then `write` and `read` go through the staging buffer).
    func makeBuffer(byteCount: Int, hostMapped: Bool = true, staging: Bool = false) throws -> VulkanBuffer {
        let size = max(16, (byteCount + 15) & ~15)
        var buffer: VkBuffer?
        var info = VkBufferCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO
        info.size = VkDeviceSize(size)
        info.usage = staging
            ? VK_BUFFER_USAGE_TRANSFER_SRC_BIT.rawValue | VK_BUFFER_USAGE_TRANSFER_DST_BIT.rawValue
            : VK_BUFFER_USAGE_STORAGE_BUFFER_BIT.rawValue | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT.rawValue | VK_BUFFER_USAGE_TRANSFER_SRC_BIT.rawValue | VK_BUFFER_USAGE_TRANSFER_DST_BIT.rawValue
                | (conditionalRendering ? VK_BUFFER_USAGE_CONDITIONAL_RENDERING_BIT_EXT.rawValue : 0)
        info.sharingMode = VK_SHARING_MODE_EXCLUSIVE
        try vkCheck(functions.CreateBuffer!(handle, &info, nil, &buffer), "vkCreateBuffer(\(size) bytes)")
        guard let buffer else { throw QTaleError.engine("vkCreateBuffer returned no buffer") }
        var requirements = VkMemoryRequirements()
        functions.GetBufferMemoryRequirements!(handle, buffer, &requirements)

        // Candidate memory types, best first.
        let allowed = requirements.memoryTypeBits
        var candidates: [(type: UInt32, mapped: Bool)] = []
        if staging {
            if let t = memoryType(allowed: allowed, required: [VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT, VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, VK_MEMORY_PROPERTY_HOST_CACHED_BIT]) { candidates.append((t, true)) }
            if let t = memoryType(allowed: allowed, required: [VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT, VK_MEMORY_PROPERTY_HOST_COHERENT_BIT]) { candidates.append((t, true)) }
        } else {
            if hostMapped, let t = memoryType(allowed: allowed, required: [VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT, VK_MEMORY_PROPERTY_HOST_COHERENT_BIT]) {
                candidates.append((t, true))
            }
            if let t = memoryType(allowed: allowed, required: [VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT]) ?? memoryType(allowed: allowed, required: []) {
                candidates.append((t, hostMapped && memoryTypes[Int(t)].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT.rawValue != 0
                                      && memoryTypes[Int(t)].propertyFlags & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT.rawValue != 0))
            }
        }
        var lastResult = VK_ERROR_OUT_OF_DEVICE_MEMORY
        for candidate in candidates {
            var allocation = VkMemoryAllocateInfo()
            allocation.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO
            allocation.allocationSize = requirements.size
            allocation.memoryTypeIndex = candidate.type
            var memory: VkDeviceMemory?
            lastResult = functions.AllocateMemory!(handle, &allocation, nil, &memory)
            guard lastResult == VK_SUCCESS, let memory else { continue }
            do {
                try vkCheck(functions.BindBufferMemory!(handle, buffer, memory, 0), "vkBindBufferMemory")
                var mapped: UnsafeMutableRawPointer?
                if candidate.mapped {
                    try vkCheck(functions.MapMemory!(handle, memory, 0, vkWholeSize, 0, &mapped), "vkMapMemory")
                }
                return VulkanBuffer(buffer: buffer, memory: memory, size: size, mapped: mapped)
            } catch {
                functions.FreeMemory!(handle, memory, nil)
                functions.DestroyBuffer!(handle, buffer, nil)
                throw error
            }
        }
        functions.DestroyBuffer!(handle, buffer, nil)
        throw QTaleError.engine("vkAllocateMemory(\(requirements.size) bytes) failed: \(vkResultName(lastResult))")
    }

    func destroy(_ buffer: VulkanBuffer) {
        if buffer.mapped != nil { functions.UnmapMemory!(handle, buffer.memory) }
        functions.DestroyBuffer!(handle, buffer.buffer, nil)
        functions.FreeMemory!(handle, buffer.memory, nil)
    }
}
