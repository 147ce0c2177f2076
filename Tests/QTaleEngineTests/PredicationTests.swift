import Foundation
import QTaleConformance
import QTaleCore
import QTaleModel
import XCTest

/// Predicated regions (`encodePredicated`) on every engine: flags made on the engine gate the ops of a
/// region, and a clear flag leaves the region's outputs untouched.
final class PredicationTests: XCTestCase {
    func testCPUAndReferencePredicate() throws {
        for name in ["cpu", "reference"] {
            XCTAssertEqual(try PredicationCheck.failures(on: EngineRegistry.make(name, threads: 2)), [], name)
        }
    }

    func testOpenCLPredicatesInItsKernels() throws {
        XCTAssertEqual(try PredicationCheck.failures(on: GPUEngines.make("opencl")), [])
    }

    func testVulkanPredicatesWithConditionalRenderingAndWithout() throws {
        XCTAssertEqual(try PredicationCheck.failures(on: GPUEngines.make("vulkan")), [], "conditional rendering")
        // Devices without VK_EXT_conditional_rendering take the host-read fallback.
        setenv("QTALE_VULKAN_NO_CONDITIONAL", "1", 1)
        defer { unsetenv("QTALE_VULKAN_NO_CONDITIONAL") }
        XCTAssertEqual(try PredicationCheck.failures(on: GPUEngines.make("vulkan")), [], "host fallback")
    }
}
