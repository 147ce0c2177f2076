import ArgumentParser
import Foundation
import QTaleEval

/// The θ values to measure: an explicit list, or an even grid inside (0, 1).
struct ThresholdGridOptions: ParsableArguments {
    @Option(parsing: .upToNextOption, help: "Thresholds θ to measure, each in [0, 1), e.g. --thresholds 0.5 0.7 0.9.")
    var thresholds: [Float] = []

    @Option(help: "N evenly spaced thresholds i/(N+1), i = 1...N (default 19: 0.05, 0.10, ..., 0.95).")
    var grid: Int?

    func validate() throws {
        guard thresholds.isEmpty || grid == nil else { throw ValidationError("use only one of --thresholds and --grid") }
        if let grid { guard grid >= 1 && grid <= 10_000 else { throw ValidationError("--grid must be between 1 and 10000") } }
        if let bad = thresholds.first(where: { !($0 >= 0 && $0 < 1) }) {
            throw ValidationError("--thresholds: \(bad) is outside [0, 1)")
        }
    }

    /// The thresholds, ascending.
    func values() throws -> [Float] {
        try ThresholdGrid.validated(thresholds.isEmpty ? ThresholdGrid.even(count: grid ?? 19) : thresholds)
    }
}
