import ArgumentParser
import Foundation
import QTaleConformance
import QTaleCore

/// The conformance suite as a command, so an engine can be checked on a machine that has its driver but
/// no Swift toolchain (a GPU host, a new accelerator's board) with the same cases the tests run.
struct Conformance: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check an engine op by op against the float64 reference (the conformance suite).",
        discussion: """
            Runs every case of the catalog the test suite runs: seeded random inputs, awkward shapes, guard \
            regions around outputs, NaN/Inf checks and an NMSE bound per op (cpu-int8 states looser bounds for \
            its 4-bit decode matmuls). Prints one line per op (and each failing case) and exits with status 1 \
            if any case fails.
            """)

    @OptionGroup var selection: EngineSelection

    @Option(parsing: .upToNextOption, help: "Run only these ops (e.g. --ops matmul attention).")
    var ops: [String] = []

    @Option(help: "Write every case's result as JSON to this file.")
    var json: String?

    struct Row: Encodable {
        let op: String
        let parameters: String
        let nmse: Double
        let maxAbsoluteError: Double
        let maxNMSE: Double
        let passed: Bool
        let failures: [String]
    }

    func validate() throws {
        let known = Set(ConformanceCatalog.all.map(\.op))
        if let unknown = ops.first(where: { !known.contains($0) }) {
            throw ValidationError("unknown op '\(unknown)'; the catalog has: \(known.sorted().joined(separator: ", "))")
        }
    }

    func run() throws {
        let engine = try selection.makeEngine()
        let cases = ConformanceCatalog.all.filter { ops.isEmpty || ops.contains($0.op) }
        Console.out("engine \(engine.name) (\(engine.deviceDescription))\n")
        let progress = ProgressBar("conformance", total: cases.count, unit: "cases")
        var rows: [Row] = []
        for (done, testCase) in cases.enumerated() {
            let r = try ConformanceRunner.run(testCase, on: engine)
            rows.append(Row(op: testCase.op, parameters: testCase.parameters, nmse: r.nmse, maxAbsoluteError: r.maxAbsoluteError,
                            maxNMSE: r.maxNMSE, passed: r.passed, failures: r.failures))
            if !r.passed { Console.out("\(r)\n") }
            progress.update(done + 1)
        }
        Console.out("op              cases  failed   worst NMSE   bound\n")
        var opOrder: [String] = []
        for row in rows where !opOrder.contains(row.op) { opOrder.append(row.op) }
        for op in opOrder {
            let mine = rows.filter { $0.op == op }
            Console.out(String(format: "%@ %5d  %6d  %11.2e  %7.0e\n", op.padding(toLength: 15, withPad: " ", startingAt: 0), mine.count,
                               mine.filter { !$0.passed }.count, mine.map(\.nmse).max() ?? 0, mine.map(\.maxNMSE).max() ?? 0))
        }
        let failed = rows.filter { !$0.passed }.count
        Console.out("\(rows.count - failed)/\(rows.count) cases pass on \(engine.name)\n")
        if let json { try Console.writeJSON(rows, to: json) }
        if failed > 0 { throw ExitCode(1) }
    }
}
