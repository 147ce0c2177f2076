import CVulkan
import Foundation
import QTaleCore
import QTaleKernels

/// The Vulkan engine: the GLSL compute shaders of `Kernels/vulkan` run the launch plans of
/// ``KernelPlanner`` on one compute queue (Mesa's llvmpipe runs them on the CPU).
///
/// **Recording.** ``encode(_:)`` records each op's one launch into a command buffer, with a
/// compute→compute barrier only before a launch that depends on one recorded since the previous
/// barrier (``DependencyTracker``). Nothing runs until ``synchronize()``, ``read(_:byteOffset:into:)``
/// or ``write(_:to:byteOffset:)`` submits the buffer once and waits on a fence, so a whole token is
/// one submission.
///
/// **Memory.** Each engine buffer is one `VkBuffer` with its own memory, bound whole (offsets are
/// push-constant parameters, in elements): as a storage buffer, or through a uniform texel buffer
/// view where a kernel reads it that way (``VulkanBinding``). Buffers live in memory the host maps
/// directly when the device has device-local host-visible memory (llvmpipe, integrated and ReBAR
/// GPUs); otherwise in device-local memory that `write` and `read` reach through a staging buffer.
///
/// **Pipelines.** Built with the engine, one per kernel and compiled variant (``VulkanPipelines``),
/// then run once on an empty problem, so the first token compiles nothing; variants only odd shapes
/// need are built on first use.
///
/// `QTALE_VULKAN_PROFILE=1` prints the time of each kernel (timestamp queries) when the engine goes.
public final class VulkanEngine: ComputeEngine {
    let device: VulkanDevice
    let pipelines: VulkanPipelines
    let descriptors: VulkanDescriptors
    let commands: VulkanCommands
    private var buffers = HandleTable<VulkanBuffer>()
    private var tracker = DependencyTracker()
    /// Buffers released while recorded commands may still use them; destroyed after the next wait.
    private var retired: [VulkanBuffer] = []
    private var staging: VulkanBuffer?
    /// Inside ``encodePredicated(on:_:)``.
    private var predicating = false
    public let deviceDescription: String

    /// What this machine offers, without creating a device.
    public static func probe() -> EngineProbe {
        do {
            let instance = try VulkanInstance()
            let version = "Vulkan loader \(vkVersionString(instance.loaderVersion))"
            guard !instance.devices.isEmpty else {
                return EngineProbe(devices: [], version: version,
                                   unavailableReason: "no Vulkan 1.1 device with a compute queue: install a Vulkan driver (mesa-vulkan-drivers for llvmpipe)")
            }
            return EngineProbe(devices: instance.devices.map(\.description), version: version)
        } catch let error as QTaleError {
            if case let .engine(message) = error { return .unavailable(message) }
            return .unavailable(error.description)
        } catch {
            return .unavailable("\(error)")
        }
    }

    /// Opens device `device` of ``probe()``'s list and builds every pipeline.
    public init(device index: Int) throws {
        let instance = try VulkanInstance()
        guard !instance.devices.isEmpty else {
            throw QTaleError.engine("no Vulkan 1.1 device with a compute queue: install a Vulkan driver (mesa-vulkan-drivers for llvmpipe)")
        }
        guard instance.devices.indices.contains(index) else {
            throw QTaleError.invalidArgument("--device \(index) is out of range: Vulkan sees \(instance.devices.count) device\(instance.devices.count == 1 ? "" : "s") (see `qtale backends`)")
        }
        let physical = instance.devices[index]
        device = try VulkanDevice(instance: instance, physical: physical)
        pipelines = try VulkanPipelines(device: device)
        descriptors = VulkanDescriptors(device: device, signatures: pipelines.signatures, setLayouts: pipelines.setLayouts)
        commands = try VulkanCommands(device: device)
        deviceDescription = physical.description + (device.float64 ? "" : "; no shaderFloat64, RoPE angles in float32")
        try warmUp()
    }

    deinit {
        _ = try? commands.submitAndWait()
        _ = device.functions.DeviceWaitIdle!(device.handle)
        descriptors.destroyViews()
        for buffer in retired { device.destroy(buffer) }
        for buffer in buffers.all { device.destroy(buffer) }
        if let staging { device.destroy(staging) }
    }

    public var name: String { "vulkan" }

    /// GPUs with conditional rendering: a round trip drains the queue (``ComputeEngine/prefersDevicePredication``).
    public var prefersDevicePredication: Bool {
        device.conditionalRendering && device.physical.properties.deviceType != VK_PHYSICAL_DEVICE_TYPE_CPU
    }

    /// `QTALE_VULKAN_STAGING=1` keeps every buffer unmapped, so `write` and `read` take the staging
    /// path that devices without host-visible device-local memory use (for testing it on llvmpipe).
    static let forceStaging = ProcessInfo.processInfo.environment["QTALE_VULKAN_STAGING"] == "1"

    // MARK: Buffers

    public func allocate(byteCount: Int) throws -> DeviceBuffer {
        guard byteCount >= 0 else { throw QTaleError.invalidArgument("cannot allocate \(byteCount) bytes") }
        guard byteCount <= device.maxStorageBufferRange else {
            throw QTaleError.engine("a \(byteCount)-byte buffer exceeds the device's maxStorageBufferRange (\(device.maxStorageBufferRange) bytes)")
        }
        let buffer = try device.makeBuffer(byteCount: byteCount, hostMapped: !Self.forceStaging)
        if let mapped = buffer.mapped {
            mapped.initializeMemory(as: UInt8.self, repeating: 0, count: buffer.size)
        } else {
            try commands.fillZero(buffer.buffer)
        }
        return DeviceBuffer(handle: buffers.insert(buffer), byteCount: byteCount, engine: self)
    }

    public func release(_ handle: BufferHandle) {
        guard let buffer = buffers.remove(handle) else { return }
        descriptors.evict(handle, inFlight: commands.isRecording)
        if commands.isRecording { retired.append(buffer) } else { device.destroy(buffer) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer, to handle: BufferHandle, byteOffset: Int) throws {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        let buffer = buffers[handle]
        try checkRange(buffer, byteOffset, bytes.count, "write")
        try synchronize()
        if let mapped = buffer.mapped {
            (mapped + byteOffset).copyMemory(from: source, byteCount: bytes.count)
            return
        }
        let staging = try stagingBuffer(bytes.count)
        staging.mapped!.copyMemory(from: source, byteCount: bytes.count)
        try commands.copy(from: staging.buffer, sourceOffset: 0, to: buffer.buffer, destinationOffset: byteOffset, byteCount: bytes.count)
        try synchronize()
    }

    public func read(_ handle: BufferHandle, byteOffset: Int, into bytes: UnsafeMutableRawBufferPointer) throws {
        let buffer = buffers[handle]
        try checkRange(buffer, byteOffset, bytes.count, "read")
        guard let destination = bytes.baseAddress, bytes.count > 0 else { return try synchronize() }
        if let mapped = buffer.mapped {
            try synchronize()
            destination.copyMemory(from: mapped + byteOffset, byteCount: bytes.count)
            return
        }
        let staging = try stagingBuffer(bytes.count)
        try commands.copy(from: buffer.buffer, sourceOffset: byteOffset, to: staging.buffer, destinationOffset: 0, byteCount: bytes.count)
        try synchronize()
        destination.copyMemory(from: staging.mapped!, byteCount: bytes.count)
    }

    private func checkRange(_ buffer: VulkanBuffer, _ offset: Int, _ count: Int, _ what: String) throws {
        guard offset >= 0, count >= 0, offset + count <= buffer.size else {
            throw QTaleError.invalidArgument("\(what) of \(count) bytes at offset \(offset) exceeds a \(buffer.size)-byte buffer")
        }
    }

    /// The host-visible staging buffer, grown to at least `byteCount` (only for device-local buffers).
    private func stagingBuffer(_ byteCount: Int) throws -> VulkanBuffer {
        if let staging, staging.size >= byteCount { return staging }
        try synchronize()
        if let staging { device.destroy(staging) }
        staging = nil
        let grown = try device.makeBuffer(byteCount: max(byteCount, 1 << 20), staging: true)
        staging = grown
        return grown
    }

    // MARK: Ops

    public func encode(_ op: Op) throws {
        let launch = KernelPlanner.launch(for: op)
        guard launch.groups.x > 0, launch.groups.y > 0, launch.groups.z > 0 else { return }
        try checkGroups(launch)
        let kernel = try pipelines.entry(launch.kernel, variant: VulkanPipelines.variantIndex(launch))
        let set = try descriptors.set(signature: kernel.signature, bindings: launch.bindings, buffers: buffers)
        if tracker.needsBarrier(before: op) { commands.computeBarrier() }
        try commands.dispatch(pipeline: kernel.pipeline, layout: kernel.layout, set: set,
                              parameters: launch.parameters, groups: launch.groups, label: launch.kernel.rawValue)
    }

    private func checkGroups(_ launch: KernelLaunch) throws {
        let limits = device.physical.properties.limits.maxComputeWorkGroupCount
        guard launch.groups.x <= Int(limits.0), launch.groups.y <= Int(limits.1), launch.groups.z <= Int(limits.2) else {
            throw QTaleError.engine("\(launch.kernel.rawValue) needs \(launch.groups) work-groups; the device allows \(limits)")
        }
    }

    /// With VK_EXT_conditional_rendering the region's dispatches are recorded under the flag, so the host
    /// does not wait; without it, the host reads the flag (``encodePredicatedOnHost(on:_:)``).
    public func encodePredicated(on flag: TensorView, _ body: () throws -> Void) throws {
        guard device.conditionalRendering else { return try encodePredicatedOnHost(on: flag, body) }
        OpValidation.checkPredicate(flag)
        precondition(!predicating, "predicated regions do not nest")
        try commands.beginConditional(on: buffers[flag.buffer].buffer, offset: flag.byteOffset)
        predicating = true
        defer {
            commands.endConditional()
            predicating = false
        }
        try body()
    }

    public func synchronize() throws {
        precondition(!predicating, "a predicated region may only encode ops")
        defer {
            tracker.reset()
            if !commands.isRecording {
                descriptors.commandsCompleted()
                for buffer in retired { device.destroy(buffer) }
                retired.removeAll(keepingCapacity: true)
            }
        }
        try commands.submitAndWait()
    }

    /// Runs every pipeline once on an empty problem (all parameters zero), so that drivers which
    /// compile lazily (llvmpipe) do it now rather than in the first token.
    private func warmUp() throws {
        let scratch = try allocate(byteCount: 64)
        let h = scratch.handle
        for (kernel, entry) in pipelines.builtEntries {
            let bindings = switch kernel.bindingCount {
            case 1: KernelBindings(h)
            case 2: KernelBindings(h, h)
            case 3: KernelBindings(h, h, h)
            case 4: KernelBindings(h, h, h, h)
            case 5: KernelBindings(h, h, h, h, h)
            default: KernelBindings(h, h, h, h, h, h)
            }
            try commands.dispatch(pipeline: entry.pipeline, layout: entry.layout,
                                  set: try descriptors.set(signature: entry.signature, bindings: bindings, buffers: buffers),
                                  parameters: KernelParameters(), groups: (1, 1, 1), label: "warm-up")
        }
        try synchronize()
    }
}
