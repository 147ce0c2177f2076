import CVulkan
import QTaleCore

/// A Vulkan 1.1 instance with its function table, and the physical devices qtale can use.
///
/// Devices are listed in `--device` order: every physical device with Vulkan 1.1 or newer and a
/// queue family that supports compute, in the order the loader enumerates them.
final class VulkanInstance {
    let global: QTaleVulkanGlobal
    let functions: QTaleVulkanInstance
    let handle: VkInstance
    /// The loader's instance-level API version.
    let loaderVersion: UInt32
    /// Physical devices with a compute queue, in `--device` order.
    let devices: [VulkanPhysicalDevice]

    init() throws {
        var global = QTaleVulkanGlobal()
        if let message = qtale_vulkan_load_global(&global) {
            throw QTaleError.engine(String(cString: message))
        }
        self.global = global
        var loaderVersion = vkMakeVersion(1, 0, 0)
        if let enumerate = global.EnumerateInstanceVersion {
            try vkCheck(enumerate(&loaderVersion), "vkEnumerateInstanceVersion")
        }
        guard loaderVersion >= vkMakeVersion(1, 1, 0) else {
            throw QTaleError.engine("the Vulkan loader supports API \(vkVersionString(loaderVersion)); qtale needs Vulkan 1.1 (install a newer libvulkan1)")
        }
        self.loaderVersion = loaderVersion

        var instance: VkInstance?
        let result: VkResult = "qtale".withCString { appName in
            var app = VkApplicationInfo()
            app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO
            app.pApplicationName = appName
            app.applicationVersion = 1
            app.pEngineName = appName
            app.engineVersion = 1
            app.apiVersion = vkMakeVersion(1, 1, 0)
            return withUnsafePointer(to: &app) { appPointer in
                var info = VkInstanceCreateInfo()
                info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
                info.pApplicationInfo = appPointer
                return global.CreateInstance!(&info, nil, &instance)
            }
        }
        if result == VK_ERROR_INCOMPATIBLE_DRIVER {
            throw QTaleError.engine("vkCreateInstance found no compatible Vulkan driver: install a Vulkan driver (mesa-vulkan-drivers for llvmpipe)")
        }
        try vkCheck(result, "vkCreateInstance")
        guard let instance else { throw QTaleError.engine("vkCreateInstance returned no instance") }
        handle = instance

        var functions = QTaleVulkanInstance()
        if let message = withUnsafePointer(to: global, { qtale_vulkan_load_instance($0, instance, &functions) }) {
            // No table to destroy with: look the destructor up directly.
            if let destroy = unsafeBitCast(global.GetInstanceProcAddr!(instance, "vkDestroyInstance"), to: PFN_vkDestroyInstance?.self) {
                destroy(instance, nil)
            }
            throw QTaleError.engine(String(cString: message))
        }
        self.functions = functions

        do {
            var count: UInt32 = 0
            try vkCheck(functions.EnumeratePhysicalDevices!(instance, &count, nil), "vkEnumeratePhysicalDevices")
            var physical = [VkPhysicalDevice?](repeating: nil, count: Int(count))
            try vkCheck(functions.EnumeratePhysicalDevices!(instance, &count, &physical), "vkEnumeratePhysicalDevices")
            devices = physical.prefix(Int(count)).compactMap { $0 }.compactMap { VulkanPhysicalDevice($0, functions: functions) }
        } catch {
            functions.DestroyInstance!(instance, nil)
            throw error
        }
    }

    deinit { functions.DestroyInstance!(handle, nil) }
}

/// What qtale needs to know about one physical device.
struct VulkanPhysicalDevice {
    let handle: VkPhysicalDevice
    let properties: VkPhysicalDeviceProperties
    let features: VkPhysicalDeviceFeatures
    let memory: VkPhysicalDeviceMemoryProperties
    /// A queue family with compute (preferring one without graphics).
    let computeQueueFamily: UInt32
    /// Driver name and version in words, e.g. "llvmpipe, Mesa 22.3.6 (LLVM 15.0.6)".
    let driver: String
    /// Invocations per subgroup (Vulkan 1.1 core); llvmpipe: its SIMD width in 32-bit lanes.
    let subgroupSize: Int
    /// Whether the device offers VK_EXT_conditional_rendering (predicated dispatches).
    let conditionalRendering: Bool

    /// Nil when the device is older than Vulkan 1.1 or has no compute queue.
    init?(_ handle: VkPhysicalDevice, functions: QTaleVulkanInstance) {
        self.handle = handle
        var properties = VkPhysicalDeviceProperties()
        functions.GetPhysicalDeviceProperties!(handle, &properties)
        guard properties.apiVersion >= vkMakeVersion(1, 1, 0) else { return nil }
        self.properties = properties
        var features = VkPhysicalDeviceFeatures()
        functions.GetPhysicalDeviceFeatures!(handle, &features)
        self.features = features
        var memory = VkPhysicalDeviceMemoryProperties()
        functions.GetPhysicalDeviceMemoryProperties!(handle, &memory)
        self.memory = memory

        var familyCount: UInt32 = 0
        functions.GetPhysicalDeviceQueueFamilyProperties!(handle, &familyCount, nil)
        var families = [VkQueueFamilyProperties](repeating: VkQueueFamilyProperties(), count: Int(familyCount))
        functions.GetPhysicalDeviceQueueFamilyProperties!(handle, &familyCount, &families)
        let compute = VK_QUEUE_COMPUTE_BIT.rawValue, graphics = VK_QUEUE_GRAPHICS_BIT.rawValue
        let candidates = families.prefix(Int(familyCount)).enumerated().filter { $0.element.queueFlags & compute != 0 && $0.element.queueCount > 0 }
        guard let family = candidates.first(where: { $0.element.queueFlags & graphics == 0 }) ?? candidates.first else { return nil }
        computeQueueFamily = UInt32(family.offset)

        var extensionCount: UInt32 = 0
        _ = functions.EnumerateDeviceExtensionProperties!(handle, nil, &extensionCount, nil)
        var extensions = [VkExtensionProperties](repeating: VkExtensionProperties(), count: Int(extensionCount))
        _ = functions.EnumerateDeviceExtensionProperties!(handle, nil, &extensionCount, &extensions)
        conditionalRendering = extensions.prefix(Int(extensionCount)).contains {
            vkString($0.extensionName) == VulkanPhysicalDevice.conditionalRenderingExtension
        }

        var subgroup = VkPhysicalDeviceSubgroupProperties()
        subgroup.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES
        subgroupSize = withUnsafeMutablePointer(to: &subgroup) { pointer in
            var properties2 = VkPhysicalDeviceProperties2()
            properties2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2
            properties2.pNext = UnsafeMutableRawPointer(pointer)
            functions.GetPhysicalDeviceProperties2!(handle, &properties2)
            return Int(pointer.pointee.subgroupSize)
        }

        // The driver's own name and version string exist from Vulkan 1.2 (VkPhysicalDeviceDriverProperties).
        if properties.apiVersion >= vkMakeVersion(1, 2, 0) {
            var driverProperties = VkPhysicalDeviceDriverProperties()
            driverProperties.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES
            driver = withUnsafeMutablePointer(to: &driverProperties) { pointer in
                var properties2 = VkPhysicalDeviceProperties2()
                properties2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2
                properties2.pNext = UnsafeMutableRawPointer(pointer)
                functions.GetPhysicalDeviceProperties2!(handle, &properties2)
                return "\(vkString(pointer.pointee.driverName)) \(vkString(pointer.pointee.driverInfo))"
            }
        } else {
            driver = "version \(vkVersionString(properties.driverVersion))"
        }
    }

    static let conditionalRenderingExtension = "VK_EXT_conditional_rendering"

    var name: String { vkString(properties.deviceName) }

    var typeName: String {
        switch properties.deviceType {
        case VK_PHYSICAL_DEVICE_TYPE_CPU: "cpu"
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: "discrete GPU"
        case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: "integrated GPU"
        case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: "virtual GPU"
        default: "other"
        }
    }

    /// "name (type, Vulkan API x.y.z, driver …)", for `qtale backends` and the engine description.
    var description: String {
        "\(name) (\(typeName), Vulkan API \(vkVersionString(properties.apiVersion)), driver \(driver))"
    }
}
