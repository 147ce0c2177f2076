import Foundation
import QTaleCore
import QTaleCPU
import QTaleQuantize
import XCTest

/// Throughput of the CPU engine's dense `.linear` on calibration shapes. A measurement, not a check:
/// runs only with `QTALE_BENCH_LINEAR=1` and prints GFLOP/s.
final class LinearThroughputTests: XCTestCase {
    func testLinearThroughput() throws {
        guard ProcessInfo.processInfo.environment["QTALE_BENCH_LINEAR"] == "1" else {
            throw XCTSkip("set QTALE_BENCH_LINEAR=1 to measure .linear throughput")
        }
        let threads = Int(ProcessInfo.processInfo.environment["QTALE_BENCH_THREADS"] ?? "2") ?? 2
        let engine = try CPUEngine(threads: threads)
        let multiplier = EngineMatrixMultiplier(engine: engine)
        for (m, n, k) in [(576, 1536, 8192), (1536, 1536, 2048), (576, 576, 4096), (64, 512, 576)] {
            var generator = SystemRandomNumberGenerator()
            let a = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &generator) }
            let b = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &generator) }
            var out = [Float](repeating: 0, count: m * n)
            var best = Double.infinity
            for _ in 0..<3 {
                let start = DispatchTime.now().uptimeNanoseconds
                try a.withUnsafeBufferPointer { a in
                    try b.withUnsafeBufferPointer { b in
                        try out.withUnsafeMutableBufferPointer { out in
                            try multiplier.multiplyTransposed(a, rows: m, b, rows: n, inner: k, into: out)
                        }
                    }
                }
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            let gflops = 2.0 * Double(m) * Double(n) * Double(k) / best / 1e9
            print("linear [\(m)×\(k)]·[\(n)×\(k)]ᵀ, \(threads) threads: \(String(format: "%.3f", best)) s, \(String(format: "%.1f", gflops)) GFLOP/s")
        }
    }

    /// Hessian accumulation at SmolLM2 calibration scale (columns 576 and 1536, 16384 tokens in 512-token batches).
    func testHessianThroughput() throws {
        guard ProcessInfo.processInfo.environment["QTALE_BENCH_LINEAR"] == "1" else {
            throw XCTSkip("set QTALE_BENCH_LINEAR=1 to measure Hessian accumulation")
        }
        let threads = Int(ProcessInfo.processInfo.environment["QTALE_BENCH_THREADS"] ?? "2") ?? 2
        let multiplier = EngineMatrixMultiplier(engine: try CPUEngine(threads: threads))
        for columns in [576, 1536] {
            var generator = SystemRandomNumberGenerator()
            let batch = (0..<(512 * columns)).map { _ in Float.random(in: -1...1, using: &generator) }
            let accumulator = try HessianAccumulator(columns: columns, multiplier: multiplier)
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<32 { try accumulator.add(batch, tokens: 512) }
            _ = try accumulator.hessian()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            print("Hessian \(columns) columns, 16384 tokens, \(threads) threads: \(String(format: "%.3f", seconds)) s")
        }
    }
}
