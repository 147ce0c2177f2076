import CVulkan
import QTaleCore
import QTaleKernels

/// One command buffer that collects launches until the engine waits, then is submitted once, fenced
/// and reused. Everything a token records runs as one submission.
final class VulkanCommands {
    private let device: VulkanDevice
    private let pool: VkCommandPool
    private let buffer: VkCommandBuffer
    private let fence: VkFence
    /// Whether `buffer` is between begin and end.
    private(set) var isRecording = false
    private var boundPipeline: VkPipeline?
    /// Timestamps per launch when `QTALE_VULKAN_PROFILE` is set.
    let profiler: VulkanProfiler?

    // Hot-path entry points, unwrapped once.
    private let cmdBindPipeline: PFN_vkCmdBindPipeline
    private let cmdBindDescriptorSets: PFN_vkCmdBindDescriptorSets
    private let cmdPushConstants: PFN_vkCmdPushConstants
    private let cmdDispatch: PFN_vkCmdDispatch
    private let cmdPipelineBarrier: PFN_vkCmdPipelineBarrier

    init(device: VulkanDevice) throws {
        self.device = device
        let f = device.functions
        cmdBindPipeline = f.CmdBindPipeline!
        cmdBindDescriptorSets = f.CmdBindDescriptorSets!
        cmdPushConstants = f.CmdPushConstants!
        cmdDispatch = f.CmdDispatch!
        cmdPipelineBarrier = f.CmdPipelineBarrier!

        var poolInfo = VkCommandPoolCreateInfo()
        poolInfo.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO
        poolInfo.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT.rawValue
        poolInfo.queueFamilyIndex = device.physical.computeQueueFamily
        var pool: VkCommandPool?
        try vkCheck(f.CreateCommandPool!(device.handle, &poolInfo, nil, &pool), "vkCreateCommandPool")
        self.pool = pool!

        var allocation = VkCommandBufferAllocateInfo()
        allocation.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO
        allocation.commandPool = pool
        allocation.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY
        allocation.commandBufferCount = 1
        var buffer: VkCommandBuffer?
        var fence: VkFence?
        do {
            try vkCheck(f.AllocateCommandBuffers!(device.handle, &allocation, &buffer), "vkAllocateCommandBuffers")
            var fenceInfo = VkFenceCreateInfo()
            fenceInfo.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO
            try vkCheck(f.CreateFence!(device.handle, &fenceInfo, nil, &fence), "vkCreateFence")
        } catch {
            f.DestroyCommandPool!(device.handle, pool, nil)
            throw error
        }
        self.buffer = buffer!
        self.fence = fence!
        profiler = VulkanProfiler.requested ? VulkanProfiler(device: device) : nil
    }

    deinit {
        let f = device.functions
        _ = f.QueueWaitIdle!(device.queue)
        f.DestroyFence!(device.handle, fence, nil)
        f.DestroyCommandPool!(device.handle, pool, nil)
    }

    private func begin() throws {
        var info = VkCommandBufferBeginInfo()
        info.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO
        info.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT.rawValue
        try vkCheck(device.functions.BeginCommandBuffer!(buffer, &info), "vkBeginCommandBuffer")
        isRecording = true
        boundPipeline = nil
        profiler?.begin(buffer)
    }

    /// Records one kernel launch.
    func dispatch(pipeline: VkPipeline, layout: VkPipelineLayout, set: VkDescriptorSet,
                  parameters: KernelParameters, groups: (x: Int, y: Int, z: Int), label: String) throws {
        if !isRecording { try begin() }
        if boundPipeline != pipeline {
            cmdBindPipeline(buffer, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline)
            boundPipeline = pipeline
        }
        var set: VkDescriptorSet? = set
        cmdBindDescriptorSets(buffer, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, &set, 0, nil)
        parameters.withUnsafeBytes { bytes in
            cmdPushConstants(buffer, layout, VK_SHADER_STAGE_COMPUTE_BIT.rawValue, 0, UInt32(bytes.count), bytes.baseAddress)
        }
        cmdDispatch(buffer, UInt32(groups.x), UInt32(groups.y), UInt32(groups.z))
        if let profiler { profiler.mark(buffer, "\(label) \(groups.x)×\(groups.y)×\(groups.z)") }
    }

    /// Makes every earlier shader write visible to later shaders (and orders later writes after earlier reads).
    func computeBarrier() {
        guard isRecording else { return }
        memoryBarrier(from: VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT.rawValue,
                      to: VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT.rawValue | VK_ACCESS_SHADER_WRITE_BIT.rawValue)
    }

    private func memoryBarrier(from source: VkPipelineStageFlagBits, _ sourceAccess: VkAccessFlags,
                               to destination: VkPipelineStageFlagBits, _ destinationAccess: VkAccessFlags) {
        var barrier = VkMemoryBarrier(sType: VK_STRUCTURE_TYPE_MEMORY_BARRIER, pNext: nil,
                                      srcAccessMask: sourceAccess, dstAccessMask: destinationAccess)
        cmdPipelineBarrier(buffer, source.rawValue, destination.rawValue, 0, 1, &barrier, 0, nil, 0, nil)
    }

    /// Starts a region whose dispatches run only if the int32 at `offset` in `predicate` is nonzero
    /// (VK_EXT_conditional_rendering), after a barrier that makes earlier shader writes visible to that read.
    func beginConditional(on predicate: VkBuffer, offset: Int) throws {
        if !isRecording { try begin() }
        memoryBarrier(from: VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT.rawValue,
                      to: VK_PIPELINE_STAGE_CONDITIONAL_RENDERING_BIT_EXT, VK_ACCESS_CONDITIONAL_RENDERING_READ_BIT_EXT.rawValue)
        var info = VkConditionalRenderingBeginInfoEXT()
        info.sType = VK_STRUCTURE_TYPE_CONDITIONAL_RENDERING_BEGIN_INFO_EXT
        info.buffer = predicate
        info.offset = VkDeviceSize(offset)
        device.functions.CmdBeginConditionalRenderingEXT!(buffer, &info)
    }

    func endConditional() {
        device.functions.CmdEndConditionalRenderingEXT!(buffer)
    }

    /// Records a copy between buffers, ordered after earlier shader work and before later shader work.
    func copy(from source: VkBuffer, sourceOffset: Int, to destination: VkBuffer, destinationOffset: Int, byteCount: Int) throws {
        if !isRecording { try begin() }
        let transfer = VK_ACCESS_TRANSFER_READ_BIT.rawValue | VK_ACCESS_TRANSFER_WRITE_BIT.rawValue
        let shader = VK_ACCESS_SHADER_READ_BIT.rawValue | VK_ACCESS_SHADER_WRITE_BIT.rawValue
        memoryBarrier(from: VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT.rawValue, to: VK_PIPELINE_STAGE_TRANSFER_BIT, transfer)
        var region = VkBufferCopy(srcOffset: VkDeviceSize(sourceOffset), dstOffset: VkDeviceSize(destinationOffset), size: VkDeviceSize(byteCount))
        device.functions.CmdCopyBuffer!(buffer, source, destination, 1, &region)
        memoryBarrier(from: VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT.rawValue, to: VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, shader)
    }

    /// Records a zero fill of a whole buffer.
    func fillZero(_ target: VkBuffer) throws {
        if !isRecording { try begin() }
        device.functions.CmdFillBuffer!(buffer, target, 0, vkWholeSize, 0)
        memoryBarrier(from: VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT.rawValue, to: VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                      VK_ACCESS_SHADER_READ_BIT.rawValue | VK_ACCESS_SHADER_WRITE_BIT.rawValue)
    }

    /// Ends, submits and waits for everything recorded; then the buffer is ready to record again.
    /// Returns whether there was anything to run.
    @discardableResult
    func submitAndWait() throws -> Bool {
        guard isRecording else { return false }
        isRecording = false
        let f = device.functions
        // Device writes become visible to host reads of mapped memory after the fence.
        memoryBarrier(from: VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_ACCESS_SHADER_WRITE_BIT.rawValue | VK_ACCESS_TRANSFER_WRITE_BIT.rawValue,
                      to: VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT.rawValue)
        try vkCheck(f.EndCommandBuffer!(buffer), "vkEndCommandBuffer")
        var commandBuffer: VkCommandBuffer? = buffer
        let submitted = withUnsafePointer(to: &commandBuffer) { pointer in
            var submit = VkSubmitInfo()
            submit.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO
            submit.commandBufferCount = 1
            submit.pCommandBuffers = pointer
            return f.QueueSubmit!(device.queue, 1, &submit, self.fence)
        }
        try vkCheck(submitted, "vkQueueSubmit")
        var fences: VkFence? = self.fence
        try vkCheck(f.WaitForFences!(device.handle, 1, &fences, VK_TRUE, UInt64.max), "vkWaitForFences")
        try vkCheck(f.ResetFences!(device.handle, 1, &fences), "vkResetFences")
        profiler?.collect()
        try vkCheck(f.ResetCommandBuffer!(buffer, 0), "vkResetCommandBuffer")
        return true
    }
}
