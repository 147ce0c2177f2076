import Foundation
import QTaleConformance
import QTaleCore
import QTaleModel
import XCTest

/// The conformance catalog on the OpenCL and Vulkan engines. Where an engine is unavailable the test
/// skips with the reason, except in CI (CI=true), where PoCL and llvmpipe are installed and a skip
/// would hide a broken engine, so it fails.
final class GPUConformanceTests: XCTestCase {
    func testOpenCLMatchesTheReference() throws { try check("opencl") }
    func testVulkanMatchesTheReference() throws { try check("vulkan") }

    /// On PoCL the engine builds the CPU-device kernel variants; this builds the GPU variants there too
    /// (`QTALE_OPENCL_GPU_KERNELS=1`), so CI checks the kernels a GPU runs. Attention is left out: its
    /// GPU variant corrupts PoCL 3.1's heap ("malloc_consolidate(): invalid chunk size"), one reason
    /// attention.cl has a CPU-device variant.
    func testOpenCLGPUVariantsMatchTheReference() throws {
        setenv("QTALE_OPENCL_GPU_KERNELS", "1", 1)
        defer { unsetenv("QTALE_OPENCL_GPU_KERNELS") }
        try check("opencl", cases: ConformanceCatalog.all.filter { $0.op != "attention" })
    }

    /// On CPU devices 4-bit decode matmuls dot the codes with the input split into two int16 terms
    /// (Kernels/opencl/matmul.cl). Their results must differ from the float32 path's, which a build
    /// with `-DQTALE_SPLIT_MAX_K=32` takes for every row longer than 32, so the split is what ran.
    func testOpenCLCPUDecodeRunsTheInt16Split() throws {
        let split = try GPUEngines.make("opencl")
        guard split.deviceDescription.contains("(CPU, ") else {
            throw XCTSkip("the int16 split runs on CPU devices; this OpenCL device is \(split.deviceDescription)")
        }
        setenv("QTALE_OPENCL_OPTIONS", "-DQTALE_SPLIT_MAX_K=32", 1)
        defer { unsetenv("QTALE_OPENCL_OPTIONS") }
        let float = try GPUEngines.make("opencl")
        var cases = 0
        for testCase in ConformanceCatalog.all where testCase.op == "matmul" && testCase.parameters.hasPrefix("w4")
            && testCase.parameters.contains("T=1 ") && !testCase.parameters.contains("K=16416") {
            let a = try ConformanceRunner.run(testCase, on: split), b = try ConformanceRunner.run(testCase, on: float)
            XCTAssertTrue(a.passed && b.passed, "\(a.description) / \(b.description)")
            XCTAssertNotEqual(a.nmse, b.nmse, "\(testCase): the split and float32 paths gave the same output")
            cases += 1
        }
        XCTAssertGreaterThanOrEqual(cases, 20)
        print("opencl: \(cases) 4-bit decode cases ran the int16 split")
    }

    /// The same for Vulkan (`QTALE_VULKAN_GPU_KERNELS=1`): on llvmpipe the engine gives each matmul
    /// invocation eight rows and each attention invocation a query of a prefill, on a GPU one row and a
    /// share of one query's keys; this runs the GPU's choices on llvmpipe.
    func testVulkanGPUVariantsMatchTheReference() throws {
        setenv("QTALE_VULKAN_GPU_KERNELS", "1", 1)
        defer { unsetenv("QTALE_VULKAN_GPU_KERNELS") }
        try check("vulkan", cases: ConformanceCatalog.all.filter { $0.op == "matmul" || $0.op == "attention" })
    }

    private func check(_ name: String, cases: [ConformanceCase] = ConformanceCatalog.all,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        let engine = try GPUEngines.make(name, file: file, line: line)
        var failures = 0
        for testCase in cases {
            let result = try ConformanceRunner.run(testCase, on: engine)
            if !result.passed { failures += 1 }
            XCTAssertTrue(result.passed, result.description, file: file, line: line)
        }
        print("\(name): \(cases.count - failures)/\(cases.count) conformance cases pass")
    }
}

/// Creates a GPU engine for a test, or skips (fails in CI) with the reason it cannot run here.
enum GPUEngines {
    static func make(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> any ComputeEngine {
        let entry = try XCTUnwrap(EngineRegistry.entries.first { $0.name == name })
        let probe = entry.probe()
        guard probe.isAvailable else {
            let reason = "\(name) engine unavailable: \(probe.unavailableReason ?? "no device")"
            if ProcessInfo.processInfo.environment["CI"] == "true" {
                XCTFail("\(reason) (CI installs PoCL and Mesa's llvmpipe, so this must run)", file: file, line: line)
            }
            throw XCTSkip(reason)
        }
        return try EngineRegistry.make(name, threads: 2)
    }
}
