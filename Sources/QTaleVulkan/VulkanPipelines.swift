import CVulkan
import Foundation
import QTaleCore
import QTaleKernels

/// How a kernel reads one of its bindings. Every binding is a whole engine buffer (the planner's
/// binding list, unchanged); outputs are storage buffers, but inputs that kernels stream (weight
/// codes, scales, activations, keys, values) are read through uniform texel buffer views, because
/// llvmpipe fetches a texel for all SIMD lanes at once (~25-50 cycles per 8 lanes for 16 bytes) while
/// it loads storage buffers lane by lane with a bounds check each (~20 cycles per lane and word).
enum VulkanBinding: Hashable {
    case storage
    /// A uniform texel buffer viewing the whole buffer with this `VkFormat` (raw value).
    case texel(UInt32)

    static let uint4 = VulkanBinding.texel(VK_FORMAT_R32G32B32A32_UINT.rawValue)
    static let float4 = VulkanBinding.texel(VK_FORMAT_R32G32B32A32_SFLOAT.rawValue)
    static let float1 = VulkanBinding.texel(VK_FORMAT_R32_SFLOAT.rawValue)
    static let half1 = VulkanBinding.texel(VK_FORMAT_R16_SFLOAT.rawValue)
    static let uint1 = VulkanBinding.texel(VK_FORMAT_R32_UINT.rawValue)

    /// Bytes per texel of the formats above.
    static func texelBytes(_ format: UInt32) -> Int {
        switch format {
        case VK_FORMAT_R16_SFLOAT.rawValue: 2
        case VK_FORMAT_R32_SFLOAT.rawValue, VK_FORMAT_R32_UINT.rawValue: 4
        default: 16
        }
    }

    var descriptorType: VkDescriptorType {
        switch self {
        case .storage: VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
        case .texel: VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
        }
    }
}

/// The compute pipelines of `Kernels/vulkan`, created once per engine so no token pays a compile.
///
/// Kernels with the same bindings (``VulkanBinding`` per binding `0..<n`) share a descriptor-set
/// layout and a pipeline layout (compute stage; 64 bytes of push constants: the sixteen parameter
/// words). Specialization constant 0 is `KernelPlanner.workgroupSize`; kernels whose grid does not
/// depend on the work-group size, or that give each invocation several rows or columns (attention,
/// rms_norm, matmul_vec, matmul_mat, swiglu, add), set their own size through a later constant, so
/// that on llvmpipe no SIMD vector idles (idle invocations there still run all code outside loops).
final class VulkanPipelines {
    private let device: VulkanDevice
    /// Distinct binding lists, their descriptor-set layouts and pipeline layouts (same index).
    private(set) var signatures: [[VulkanBinding]] = []
    private(set) var setLayouts: [VkDescriptorSetLayout] = []
    private var pipelineLayouts: [VkPipelineLayout] = []
    typealias Entry = (pipeline: VkPipeline, layout: VkPipelineLayout, signature: Int)
    /// Per kernel (`KernelName.allCases` order), its pipelines by variant index (nil: not built yet).
    private var pipelines: [[Entry?]] = []
    /// Pipeline layout and signature index per kernel.
    private var kernelLayouts: [(layout: VkPipelineLayout, signature: Int)] = []

    static let parameterBytes = KernelParameters.wordCount * 4

    /// The SPIR-V module a kernel runs: RoPE has a float64 variant for devices with `shaderFloat64`.
    static func moduleName(_ kernel: KernelName, float64: Bool) -> String {
        kernel == .rope && !float64 ? "rope_f32" : kernel.rawValue
    }

    /// A compiled specialization of a kernel (specialization constants 2...; see each kernel's contract
    /// comment). llvmpipe executes both sides of a branch, so these are compiled, not tested at run time.
    enum Variant {
        /// matmul_vec and matmul_mat: bit width; whether inputs are texel aligned (offset, and row
        /// stride for several tokens, multiples of 4); whether K has a partial last pack; whether
        /// groups are 32 codes and each row has an even number of them (matmul_vec then fetches the
        /// scales and offsets of two packs at once; always false for matmul_mat).
        case matmul(bits: Int, aligned: Bool, partial: Bool, paired: Bool)
        /// attention: ceil(headDim / 4); whether headDim and every offset and stride of query,
        /// keys and values are multiples of 4; whether there are at least ``queryLanesFrom`` queries
        /// (CPU devices then give each invocation a query rather than a share of the keys).
        case attention(dim4: Int, aligned: Bool, manyQueries: Bool)
        /// rms_norm, swiglu, add, linear: whether the offsets and strides of the texel inputs (and linear's K)
        /// are multiples of 4.
        case vectorized(aligned: Bool)
    }

    /// Attention launches with this many queries or more take the query-lanes variant on CPU devices
    /// (one query per invocation; see attention.comp): a prefill, not a decode step's single query.
    static let queryLanesFrom: Int32 = 8

    static func variants(_ kernel: KernelName) -> [Variant?] {
        switch kernel {
        case .matmulVector, .matmulMatrix:
            [3, 4, 8].flatMap { bits in
                [false, true].flatMap { aligned in
                    [false, true].flatMap { partial in [false, true].map { .matmul(bits: bits, aligned: aligned, partial: partial, paired: $0) } }
                }
            }
        case .attention:
            (1...64).flatMap { dim4 in
                [false, true].flatMap { aligned in [false, true].map { .attention(dim4: dim4, aligned: aligned, manyQueries: $0) } }
            }
        case .rmsNorm, .swiGLU, .add, .linear:
            [false, true].map { .vectorized(aligned: $0) }
        default: [nil]
        }
    }

    /// The index in ``variants(_:)`` of the pipeline that runs `launch`, read from its parameters
    /// (matmul: bits, groupSize, K, groupsPerRow, inputOffset and inputStride are words 0, 1, 2, 5, 7
    /// and 8; attention: T is word 0, headDim and the offsets and strides of query, keys and values
    /// are words 4 to 10).
    @inline(__always)
    static func variantIndex(_ launch: KernelLaunch) -> Int {
        let w = launch.parameters.words
        switch launch.kernel {
        case .matmulVector, .matmulMatrix:
            let bits = Int32(bitPattern: w.0), k = Int32(bitPattern: w.2)
            let offset = Int32(bitPattern: w.7), stride = Int32(bitPattern: w.8)
            let aligned = offset & 3 == 0 && (launch.kernel == .matmulVector || stride & 3 == 0)
            // groupSize 32 and groupsPerRow even (only matmul_vec uses it)
            let paired = launch.kernel == .matmulVector && w.1 == 32 && w.5 & 1 == 0
            return (bits == 3 ? 0 : bits == 4 ? 8 : 16) + (aligned ? 4 : 0) + (k & 31 != 0 ? 2 : 0) + (paired ? 1 : 0)
        case .attention:
            let headDim = Int(Int32(bitPattern: w.4))
            let aligned = (w.4 | w.5 | w.6 | w.7 | w.8 | w.9 | w.10) & 3 == 0
            let manyQueries = Int32(bitPattern: w.0) >= queryLanesFrom
            return ((min(max(headDim, 1), 256) + 3) / 4 * 2 - 2 + (aligned ? 1 : 0)) * 2 + (manyQueries ? 1 : 0)
        case .rmsNorm:
            return (w.1 | w.2 | w.3) & 3 == 0 ? 1 : 0         // inputOffset, inputStride, weightOffset
        case .swiGLU, .add:
            return (w.2 | w.3 | w.4 | w.5) & 3 == 0 ? 1 : 0   // aOffset, aStride, bOffset, bStride
        case .linear:
            return (w.1 | w.3 | w.4 | w.5 | w.6) & 3 == 0 ? 1 : 0   // K, inputOffset, inputStride, weightOffset, weightStride
        default:
            return 0
        }
    }

    /// Variants built (and warmed up) with the engine: what LLaMA models run (4- and 8-bit weights,
    /// whole-texel inputs, K a multiple of 32, heads of 64 or 128 channels). The others, which only
    /// odd shapes need, are built on first use (llvmpipe takes about 0.1-0.3 s for each).
    static func isEager(_ kernel: KernelName, _ variant: Variant?) -> Bool {
        switch variant {
        case nil: true
        case let .matmul(bits, aligned, partial, paired): bits != 3 && aligned && !partial && paired == (kernel == .matmulVector)
        case let .attention(dim4, aligned, _): aligned && (dim4 == 16 || dim4 == 32)
        case let .vectorized(aligned): aligned
        }
    }

    /// Work-group size of kernels whose grid does not depend on it (attention, rms_norm): one subgroup,
    /// which on llvmpipe is one SIMD vector (idle invocations there still run all code outside loops).
    var subgroupTeam: Int {
        min(max(device.physical.subgroupSize, 4), 64, Int(device.physical.properties.limits.maxComputeWorkGroupInvocations))
    }

    /// Specialization constants: 0 is the work-group size; 1... depend on the kernel (see its contract).
    /// `QTALE_VULKAN_GPU_KERNELS=1` takes the GPU choices on any device, so CI checks them on llvmpipe.
    func specialization(_ kernel: KernelName, _ variant: Variant?) -> [UInt32] {
        let cpu = device.physical.properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU
            && ProcessInfo.processInfo.environment["QTALE_VULKAN_GPU_KERNELS"] != "1"
        var constants = [UInt32(KernelPlanner.workgroupSize)]
        switch variant {
        case let .matmul(bits, aligned, partial, paired):
            // Rows per invocation: on CPU devices fewer invocations sharing each input fetch over more
            // rows is faster; on GPUs every invocation takes one row. The work-group is the rest.
            let rows = kernel == .matmulMatrix ? KernelPlanner.matmulTileRows : KernelPlanner.matvecRowsPerGroup
            var rowsPerInvocation = !cpu ? 1 : 8
            while rows % rowsPerInvocation != 0 { rowsPerInvocation /= 2 }
            constants += [UInt32(rowsPerInvocation), UInt32(bits), aligned ? 1 : 0, partial ? 1 : 0,
                          UInt32(rows / rowsPerInvocation), UInt32(rows), paired ? 1 : 0]
        case let .attention(dim4, aligned, manyQueries):
            // The work-group: one subgroup (one SIMD vector on llvmpipe), with the merge in 16 KiB.
            // Query lanes on CPU devices only: a GPU wants the split keys' many more work-groups.
            constants += [UInt32(min(subgroupTeam, 1024 / dim4)), UInt32(dim4), aligned ? 1 : 0, manyQueries && cpu ? 1 : 0]
        case let .vectorized(aligned):
            // rms_norm: work-groups of one subgroup; swiglu and add: a quarter of QTALE_WG invocations,
            // four columns each; linear: QTALE_WG invocations, a column each (see their contracts).
            let size = switch kernel {
            case .rmsNorm: subgroupTeam
            case .linear: KernelPlanner.workgroupSize
            default: KernelPlanner.workgroupSize / 4
            }
            constants += [UInt32(size), aligned ? 1 : 0]
        case nil:
            break
        }
        return constants
    }

    /// The pipeline for `kernel` in variant `index`, built now if it was not yet.
    @inline(__always)
    func entry(_ kernel: KernelName, variant index: Int) throws -> Entry {
        if let entry = pipelines[kernel.index][index] { return entry }
        return try build(kernel, variant: index)
    }

    @discardableResult
    private func build(_ kernel: KernelName, variant index: Int) throws -> Entry {
        let (layout, signature) = kernelLayouts[kernel.index]
        let pipeline = try makePipeline(module: Self.moduleName(kernel, float64: device.float64), layout: layout,
                                        constants: specialization(kernel, Self.variants(kernel)[index]))
        let entry = (pipeline, layout, signature)
        pipelines[kernel.index][index] = entry
        return entry
    }

    /// The pipelines built so far, for warming up.
    var builtEntries: [(kernel: KernelName, entry: Entry)] {
        KernelName.allCases.flatMap { kernel in pipelines[kernel.index].compactMap { $0.map { (kernel, $0) } } }
    }

    /// How each kernel reads its bindings (must match the declarations in Kernels/vulkan).
    static func bindings(_ kernel: KernelName) -> [VulkanBinding] {
        switch kernel {
        case .matmulVector, .matmulMatrix: [.float4, .uint4, .uint1, .uint1, .storage]
        case .attention: [.float4, .float4, .float4, .storage, .storage, .storage]
        case .rmsNorm, .swiGLU, .add: [.float4, .float4, .storage]
        case .linear: [.float4, .float4, .storage, .storage]
        default: Array(repeating: .storage, count: kernel.bindingCount)
        }
    }

    /// Texel formats the kernels use; each must support uniform texel buffers.
    static var texelFormats: Set<UInt32> {
        Set(KernelName.allCases.flatMap(bindings).compactMap { if case let .texel(f) = $0 { f } else { nil } })
    }

    init(device: VulkanDevice) throws {
        self.device = device
        for format in Self.texelFormats {
            var properties = VkFormatProperties()
            device.instance.functions.GetPhysicalDeviceFormatProperties!(device.physical.handle, VkFormat(rawValue: format), &properties)
            guard properties.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT.rawValue != 0 else {
                throw QTaleError.engine("\(device.physical.name) cannot read VkFormat \(format) from uniform texel buffers, which the matmul kernels need")
            }
        }
        do {
            for kernel in KernelName.allCases {
                let signature = Self.bindings(kernel)
                precondition(signature.count == kernel.bindingCount, "binding list of \(kernel) does not match KernelName")
                var index = signatures.firstIndex(of: signature)
                if index == nil {
                    let setLayout = try makeSetLayout(signature)
                    setLayouts.append(setLayout)
                    pipelineLayouts.append(try makePipelineLayout(setLayout))
                    signatures.append(signature)
                    index = signatures.count - 1
                }
                precondition(pipelines.count == kernel.index)
                kernelLayouts.append((pipelineLayouts[index!], index!))
                let variants = Self.variants(kernel)
                pipelines.append(Array(repeating: nil, count: variants.count))
                for (i, variant) in variants.enumerated() where Self.isEager(kernel, variant) {
                    try build(kernel, variant: i)
                }
            }
        } catch {
            destroy()
            throw error
        }
    }

    deinit { destroy() }

    private func destroy() {
        let f = device.functions, d = device.handle
        for p in pipelines.joined() { if let p { f.DestroyPipeline!(d, p.pipeline, nil) } }
        for l in pipelineLayouts { f.DestroyPipelineLayout!(d, l, nil) }
        for l in setLayouts { f.DestroyDescriptorSetLayout!(d, l, nil) }
        pipelines = []
        pipelineLayouts = []
        setLayouts = []
    }

    private func makeSetLayout(_ signature: [VulkanBinding]) throws -> VkDescriptorSetLayout {
        var bindings = signature.enumerated().map { i, kind in
            var b = VkDescriptorSetLayoutBinding()
            b.binding = UInt32(i)
            b.descriptorType = kind.descriptorType
            b.descriptorCount = 1
            b.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT.rawValue
            return b
        }
        var layout: VkDescriptorSetLayout?
        let result = bindings.withUnsafeMutableBufferPointer { pointer in
            var info = VkDescriptorSetLayoutCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO
            info.bindingCount = UInt32(pointer.count)
            info.pBindings = UnsafePointer(pointer.baseAddress)
            return device.functions.CreateDescriptorSetLayout!(device.handle, &info, nil, &layout)
        }
        try vkCheck(result, "vkCreateDescriptorSetLayout(\(signature.count) bindings)")
        return layout!
    }

    private func makePipelineLayout(_ setLayout: VkDescriptorSetLayout) throws -> VkPipelineLayout {
        var setLayout: VkDescriptorSetLayout? = setLayout
        var range = VkPushConstantRange(stageFlags: VK_SHADER_STAGE_COMPUTE_BIT.rawValue, offset: 0,
                                        size: UInt32(Self.parameterBytes))
        var layout: VkPipelineLayout?
        let result = withUnsafePointer(to: &setLayout) { setPointer in
            withUnsafePointer(to: &range) { rangePointer in
                var info = VkPipelineLayoutCreateInfo()
                info.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO
                info.setLayoutCount = 1
                info.pSetLayouts = setPointer
                info.pushConstantRangeCount = 1
                info.pPushConstantRanges = rangePointer
                return device.functions.CreatePipelineLayout!(device.handle, &info, nil, &layout)
            }
        }
        try vkCheck(result, "vkCreatePipelineLayout")
        return layout!
    }

    /// The SPIR-V of module `name`: embedded, or for kernel development `$QTALE_VULKAN_SPIRV_DIR/name.spv`
    /// when that variable is set (compile with the flags of scripts/kernelgen.py).
    static func spirv(_ name: String) throws -> Data {
        if let folder = ProcessInfo.processInfo.environment["QTALE_VULKAN_SPIRV_DIR"] {
            let path = folder + "/" + name + ".spv"
            guard let code = FileManager.default.contents(atPath: path), code.count % 4 == 0 else {
                throw QTaleError.engine("QTALE_VULKAN_SPIRV_DIR is set but \(path) is missing or not SPIR-V")
            }
            return code
        }
        guard let base64 = VulkanKernelSPIRV.modules[name],
              let code = Data(base64Encoded: base64, options: .ignoreUnknownCharacters), code.count % 4 == 0 else {
            throw QTaleError.engine("the SPIR-V of kernel \(name) is missing or corrupt (run scripts/kernelgen.py)")
        }
        return code
    }

    private func makePipeline(module name: String, layout: VkPipelineLayout, constants: [UInt32]) throws -> VkPipeline {
        let code = try Self.spirv(name)
        var module: VkShaderModule?
        let moduleResult = code.withUnsafeBytes { raw in
            var info = VkShaderModuleCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO
            info.codeSize = raw.count
            info.pCode = raw.baseAddress!.assumingMemoryBound(to: UInt32.self)
            return device.functions.CreateShaderModule!(device.handle, &info, nil, &module)
        }
        try vkCheck(moduleResult, "vkCreateShaderModule(\(name))")
        defer { device.functions.DestroyShaderModule!(device.handle, module, nil) }

        var values = constants
        var entries = (0..<constants.count).map { VkSpecializationMapEntry(constantID: UInt32($0), offset: UInt32(4 * $0), size: 4) }
        var pipeline: VkPipeline?
        let result = entries.withUnsafeMutableBufferPointer { entryPointer in
            values.withUnsafeMutableBytes { dataPointer in
                var specialization = VkSpecializationInfo(mapEntryCount: UInt32(entryPointer.count), pMapEntries: entryPointer.baseAddress,
                                                          dataSize: dataPointer.count, pData: UnsafeRawPointer(dataPointer.baseAddress))
                return withUnsafePointer(to: &specialization) { specializationPointer in
                    "main".withCString { entryName in
                        var stage = VkPipelineShaderStageCreateInfo()
                        stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO
                        stage.stage = VK_SHADER_STAGE_COMPUTE_BIT
                        stage.module = module
                        stage.pName = entryName
                        stage.pSpecializationInfo = specializationPointer
                        var info = VkComputePipelineCreateInfo()
                        info.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO
                        info.stage = stage
                        info.layout = layout
                        info.basePipelineIndex = -1
                        return device.functions.CreateComputePipelines!(device.handle, nil, 1, &info, nil, &pipeline)
                    }
                }
            }
        }
        try vkCheck(result, "vkCreateComputePipelines(\(name))")
        return pipeline!
    }
}
