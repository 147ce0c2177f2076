import CVulkan
import Foundation
import QTaleCore

/// A logical device with one compute queue, its function table, and the memory types buffers use.
final class VulkanDevice {
    let instance: VulkanInstance
    let physical: VulkanPhysicalDevice
    let functions: QTaleVulkanDevice
    let handle: VkDevice
    let queue: VkQueue
    /// Whether `shaderFloat64` is enabled (then RoPE computes its angles in float64).
    let float64: Bool
    /// Whether VK_EXT_conditional_rendering is enabled, so predicated regions stay on the device.
    let conditionalRendering: Bool

    init(instance: VulkanInstance, physical: VulkanPhysicalDevice) throws {
        self.instance = instance
        self.physical = physical
        // QTALE_VULKAN_NO_FLOAT64=1 runs the float32 RoPE fallback (for testing it on llvmpipe).
        let float64 = physical.features.shaderFloat64 != 0 && ProcessInfo.processInfo.environment["QTALE_VULKAN_NO_FLOAT64"] != "1"
        self.float64 = float64
        // QTALE_VULKAN_NO_CONDITIONAL=1 makes predicated regions wait for the host (to measure the difference).
        let conditional = physical.conditionalRendering && ProcessInfo.processInfo.environment["QTALE_VULKAN_NO_CONDITIONAL"] != "1"
        self.conditionalRendering = conditional

        var priority: Float = 1
        var device: VkDevice?
        let result: VkResult = withUnsafePointer(to: &priority) { priorityPointer in
            var queueInfo = VkDeviceQueueCreateInfo()
            queueInfo.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO
            queueInfo.queueFamilyIndex = physical.computeQueueFamily
            queueInfo.queueCount = 1
            queueInfo.pQueuePriorities = priorityPointer
            var features = VkPhysicalDeviceFeatures()
            features.shaderFloat64 = float64 ? 1 : 0
            var conditionalFeatures = VkPhysicalDeviceConditionalRenderingFeaturesEXT()
            conditionalFeatures.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_CONDITIONAL_RENDERING_FEATURES_EXT
            conditionalFeatures.conditionalRendering = 1
            return withUnsafePointer(to: &queueInfo) { queuePointer in
                withUnsafePointer(to: &features) { featuresPointer in
                    withUnsafePointer(to: &conditionalFeatures) { conditionalPointer in
                        VulkanPhysicalDevice.conditionalRenderingExtension.withCString { extensionName in
                            var extensionNames: [UnsafePointer<CChar>?] = [extensionName]
                            var info = VkDeviceCreateInfo()
                            info.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO
                            info.queueCreateInfoCount = 1
                            info.pQueueCreateInfos = queuePointer
                            info.pEnabledFeatures = featuresPointer
                            if conditional {
                                info.pNext = UnsafeRawPointer(conditionalPointer)
                                info.enabledExtensionCount = 1
                            }
                            return extensionNames.withUnsafeMutableBufferPointer { names in
                                info.ppEnabledExtensionNames = UnsafePointer(names.baseAddress)
                                return instance.functions.CreateDevice!(physical.handle, &info, nil, &device)
                            }
                        }
                    }
                }
            }
        }
        try vkCheck(result, "vkCreateDevice")
        guard let device else { throw QTaleError.engine("vkCreateDevice returned no device") }
        handle = device

        var functions = QTaleVulkanDevice()
        if let message = withUnsafePointer(to: instance.functions, { qtale_vulkan_load_device($0, device, &functions) }) {
            if let destroy = unsafeBitCast(instance.functions.GetDeviceProcAddr!(device, "vkDestroyDevice"), to: PFN_vkDestroyDevice?.self) {
                destroy(device, nil)
            }
            throw QTaleError.engine(String(cString: message))
        }
        self.functions = functions
        var queue: VkQueue?
        functions.GetDeviceQueue!(device, physical.computeQueueFamily, 0, &queue)
        guard let queue else {
            functions.DestroyDevice!(device, nil)
            throw QTaleError.engine("vkGetDeviceQueue returned no queue")
        }
        self.queue = queue

        let memory = physical.memory
        memoryTypes = withUnsafeBytes(of: memory.memoryTypes) {
            Array($0.bindMemory(to: VkMemoryType.self).prefix(Int(memory.memoryTypeCount)))
        }
    }

    /// Memory types of this device, indexed as `VkMemoryAllocateInfo.memoryTypeIndex`.
    let memoryTypes: [VkMemoryType]

    /// The first memory type allowed by `allowed` (a `memoryTypeBits` mask) that has every flag of `required`.
    func memoryType(allowed: UInt32, required: [VkMemoryPropertyFlagBits]) -> UInt32? {
        let mask = required.reduce(0) { $0 | $1.rawValue }
        return memoryTypes.indices.first { allowed & (1 << $0) != 0 && memoryTypes[$0].propertyFlags & mask == mask }.map(UInt32.init)
    }

    deinit {
        _ = functions.DeviceWaitIdle!(handle)
        functions.DestroyDevice!(handle, nil)
    }

    /// The largest storage-buffer binding (every engine buffer is bound whole).
    var maxStorageBufferRange: Int { Int(physical.properties.limits.maxStorageBufferRange) }
}
