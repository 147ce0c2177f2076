import QTaleConformance
import QTaleCore
import QTaleCPU
import XCTest

/// Every op of the catalog on the CPU engine against the float64 reference, with 1 and 3 threads
/// (3 threads on 2 cores also exercises the scheduler when workers share a core).
final class CPUConformanceTests: XCTestCase {
    func testEveryOpMatchesTheReferenceWithOneThread() throws {
        try check(CPUEngine(threads: 1))
    }

    func testEveryOpMatchesTheReferenceWithThreeThreads() throws {
        try check(CPUEngine(threads: 3))
    }

    private func check(_ engine: CPUEngine, file: StaticString = #filePath, line: UInt = #line) throws {
        let cases = ConformanceCatalog.all
        XCTAssertGreaterThan(cases.count, 60, file: file, line: line)
        for testCase in cases {
            let result = try ConformanceRunner.run(testCase, on: engine)
            XCTAssertTrue(result.passed, result.description, file: file, line: line)
        }
    }
}
