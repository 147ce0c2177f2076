import COpenCL
import QTaleCore
import QTaleKernels

/// The OpenCL engine: the kernels of `Kernels/opencl` on one OpenCL 1.2+ device (PoCL runs them on
/// the CPU), driven by the launch plans of ``KernelPlanner``.
///
/// **Execution.** One in-order command queue. ``encode(_:)`` enqueues the op's planned kernel (buffer
/// arguments in binding order, then the sixteen parameter words as one struct argument) and returns;
/// ``synchronize()`` is `clFinish`; ``read(_:byteOffset:into:)`` is a blocking read on the same queue,
/// so it sees everything encoded before it. ``write(_:to:byteOffset:)`` is ordered after encoded work
/// by the queue too: small writes (the per-token ids and positions) are copied into engine-owned
/// staging memory and enqueued without waiting, saving a host/device round trip each (about 50 µs on
/// PoCL); large ones (weights) are blocking. Staging is freed once the queue has drained.
///
/// **Memory.** Buffers are `cl_mem` objects in a ``HandleTable``, zero-filled on allocation.
/// Releasing one while kernels that use it are queued is safe: OpenCL keeps it until they finish.
public final class OpenCLEngine: ComputeEngine {
    /// The function table (a copy, for the launch path).
    private let api: QTaleOpenCLFunctions
    private let context: cl_context
    private let queue: cl_command_queue
    private let kernels: OpenCLKernels
    private var buffers = HandleTable<cl_mem>()
    /// The flag kernels test (``encodePredicated(on:_:)``): a buffer and an int32 index; outside a
    /// predicated region, ``alwaysRun``, which holds 1.
    private var predicate: (memory: cl_mem, index: cl_int)
    private let alwaysRun: cl_mem
    /// Two int32 counters of `matmul_vec` on CPU devices: the next block of rows, and the work-groups
    /// done (the last resets both to zero).
    private let rowBlocks: cl_mem
    /// Work-groups of `matmul_vec` on CPU devices: one per compute unit (PoCL worker thread).
    private let matvecGroups: Int
    /// Host copies read by queued non-blocking writes; freed when the queue has drained.
    private var staging: [UnsafeMutableRawBufferPointer] = []
    private var stagingBytes = 0
    /// Writes up to this size are staged; larger ones block.
    static let stagedWriteLimit = 64 << 10
    /// Staged bytes that force a drain, bounding the memory held.
    static let stagingDrainThreshold = 16 << 20
    public let deviceDescription: String
    /// GPUs: a round trip drains the queue (see ``ComputeEngine/prefersDevicePredication``); CPU devices: not.
    public let prefersDevicePredication: Bool

    public var name: String { "opencl" }

    /// What OpenCL offers on this machine, without creating anything.
    public static func probe() -> EngineProbe { OpenCLDevice.probe() }

    /// Opens device `device` (an index into ``probe()``'s device list) and builds the kernels.
    public init(device index: Int) throws {
        let library = try OpenCLLibrary.load()
        api = library.api
        let devices = try OpenCLDevice.all(library)
        guard !devices.isEmpty else {
            let probe = OpenCLDevice.probe()
            throw QTaleError.engine(probe.unavailableReason ?? "no OpenCL device found")
        }
        guard devices.indices.contains(index) else {
            throw QTaleError.invalidArgument("--device \(index) is out of range: OpenCL has \(devices.count) device"
                                             + "\(devices.count == 1 ? "" : "s") (0..<\(devices.count); see `qtale backends`)")
        }
        let device = devices[index]
        try Self.checkCapabilities(of: device, library)

        var status: cl_int = 0
        var deviceID = device.id
        guard let context = api.CreateContext!(nil, 1, &deviceID, nil, nil, &status), status == CL_SUCCESS else {
            throw OpenCLLibrary.failure(status, "clCreateContext")
        }
        self.context = context
        guard let queue = api.CreateCommandQueue!(context, device.id, 0, &status), status == CL_SUCCESS else {
            _ = api.ReleaseContext!(context)
            throw OpenCLLibrary.failure(status, "clCreateCommandQueue")
        }
        self.queue = queue
        var one: cl_int = 1
        guard let alwaysRun = api.CreateBuffer!(context, cl_mem_flags(CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR), 4, &one, &status),
              status == CL_SUCCESS else {
            _ = api.ReleaseCommandQueue!(queue)
            _ = api.ReleaseContext!(context)
            throw OpenCLLibrary.failure(status, "clCreateBuffer")
        }
        self.alwaysRun = alwaysRun
        predicate = (alwaysRun, 0)
        var zeros: (cl_int, cl_int) = (0, 0)
        guard let rowBlocks = api.CreateBuffer!(context, cl_mem_flags(CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR), 8, &zeros, &status),
              status == CL_SUCCESS else {
            _ = api.ReleaseMemObject!(alwaysRun)
            _ = api.ReleaseCommandQueue!(queue)
            _ = api.ReleaseContext!(context)
            throw OpenCLLibrary.failure(status, "clCreateBuffer")
        }
        self.rowBlocks = rowBlocks
        matvecGroups = max(1, device.computeUnits)
        do {
            kernels = try OpenCLKernels(library: library, context: context, device: device)
        } catch {
            _ = api.ReleaseMemObject!(rowBlocks)
            _ = api.ReleaseMemObject!(alwaysRun)
            _ = api.ReleaseCommandQueue!(queue)
            _ = api.ReleaseContext!(context)
            throw error
        }
        prefersDevicePredication = !device.isCPU
        let fp64 = Self.supportsDouble(device, library)
        deviceDescription = device.description + (fp64 ? "" : "; no cl_khr_fp64, so RoPE angles are float32")
    }

    deinit {
        _ = api.Finish!(queue)
        releaseStaging()
        for memory in buffers.all { _ = api.ReleaseMemObject!(memory) }
        _ = api.ReleaseMemObject!(rowBlocks)
        _ = api.ReleaseMemObject!(alwaysRun)
        _ = api.ReleaseCommandQueue!(queue)
        _ = api.ReleaseContext!(context)
    }

    // MARK: Buffers

    public func allocate(byteCount: Int) throws -> DeviceBuffer {
        guard byteCount >= 0 else { throw QTaleError.invalidArgument("cannot allocate \(byteCount) bytes") }
        // At least one word, rounded up to whole words so the zero fill can use a 4-byte pattern.
        let size = max(4, (byteCount + 3) & ~3)
        var status: cl_int = 0
        guard let memory = api.CreateBuffer!(context, cl_mem_flags(CL_MEM_READ_WRITE), size, nil, &status), status == CL_SUCCESS else {
            throw QTaleError.engine("clCreateBuffer(\(size) bytes) failed: \(OpenCLError.name(status))")
        }
        var zero: UInt32 = 0
        status = api.EnqueueFillBuffer!(queue, memory, &zero, 4, 0, size, 0, nil, nil)
        guard status == CL_SUCCESS else {
            _ = api.ReleaseMemObject!(memory)
            throw OpenCLLibrary.failure(status, "clEnqueueFillBuffer")
        }
        return DeviceBuffer(handle: buffers.insert(memory), byteCount: byteCount, engine: self)
    }

    public func release(_ handle: BufferHandle) {
        if let memory = buffers.remove(handle) { _ = api.ReleaseMemObject!(memory) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer, to buffer: BufferHandle, byteOffset: Int) throws {
        guard bytes.count > 0 else { return }
        let memory = buffers[buffer]
        // The in-order queue runs the write after all encoded work either way.
        guard bytes.count <= Self.stagedWriteLimit else {
            // Blocking: `bytes` may go away once this returns.
            return try OpenCLLibrary.check(api.EnqueueWriteBuffer!(queue, memory, cl_bool(CL_TRUE), byteOffset, bytes.count,
                                                                   bytes.baseAddress, 0, nil, nil),
                                           "clEnqueueWriteBuffer(\(bytes.count) bytes at \(byteOffset))")
        }
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 64)
        copy.copyMemory(from: bytes)
        staging.append(copy)
        stagingBytes += bytes.count
        try OpenCLLibrary.check(api.EnqueueWriteBuffer!(queue, memory, cl_bool(CL_FALSE), byteOffset, bytes.count,
                                                        copy.baseAddress, 0, nil, nil),
                                "clEnqueueWriteBuffer(\(bytes.count) bytes at \(byteOffset))")
        if stagingBytes > Self.stagingDrainThreshold { try synchronize() }
    }

    public func read(_ buffer: BufferHandle, byteOffset: Int, into bytes: UnsafeMutableRawBufferPointer) throws {
        guard bytes.count > 0 else { return try synchronize() }
        try OpenCLLibrary.check(api.EnqueueReadBuffer!(queue, buffers[buffer], cl_bool(CL_TRUE), byteOffset, bytes.count,
                                                       bytes.baseAddress, 0, nil, nil),
                                "clEnqueueReadBuffer(\(bytes.count) bytes at \(byteOffset))")
        releaseStaging()  // the blocking read completed everything queued before it
    }

    /// Frees staged write sources; only once the queue has drained (after `clFinish` or a blocking read).
    private func releaseStaging() {
        guard !staging.isEmpty else { return }
        for copy in staging { copy.deallocate() }
        staging.removeAll(keepingCapacity: true)
        stagingBytes = 0
    }

    // MARK: Work

    /// The largest attention head the kernels hold (QTALE_MAX_HEAD_DIM in Kernels/opencl/attention.cl).
    public static let maxHeadDim = 256

    public func encode(_ op: Op) throws {
        if case let .attention(_, _, _, _, _, _, _, headDim, _) = op, headDim > Self.maxHeadDim {
            throw QTaleError.engine("the OpenCL attention kernel handles heads of up to \(Self.maxHeadDim) channels, not \(headDim)")
        }
        let launch = KernelPlanner.launch(for: op)
        var groups = launch.groups
        // CPU devices: PoCL wakes its idle worker thread for a launch of several work-groups and waits for
        // it. Elementwise kernels, a few microseconds of work, run one work-group per row (they stride
        // over the columns; decode +3-4% on PoCL 3.1 with 2 threads); matmul_vec runs one per compute
        // unit, and they share blocks of rows through `rowBlocks` (Kernels/opencl/matmul.cl).
        if kernels.cpuVariants, launch.kernel == .swiGLU || launch.kernel == .add || launch.kernel == .copy {
            groups.x = min(groups.x, 1)
        } else if kernels.cpuVariants && launch.kernel == .matmulVector && groups.x > 0 {
            groups.x = matvecGroups
        }
        guard groups.x > 0 && groups.y > 0 && groups.z > 0 else { return }  // nothing to compute
        let kernel = try kernels.kernel(launch.kernel)
        let bindings = launch.bindings
        for i in 0..<bindings.count {
            var memory: cl_mem? = buffers[bindings[i]]
            let status = api.SetKernelArg!(kernel, cl_uint(i), MemoryLayout<cl_mem?>.size, &memory)
            if status != CL_SUCCESS { throw OpenCLLibrary.failure(status, "clSetKernelArg(\(launch.kernel.rawValue), \(i))") }
        }
        var status = launch.parameters.withUnsafeBytes {
            api.SetKernelArg!(kernel, cl_uint(bindings.count), $0.count, $0.baseAddress)
        }
        if status != CL_SUCCESS {
            throw OpenCLLibrary.failure(status, "clSetKernelArg(\(launch.kernel.rawValue), parameters)")
        }
        var (flag, flagIndex): (cl_mem?, cl_int) = predicate
        status = api.SetKernelArg!(kernel, cl_uint(bindings.count + 1), MemoryLayout<cl_mem?>.size, &flag)
        if status == CL_SUCCESS {
            status = api.SetKernelArg!(kernel, cl_uint(bindings.count + 2), MemoryLayout<cl_int>.size, &flagIndex)
        }
        if status != CL_SUCCESS {
            throw OpenCLLibrary.failure(status, "clSetKernelArg(\(launch.kernel.rawValue), predicate)")
        }
        if kernels.cpuVariants && launch.kernel == .matmulVector {
            var counters: cl_mem? = rowBlocks
            status = api.SetKernelArg!(kernel, cl_uint(bindings.count + 3), MemoryLayout<cl_mem?>.size, &counters)
            if status != CL_SUCCESS { throw OpenCLLibrary.failure(status, "clSetKernelArg(matmul_vec, row blocks)") }
        }
        let size = KernelPlanner.workgroupSize
        var sizes = (groups.x * size, groups.y, groups.z, size, 1, 1)
        status = withUnsafeBytes(of: &sizes) { raw in
            let global = raw.baseAddress!.assumingMemoryBound(to: Int.self)
            return api.EnqueueNDRangeKernel!(queue, kernel, 3, nil, global, global + 3, 0, nil, nil)
        }
        if status != CL_SUCCESS {
            throw OpenCLLibrary.failure(status, "clEnqueueNDRangeKernel(\(launch.kernel.rawValue), "
                                        + "groups \(groups.x)×\(groups.y)×\(groups.z))")
        }
    }

    /// Every kernel tests the flag itself (`QTALE_RETURN_UNLESS_PREDICATED` in Kernels/opencl/common.h),
    /// so the host enqueues the region without waiting.
    public func encodePredicated(on flag: TensorView, _ body: () throws -> Void) throws {
        OpValidation.checkPredicate(flag)
        precondition(predicate.memory == alwaysRun, "predicated regions do not nest")
        predicate = (buffers[flag.buffer], cl_int(flag.byteOffset / 4))
        defer { predicate = (alwaysRun, 0) }
        try body()
    }

    public func synchronize() throws {
        try OpenCLLibrary.check(api.Finish!(queue), "clFinish")
        releaseStaging()
    }

    // MARK: Device checks

    private static func checkCapabilities(of device: OpenCLDevice, _ library: OpenCLLibrary) throws {
        let compiler = try library.value(device.id, cl_device_info(CL_DEVICE_COMPILER_AVAILABLE), as: cl_bool.self)
        guard compiler != 0 else {
            throw QTaleError.engine("\(device.description) has no OpenCL C compiler; qtale builds its kernels from source")
        }
        let workGroup = try library.value(device.id, cl_device_info(CL_DEVICE_MAX_WORK_GROUP_SIZE), as: Int.self)
        guard workGroup >= KernelPlanner.workgroupSize else {
            throw QTaleError.engine("\(device.description) runs at most \(workGroup) work-items per group; "
                                    + "qtale needs \(KernelPlanner.workgroupSize)")
        }
        let version = device.version
        guard !version.hasPrefix("OpenCL 1.0"), !version.hasPrefix("OpenCL 1.1") else {
            throw QTaleError.engine("\(device.description) implements \(version); qtale needs OpenCL 1.2 or later")
        }
    }

    private static func supportsDouble(_ device: OpenCLDevice, _ library: OpenCLLibrary) -> Bool {
        let extensions = (try? library.deviceString(device.id, cl_device_info(CL_DEVICE_EXTENSIONS))) ?? ""
        return extensions.split(separator: " ").contains("cl_khr_fp64")
    }
}
