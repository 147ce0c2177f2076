import CVulkan
import QTaleCore
import QTaleKernels

/// Descriptor sets cached by the buffers they bind, so that a token loop that reuses its buffers
/// (every model pass does) updates no descriptors after its first pass.
///
/// A set binds whole buffers (offsets travel in push constants), so its identity is its binding
/// signature and its list of buffer handles. Texel bindings use one `VkBufferView` per (buffer,
/// format), also cached. When a buffer is released, sets and views that use it leave the caches; sets
/// are reused for other bindings, and views destroyed, once no recorded command can still use them.
final class VulkanDescriptors {
    private let device: VulkanDevice
    private let signatures: [[VulkanBinding]]
    private let setLayouts: [VkDescriptorSetLayout]
    private var pools: [VkDescriptorPool] = []
    /// Handle ids in lanes 0..<count (the rest -1); lane 6: signature index; lane 7: binding count.
    private var cache: [SIMD8<Int32>: VkDescriptorSet] = [:]
    /// Buffer views by (handle id, format).
    private var views: [SIMD2<Int32>: VkBufferView] = [:]
    /// Sets ready for reuse, by signature index.
    private var free: [Int: [VkDescriptorSet]] = [:]
    /// Sets and views evicted while recorded commands may still use them; see ``commandsCompleted()``.
    private var retiredSets: [(signature: Int, set: VkDescriptorSet)] = []
    private var retiredViews: [VkBufferView] = []

    static let setsPerPool = 512

    init(device: VulkanDevice, signatures: [[VulkanBinding]], setLayouts: [VkDescriptorSetLayout]) {
        self.device = device
        self.signatures = signatures
        self.setLayouts = setLayouts
        cache.reserveCapacity(1024)
    }

    deinit {
        destroyViews()
        for pool in pools { device.functions.DestroyDescriptorPool!(device.handle, pool, nil) }
    }

    /// Destroys every buffer view (the engine calls this before destroying its buffers).
    func destroyViews() {
        let f = device.functions
        for view in views.values { f.DestroyBufferView!(device.handle, view, nil) }
        for view in retiredViews { f.DestroyBufferView!(device.handle, view, nil) }
        views = [:]
        retiredViews = []
        cache = [:]
    }

    /// A descriptor set binding `bindings` (whole buffers, in order) as signature `signature` reads them.
    @inline(__always)
    func set(signature: Int, bindings: KernelBindings, buffers: HandleTable<VulkanBuffer>) throws -> VkDescriptorSet {
        var key = SIMD8<Int32>(repeating: -1)
        for i in 0..<bindings.count { key[i] = Int32(truncatingIfNeeded: bindings[i].id) }
        key[6] = Int32(signature)
        key[7] = Int32(bindings.count)
        if let set = cache[key] { return set }
        return try makeSet(key: key, signature: signature, bindings: bindings, buffers: buffers)
    }

    private func makeSet(key: SIMD8<Int32>, signature: Int, bindings: KernelBindings,
                         buffers: HandleTable<VulkanBuffer>) throws -> VkDescriptorSet {
        let kinds = signatures[signature]
        let set = try take(signature: signature)
        var bufferInfos = [VkDescriptorBufferInfo]()
        var texelViews = [VkBufferView?]()
        for (i, kind) in kinds.enumerated() {
            let buffer = buffers[bindings[i]]
            switch kind {
            case .storage:
                bufferInfos.append(VkDescriptorBufferInfo(buffer: buffer.buffer, offset: 0, range: vkWholeSize))
                texelViews.append(nil)
            case let .texel(format):
                bufferInfos.append(VkDescriptorBufferInfo())
                texelViews.append(try view(of: bindings[i], buffer: buffer, format: format))
            }
        }
        bufferInfos.withUnsafeBufferPointer { infoPointer in
            texelViews.withUnsafeBufferPointer { viewPointer in
                var writes = kinds.enumerated().map { i, kind in
                    var w = VkWriteDescriptorSet()
                    w.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET
                    w.dstSet = set
                    w.dstBinding = UInt32(i)
                    w.descriptorCount = 1
                    w.descriptorType = kind.descriptorType
                    if case .storage = kind {
                        w.pBufferInfo = infoPointer.baseAddress! + i
                    } else {
                        w.pTexelBufferView = viewPointer.baseAddress! + i
                    }
                    return w
                }
                device.functions.UpdateDescriptorSets!(device.handle, UInt32(writes.count), &writes, 0, nil)
            }
        }
        cache[key] = set
        return set
    }

    private func view(of handle: BufferHandle, buffer: VulkanBuffer, format: UInt32) throws -> VkBufferView {
        let key = SIMD2<Int32>(Int32(truncatingIfNeeded: handle.id), Int32(bitPattern: format))
        if let view = views[key] { return view }
        let texelBytes = VulkanBinding.texelBytes(format)
        let limit = Int(device.physical.properties.limits.maxTexelBufferElements)
        guard buffer.size / texelBytes <= limit else {
            throw QTaleError.engine("a \(buffer.size)-byte buffer holds more than the device's maxTexelBufferElements (\(limit)) texels")
        }
        var info = VkBufferViewCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO
        info.buffer = buffer.buffer
        info.format = VkFormat(rawValue: format)
        info.offset = 0
        info.range = vkWholeSize
        var view: VkBufferView?
        try vkCheck(device.functions.CreateBufferView!(device.handle, &info, nil, &view), "vkCreateBufferView")
        views[key] = view!
        return view!
    }

    /// Drops cached sets and views that use `handle`. `inFlight`: recorded commands may still use them.
    func evict(_ handle: BufferHandle, inFlight: Bool) {
        let id = Int32(truncatingIfNeeded: handle.id)
        let stale = cache.filter { entry in (0..<Int(entry.key[7])).contains { entry.key[$0] == id } }
        for (key, set) in stale {
            cache[key] = nil
            if inFlight { retiredSets.append((Int(key[6]), set)) } else { free[Int(key[6]), default: []].append(set) }
        }
        for (key, view) in views where key[0] == id {
            views[key] = nil
            if inFlight { retiredViews.append(view) } else { device.functions.DestroyBufferView!(device.handle, view, nil) }
        }
    }

    /// Recorded commands have finished: evicted sets may be rewritten and evicted views destroyed.
    func commandsCompleted() {
        for (signature, set) in retiredSets { free[signature, default: []].append(set) }
        retiredSets.removeAll(keepingCapacity: true)
        for view in retiredViews { device.functions.DestroyBufferView!(device.handle, view, nil) }
        retiredViews.removeAll(keepingCapacity: true)
    }

    private func take(signature: Int) throws -> VkDescriptorSet {
        if let set = free[signature]?.popLast() { return set }
        if let pool = pools.last, let set = try allocate(from: pool, signature: signature) { return set }
        try addPool()
        guard let set = try allocate(from: pools.last!, signature: signature) else {
            throw QTaleError.engine("vkAllocateDescriptorSets failed on a new descriptor pool")
        }
        return set
    }

    /// A set from `pool`, or nil when the pool is exhausted.
    private func allocate(from pool: VkDescriptorPool, signature: Int) throws -> VkDescriptorSet? {
        var layout: VkDescriptorSetLayout? = setLayouts[signature]
        var set: VkDescriptorSet?
        let result = withUnsafePointer(to: &layout) { layoutPointer in
            var info = VkDescriptorSetAllocateInfo()
            info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO
            info.descriptorPool = pool
            info.descriptorSetCount = 1
            info.pSetLayouts = layoutPointer
            return device.functions.AllocateDescriptorSets!(device.handle, &info, &set)
        }
        if result == VK_ERROR_OUT_OF_POOL_MEMORY || result == VK_ERROR_FRAGMENTED_POOL { return nil }
        try vkCheck(result, "vkAllocateDescriptorSets")
        return set
    }

    private func addPool() throws {
        var sizes = [
            VkDescriptorPoolSize(type: VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount: UInt32(Self.setsPerPool * 6)),
            VkDescriptorPoolSize(type: VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, descriptorCount: UInt32(Self.setsPerPool * 6)),
        ]
        var pool: VkDescriptorPool?
        let result = sizes.withUnsafeMutableBufferPointer { sizePointer in
            var info = VkDescriptorPoolCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO
            info.maxSets = UInt32(Self.setsPerPool)
            info.poolSizeCount = UInt32(sizePointer.count)
            info.pPoolSizes = UnsafePointer(sizePointer.baseAddress)
            return device.functions.CreateDescriptorPool!(device.handle, &info, nil, &pool)
        }
        try vkCheck(result, "vkCreateDescriptorPool")
        pools.append(pool!)
    }
}
