import QTaleCore
import QTaleCPU
import XCTest

/// Every training case on the CPU engine against the float64 reference, with 1 and 3 threads
/// (3 threads on 2 cores also exercises the scheduler's ordering of training ops and ``Op``s).
final class CPUBackwardTests: XCTestCase {
    func testEveryTrainingOpMatchesTheReferenceWithOneThread() throws {
        try check(CPUEngine(threads: 1))
    }

    func testEveryTrainingOpMatchesTheReferenceWithThreeThreads() throws {
        try check(CPUEngine(threads: 3))
    }

    private func check(_ engine: CPUEngine, file: StaticString = #filePath, line: UInt = #line) throws {
        var worstPerOp: [String: Double] = [:]
        let cases = TrainingCatalog.all
        XCTAssertGreaterThan(cases.count, 50, file: file, line: line)
        for testCase in cases {
            let result = try TrainingCaseRunner.run(testCase, on: engine)
            XCTAssertTrue(result.failures.isEmpty, "\(testCase): \(result.failures.joined(separator: "; "))", file: file, line: line)
            let op = String(testCase.name.prefix { $0 != "(" })
            worstPerOp[op] = max(worstPerOp[op] ?? 0, result.nmse)
        }
        for (op, nmse) in worstPerOp.sorted(by: { $0.key < $1.key }) {
            print(String(format: "cpu (%d threads) %@: worst NMSE %.2e", engine.threads, op, nmse))
        }
    }
}
