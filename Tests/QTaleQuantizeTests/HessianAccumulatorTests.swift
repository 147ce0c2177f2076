import QTaleCore
import QTaleCPU
import QTaleQuantize
import XCTest

/// The Hessian through the CPU engine's `.linear` against a direct float64 `2/N · XᵀX`.
final class HessianAccumulatorTests: XCTestCase {
    func testHessianMatchesFloat64Reference() throws {
        var generator = SeededGenerator(seed: 30)
        for (columns, threads) in [(200, 2), (600, 3), (37, 1)] {
            let tokens = 1000
            var x = TestMatrices.gaussian(tokens * columns, &generator)
            for t in 0..<tokens { x[t * columns + 3] += 5 } // a channel with a large mean, as real activations have
            let reference = TestMatrices.hessian(x, tokens: tokens, columns: columns)
            let accumulator = try HessianAccumulator(columns: columns,
                                                     multiplier: EngineMatrixMultiplier(engine: CPUEngine(threads: threads)),
                                                     chunkTokens: 300)
            // Batches of uneven sizes cross chunk boundaries and leave a partial chunk.
            var t0 = 0
            for batch in [1, 77, 500, 422] {
                try x[(t0 * columns) ..< ((t0 + batch) * columns)].withUnsafeBufferPointer { try accumulator.add($0, tokens: batch) }
                t0 += batch
            }
            XCTAssertEqual(accumulator.tokenCount, tokens)
            let h = try accumulator.hessian()
            let scale = reference.map(abs).max()!
            var worst = 0.0
            for i in 0..<columns {
                for j in 0..<columns {
                    worst = max(worst, abs(h[i * columns + j] - reference[i * columns + j]))
                    XCTAssertEqual(h[i * columns + j], h[j * columns + i])
                }
            }
            XCTAssertLessThan(worst, 1e-5 * scale, "columns \(columns)")

            // Calling hessian() again adds nothing; reset forgets everything.
            XCTAssertEqual(try accumulator.hessian(), h)
            accumulator.reset()
            XCTAssertThrowsError(try accumulator.hessian())
        }
    }

    func testMismatchedBatchIsRejected() throws {
        let accumulator = try HessianAccumulator(columns: 8, multiplier: EngineMatrixMultiplier(engine: CPUEngine(threads: 1)))
        XCTAssertThrowsError(try accumulator.add([Float](repeating: 0, count: 10), tokens: 2))
    }
}
