import QTaleCore
import QTaleReference

/// The outcome of one case on one engine.
public struct ConformanceResult: CustomStringConvertible {
    public let testCase: ConformanceCase
    public let engine: String
    public let nmse: Double
    public let maxAbsoluteError: Double
    /// The bound applied: the case's, or the engine's stated one (``StatedTolerance``).
    public let maxNMSE: Double
    /// Empty when the case passed.
    public let failures: [String]

    public var passed: Bool { failures.isEmpty }

    public var description: String {
        let status = passed ? "ok  " : "FAIL"
        let detail = failures.isEmpty ? "" : " — " + failures.joined(separator: "; ")
        return "\(status) \(engine) \(testCase): NMSE \(nmse.formatted3) max|Δ| \(maxAbsoluteError.formatted3)\(detail)"
    }
}

/// Runs conformance cases on an engine against the float64 reference.
public enum ConformanceRunner {
    public static func run(_ testCase: ConformanceCase, on engine: any ComputeEngine, seed: UInt64 = 42) throws -> ConformanceResult {
        let reference = ReferenceEngine()
        let expected = try outputs(of: testCase, on: reference, seed: seed)
        let actual = try outputs(of: testCase, on: engine, seed: seed)
        var failures: [String] = []
        var squaredError = 0.0, squaredReference = 0.0, maxError = 0.0
        for (out, (want, got)) in zip(expected, actual).enumerated() {
            let g = CaseBuilder.guardFloats
            let guardBroken = (0..<g).contains { got[$0].bitPattern != CaseBuilder.sentinel.bitPattern }
                || (got.count - g ..< got.count).contains { got[$0].bitPattern != CaseBuilder.sentinel.bitPattern }
            if guardBroken { failures.append("output \(out) wrote outside its view (guard region changed)") }
            for i in g ..< got.count - g {
                let (a, b) = (Double(got[i]), Double(want[i]))
                if want[i].bitPattern == CaseBuilder.sentinel.bitPattern {
                    // A gap between strided rows: must stay untouched.
                    if got[i].bitPattern != want[i].bitPattern { failures.append("output \(out) wrote into a row gap at \(i - g)") }
                    continue
                }
                if b.isNaN || a.isNaN {
                    failures.append("NaN at \(i - g) (reference \(b), engine \(a))")
                    break
                }
                if b.isInfinite || a.isInfinite {
                    if a != b { failures.append("Inf mismatch at \(i - g): reference \(b), engine \(a)") }
                    continue
                }
                squaredError += (a - b) * (a - b)
                squaredReference += b * b
                maxError = max(maxError, abs(a - b))
            }
        }
        let nmse = squaredReference > 0 ? squaredError / squaredReference : squaredError
        let bound = StatedTolerance.maxNMSE(for: testCase, engine: engine.name) ?? testCase.maxNMSE
        if nmse > bound { failures.append("NMSE \(nmse.formatted3) > \(bound.formatted3)") }
        return ConformanceResult(testCase: testCase, engine: engine.name, nmse: nmse, maxAbsoluteError: maxError,
                                 maxNMSE: bound, failures: Array(failures.prefix(3)))
    }

    /// Builds the case on `engine`, runs it and returns each output buffer whole (guards included).
    static func outputs(of testCase: ConformanceCase, on engine: any ComputeEngine, seed: UInt64) throws -> [[Float]] {
        var builder = CaseBuilder(engine: engine, seed: seed)
        let op = try testCase.build(&builder)
        try engine.run(op)
        try engine.synchronize()
        return try builder.outputs.map { out in
            var values = [Float](repeating: 0, count: out.totalFloats)
            try values.withUnsafeMutableBytes { try engine.read(out.view.buffer, byteOffset: 0, into: $0) }
            return values
        }
    }
}

extension Double {
    var formatted3: String {
        if self == 0 { return "0" }
        let exponent = Int((Swift.abs(self)).log10Floor)
        let mantissa = self / pow10(exponent)
        return "\((mantissa * 100).rounded() / 100)e\(exponent)"
    }
    private var log10Floor: Double {
        var e = 0.0, v = self
        while v >= 10 { v /= 10; e += 1 }
        while v < 1 { v *= 10; e -= 1 }
        return e
    }
    private func pow10(_ e: Int) -> Double { e >= 0 ? (0..<e).reduce(1.0) { r, _ in r * 10 } : 1 / pow10(-e) }
}
