import QTaleCore
import QTaleCPU
import QTaleQuantize
import XCTest

/// The CPU engine's packed dense `.linear` on calibration-sized and ragged shapes, against float64.
/// (The conformance catalog covers the few-token path the routers use.)
final class LinearKernelTests: XCTestCase {
    func testPackedLinearMatchesFloat64() throws {
        var generator = SeededGenerator(seed: 40)
        // Tails in every dimension: tokens not a multiple of 6 or of the 96-row block, outputs not a multiple
        // of 32 or of the 512-column block, inner sizes around the 256-element block.
        let shapes = [(16, 16, 1), (17, 33, 5), (97, 70, 300), (6 * 16, 32 * 3, 256), (203, 517, 1030), (40, 1100, 64)]
        for threads in [1, 3] {
            let engine = try CPUEngine(threads: threads)
            for (m, n, k) in shapes {
                for withBias in [false, true] {
                    let a = TestMatrices.gaussian(m * k, &generator), b = TestMatrices.gaussian(n * k, &generator)
                    let bias = TestMatrices.gaussian(n, &generator)
                    let input = try engine.makeBuffer(a), weight = try engine.makeBuffer(b), biasBuffer = try engine.makeBuffer(bias)
                    let output = try engine.allocate(byteCount: m * n * 4)
                    try engine.run(.linear(input: input.view(.float32, rows: m, columns: k),
                                           weight: weight.view(.float32, rows: n, columns: k),
                                           bias: withBias ? biasBuffer.view(.float32, rows: 1, columns: n) : nil,
                                           output: output.view(.float32, rows: m, columns: n)))
                    let out = try engine.readFloats(output.view(.float32, rows: m, columns: n))
                    var worst = 0.0
                    for i in 0..<m {
                        for j in 0..<n {
                            var s = withBias ? Double(bias[j]) : 0
                            for l in 0..<k { s += Double(a[i * k + l]) * Double(b[j * k + l]) }
                            worst = max(worst, abs(s - Double(out[i * n + j])) / (Double(k).squareRoot() + 1))
                        }
                    }
                    XCTAssertLessThan(worst, 2e-5, "[\(m)×\(k)]·[\(n)×\(k)]ᵀ bias \(withBias), \(threads) threads")
                }
            }
        }
    }

    /// A strided output view (columns of a wider matrix) is written only where the view is.
    func testPackedLinearWritesOnlyItsView() throws {
        var generator = SeededGenerator(seed: 41)
        let engine = try CPUEngine(threads: 2)
        let m = 20, n = 40, k = 24, wide = 50
        let a = TestMatrices.gaussian(m * k, &generator), b = TestMatrices.gaussian(n * k, &generator)
        let input = try engine.makeBuffer(a), weight = try engine.makeBuffer(b)
        let output = try engine.makeBuffer([Float](repeating: 7, count: m * wide))
        let view = TensorView(buffer: output.handle, type: .float32, rows: m, columns: n, rowStride: wide, byteOffset: 4 * 5)
        try engine.run(.linear(input: input.view(.float32, rows: m, columns: k), weight: weight.view(.float32, rows: n, columns: k),
                               bias: nil, output: view))
        let out = try engine.readFloats(output.view(.float32, rows: m, columns: wide))
        for i in 0..<m {
            for j in 0..<wide {
                if j < 5 || j >= 5 + n {
                    XCTAssertEqual(out[i * wide + j], 7)
                } else {
                    var s = 0.0
                    for l in 0..<k { s += Double(a[i * k + l]) * Double(b[(j - 5) * k + l]) }
                    XCTAssertEqual(Double(out[i * wide + j]), s, accuracy: 1e-4)
                }
            }
        }
    }
}
