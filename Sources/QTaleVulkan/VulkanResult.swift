import CVulkan
import QTaleCore

/// Checks a `VkResult`: anything but `VK_SUCCESS` becomes a ``QTaleError/engine(_:)`` naming the call
/// and the result.
@inline(__always)
func vkCheck(_ result: VkResult, _ call: @autoclosure () -> String) throws {
    if result != VK_SUCCESS { throw QTaleError.engine("\(call()) failed: \(vkResultName(result))") }
}

/// The name of a `VkResult`, as the specification spells it.
func vkResultName(_ result: VkResult) -> String {
    switch result {
    case VK_SUCCESS: "VK_SUCCESS"
    case VK_NOT_READY: "VK_NOT_READY"
    case VK_TIMEOUT: "VK_TIMEOUT"
    case VK_INCOMPLETE: "VK_INCOMPLETE"
    case VK_ERROR_OUT_OF_HOST_MEMORY: "VK_ERROR_OUT_OF_HOST_MEMORY"
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: "VK_ERROR_OUT_OF_DEVICE_MEMORY"
    case VK_ERROR_INITIALIZATION_FAILED: "VK_ERROR_INITIALIZATION_FAILED"
    case VK_ERROR_DEVICE_LOST: "VK_ERROR_DEVICE_LOST"
    case VK_ERROR_MEMORY_MAP_FAILED: "VK_ERROR_MEMORY_MAP_FAILED"
    case VK_ERROR_LAYER_NOT_PRESENT: "VK_ERROR_LAYER_NOT_PRESENT"
    case VK_ERROR_EXTENSION_NOT_PRESENT: "VK_ERROR_EXTENSION_NOT_PRESENT"
    case VK_ERROR_FEATURE_NOT_PRESENT: "VK_ERROR_FEATURE_NOT_PRESENT"
    case VK_ERROR_INCOMPATIBLE_DRIVER: "VK_ERROR_INCOMPATIBLE_DRIVER"
    case VK_ERROR_TOO_MANY_OBJECTS: "VK_ERROR_TOO_MANY_OBJECTS"
    case VK_ERROR_FORMAT_NOT_SUPPORTED: "VK_ERROR_FORMAT_NOT_SUPPORTED"
    case VK_ERROR_FRAGMENTED_POOL: "VK_ERROR_FRAGMENTED_POOL"
    case VK_ERROR_UNKNOWN: "VK_ERROR_UNKNOWN"
    case VK_ERROR_OUT_OF_POOL_MEMORY: "VK_ERROR_OUT_OF_POOL_MEMORY"
    case VK_ERROR_INVALID_EXTERNAL_HANDLE: "VK_ERROR_INVALID_EXTERNAL_HANDLE"
    case VK_ERROR_FRAGMENTATION: "VK_ERROR_FRAGMENTATION"
    case VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS: "VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS"
    case VK_ERROR_INVALID_SHADER_NV: "VK_ERROR_INVALID_SHADER_NV"
    default: "VkResult(\(result.rawValue))"
    }
}

/// `VK_MAKE_API_VERSION(0, major, minor, patch)` (a function-like macro Swift does not import).
func vkMakeVersion(_ major: UInt32, _ minor: UInt32, _ patch: UInt32) -> UInt32 {
    (major << 22) | (minor << 12) | patch
}

/// A Vulkan version number as "major.minor.patch".
func vkVersionString(_ version: UInt32) -> String {
    "\((version >> 22) & 0x7F).\((version >> 12) & 0x3FF).\(version & 0xFFF)"
}

/// `VK_WHOLE_SIZE`.
let vkWholeSize = VkDeviceSize.max

/// A fixed-size C character array (e.g. `deviceName`) as a Swift string.
func vkString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        let bytes = raw.prefix { $0 != 0 }
        return String(decoding: bytes, as: UTF8.self)
    }
}
