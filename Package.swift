// swift-tools-version:6.0
import Foundation
import PackageDescription

// The CPU engine's hot loops are written with Swift SIMD types; without a target CPU the compiler
// only emits SSE2. The default, "native", tunes for the build machine (AVX-512 where present; the
// package is always built where it runs). Use QTALE_TARGET_CPU=haswell (AVX2) for a portable binary.
// QTALE_TARGET_CPU=generic leaves the compiler default.
let targetCPU = ProcessInfo.processInfo.environment["QTALE_TARGET_CPU"] ?? "native"
var optimisedSwift: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
#if arch(x86_64)
if targetCPU != "generic" {
    optimisedSwift.append(.unsafeFlags(["-target-cpu", targetCPU]))
}
#endif

// The CPU engine's int8-activation decode (the `cpu-int8` backend) uses AVX-512 VNNI intrinsics, so it
// is compiled only for a native build on a CPU that has them; elsewhere that backend reports why not.
var cpuEngineSwift = optimisedSwift
#if arch(x86_64) && os(Linux)
if targetCPU == "native",
   let cpuInfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
   let flags = cpuInfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") })?.split(separator: " "),
   flags.contains("avx512_vnni"), flags.contains("avx512vl") {
    cpuEngineSwift.append(.define("QTALE_AVX512_VNNI"))
}
#endif

let package = Package(
    name: "qtale",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "qtale", targets: ["qtale"]),
        .library(name: "QTaleModel", targets: ["QTaleModel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // MARK: Core: the backend protocol, the op set, tensors and the quantized-weight layout.
        .target(name: "QTaleCore", swiftSettings: optimisedSwift),

        // MARK: File formats and text
        .target(name: "QTaleGGUF", dependencies: ["QTaleCore"]),
        .target(name: "QTaleTokenizer"),
        .target(name: "QTaleSafetensors", dependencies: ["QTaleCore", "QTaleGGUF"]),

        // MARK: Engines
        .target(name: "QTaleReference", dependencies: ["QTaleCore"]),
        // Kernel launch plans shared by the GPU engines (the host half of the contracts in Kernels/),
        // and the dependency tracking every engine that records ops uses.
        .target(name: "QTaleKernels", dependencies: ["QTaleCore"]),
        // Software prefetch for the CPU engine's decode loops (a C inline function: Swift has none).
        .target(name: "CMemoryHints"),
        .target(name: "QTaleCPU", dependencies: ["QTaleCore", "QTaleKernels", "CMemoryHints"], swiftSettings: cpuEngineSwift),
        // OpenCL and Vulkan: the C targets hold the API's function table and a dlopen loader, so nothing
        // links against libOpenCL or libvulkan and `--backend cpu` runs on machines without them.
        .target(name: "COpenCL", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "QTaleOpenCL", dependencies: ["QTaleCore", "QTaleKernels", "COpenCL"]),
        .target(name: "CVulkan", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "QTaleVulkan", dependencies: ["QTaleCore", "QTaleKernels", "CVulkan"]),

        // MARK: Model, engine registry and conformance catalog
        .target(name: "QTaleModel",
                dependencies: ["QTaleCore", "QTaleGGUF", "QTaleSafetensors", "QTaleTokenizer", "QTaleReference", "QTaleCPU",
                               "QTaleOpenCL", "QTaleVulkan"],
                swiftSettings: optimisedSwift),
        .target(name: "QTaleConformance", dependencies: ["QTaleCore", "QTaleReference", "QTaleTestSupport"]),
        .target(name: "QTaleTestSupport", dependencies: ["QTaleCore", "QTaleGGUF", "QTaleTokenizer"]),

        // MARK: Post-training quantization (RTN, GPTQ, Hessians; algorithms import QTaleCore only)
        .target(name: "QTaleQuantize", dependencies: ["QTaleCore", "QTaleModel"], swiftSettings: optimisedSwift),

        // MARK: Benchmark data and zero-shot evaluation
        // Readers of each multiple-choice dataset's native files and lm-evaluation-harness's prompt formats
        // (no model dependency, so router training can reuse them); the log-likelihood scorer on top.
        .target(name: "QTaleData", dependencies: ["QTaleCore"]),
        .target(name: "QTaleEval", dependencies: ["QTaleModel", "QTaleData", "QTaleCore"]),
        // Router training (method.md §1-2): data → examples, the training graph on a TrainingEngine, AdamW, checkpoints.
        .target(name: "QTaleTraining", dependencies: ["QTaleCore", "QTaleModel", "QTaleData", "QTaleTokenizer", "QTaleSafetensors"]),

        // MARK: Command-line tool
        .executableTarget(name: "qtale",
                          dependencies: ["QTaleModel", "QTaleConformance", "QTaleQuantize", "QTaleData", "QTaleEval", "QTaleTraining",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        // MARK: Tests
        .testTarget(name: "QTaleCoreTests", dependencies: ["QTaleCore", "QTaleGGUF", "QTaleSafetensors", "QTaleTestSupport"]),
        .testTarget(name: "QTaleTokenizerTests", dependencies: ["QTaleTokenizer"]),
        .testTarget(name: "QTaleEngineTests", dependencies: ["QTaleCore", "QTaleReference", "QTaleCPU", "QTaleConformance",
                                                             "QTaleModel", "QTaleKernels", "QTaleOpenCL", "QTaleVulkan"]),
        .testTarget(name: "QTaleModelTests", dependencies: ["QTaleModel", "QTaleGGUF", "QTaleSafetensors", "QTaleTokenizer", "QTaleTestSupport"],
                    resources: [.copy("Goldens"), .copy("Fixtures")]),
        .testTarget(name: "QTaleEvalTests", dependencies: ["QTaleData", "QTaleEval", "QTaleModel", "QTaleCore", "QTaleTestSupport"]),
        .testTarget(name: "QTaleQuantizeTests", dependencies: ["QTaleQuantize", "QTaleCore", "QTaleCPU", "QTaleReference",
                                                               "QTaleModel", "QTaleSafetensors", "QTaleTestSupport"]),
        .testTarget(name: "QTaleCLITests", dependencies: ["QTaleModel", "QTaleGGUF", "QTaleSafetensors", "QTaleTestSupport", "QTaleConformance"]),
        .testTarget(name: "QTaleTrainingTests", dependencies: ["QTaleCore", "QTaleReference", "QTaleCPU", "QTaleConformance", "QTaleTestSupport",
                                                               "QTaleTraining", "QTaleModel", "QTaleData"]),
    ],
    // Kernels share raw pointers with Dispatch workers by design; the Swift 6 data-race checker cannot
    // see that each worker writes a disjoint row range, so the package uses the Swift 5 language mode.
    swiftLanguageModes: [.v5]
)
