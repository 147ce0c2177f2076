import QTaleCore
import QTaleCPU
import QTaleOpenCL
import QTaleReference
import QTaleVulkan

/// The engines this build can create, chosen by name at run time.
///
/// Each engine is one entry here; the model code never names an engine.
public enum EngineRegistry {
    public struct Entry: Sendable {
        public let name: String
        public let summary: String
        /// What the engine finds on this machine (loads driver libraries, creates nothing lasting).
        public let probe: @Sendable () -> EngineProbe
        public let make: @Sendable (_ threads: Int, _ device: Int) throws -> any ComputeEngine
    }

    static let host = EngineProbe(devices: ["host CPU"], version: "built in")

    public static let entries: [Entry] = [
        Entry(name: "cpu", summary: "Swift SIMD kernels with Dispatch threads (4-bit decode splits activations into int8 terms where AVX-512 VNNI allows; float32 accuracy)",
              probe: { host }) { threads, _ in
            try CPUEngine(threads: threads)
        },
        Entry(name: "cpu-f32", summary: "the cpu engine with float32 activations in 4-bit decode too (what cpu runs without AVX-512 VNNI)",
              probe: { host }) { threads, _ in
            try CPUEngine(threads: threads, decodeActivations: .float32)
        },
        Entry(name: "cpu-int8", summary: "the cpu engine with int8 activations in 4-bit decode matmuls (llama.cpp's numerics; AVX-512 VNNI)",
              probe: { CPUEngine.int8DecodeAvailable ? host : .unavailable("needs AVX-512 VNNI and a native build on such a CPU") }) { threads, _ in
            try CPUEngine(threads: threads, decodeActivations: .int8)
        },
        Entry(name: "opencl", summary: "OpenCL 1.2+ kernels (PoCL runs them on the CPU)", probe: OpenCLEngine.probe) { _, device in
            try OpenCLEngine(device: device)
        },
        Entry(name: "vulkan", summary: "Vulkan 1.1 compute shaders (Mesa's llvmpipe runs them on the CPU)", probe: VulkanEngine.probe) { _, device in
            try VulkanEngine(device: device)
        },
        Entry(name: "reference", summary: "float64 scalar reference (the specification; slow)", probe: { host }) { _, _ in
            ReferenceEngine()
        },
    ]

    public static var names: [String] { entries.map(\.name) }

    public static func make(_ name: String, threads: Int, device: Int = 0) throws -> any ComputeEngine {
        guard let entry = entries.first(where: { $0.name == name }) else {
            throw QTaleError.invalidArgument("unknown backend '\(name)'; available: \(names.joined(separator: ", "))")
        }
        return try entry.make(threads, device)
    }
}
