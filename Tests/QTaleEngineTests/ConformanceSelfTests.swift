import QTaleConformance
import QTaleCore
import QTaleReference
import XCTest

/// The conformance runner must catch broken engines: wrong values, writes outside a view, NaN.
final class ConformanceSelfTests: XCTestCase {
    /// A reference engine with one deliberate defect.
    final class BrokenEngine: ComputeEngine {
        enum Defect { case perturbMatmul, overrunOutput, nanNorm }
        let inner = ReferenceEngine()
        let defect: Defect
        init(_ defect: Defect) { self.defect = defect }
        var name: String { "broken" }
        var deviceDescription: String { "test double" }
        func allocate(byteCount: Int) throws -> DeviceBuffer {
            DeviceBuffer(handle: try inner.store.allocate(byteCount: byteCount), byteCount: byteCount, engine: self)
        }
        func release(_ handle: BufferHandle) { inner.store.release(handle) }
        func write(_ bytes: UnsafeRawBufferPointer, to buffer: BufferHandle, byteOffset: Int) throws {
            try inner.write(bytes, to: buffer, byteOffset: byteOffset)
        }
        func read(_ buffer: BufferHandle, byteOffset: Int, into bytes: UnsafeMutableRawBufferPointer) throws {
            try inner.read(buffer, byteOffset: byteOffset, into: bytes)
        }
        func synchronize() throws {}
        func encode(_ op: Op) throws {
            try inner.encode(op)
            switch (defect, op) {
            case let (.perturbMatmul, .matmul(_, _, output, _)):
                inner.store.pointer(output, as: Float.self)[0] += 0.05
            case let (.overrunOutput, .matmul(_, _, output, _)):
                inner.store.pointer(output, as: Float.self)[output.rows * output.rowStride] = 0
            case let (.nanNorm, .rmsNorm(_, _, _, output)):
                inner.store.pointer(output, as: Float.self)[1] = .nan
            default: break
            }
        }
    }

    func testRunnerCatchesEachDefect() throws {
        let matmul = ConformanceCatalog.all.first { $0.op == "matmul" }!
        let norm = ConformanceCatalog.all.first { $0.op == "rms_norm" }!
        XCTAssertTrue(try ConformanceRunner.run(matmul, on: ReferenceEngine()).passed)
        let perturbed = try ConformanceRunner.run(matmul, on: BrokenEngine(.perturbMatmul))
        XCTAssertFalse(perturbed.passed)
        XCTAssertTrue(perturbed.description.contains("NMSE"), perturbed.description)
        let overrun = try ConformanceRunner.run(matmul, on: BrokenEngine(.overrunOutput))
        XCTAssertTrue(overrun.failures.contains { $0.contains("guard") }, overrun.description)
        let nan = try ConformanceRunner.run(norm, on: BrokenEngine(.nanNorm))
        XCTAssertTrue(nan.failures.contains { $0.contains("NaN") }, nan.description)
    }
}
