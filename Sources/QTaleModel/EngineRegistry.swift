import QTaleCore
import QTaleCPU
import QTaleReference

/// The engines this build can create, chosen by name at run time.
///
/// Each engine registers one entry here; the model code never names an engine.
public enum EngineRegistry {
    public struct Entry: Sendable {
        public let name: String
        public let summary: String
        public let make: @Sendable (_ threads: Int) throws -> any ComputeEngine
    }

    public static let entries: [Entry] = [
        Entry(name: "cpu", summary: "Swift SIMD kernels with Dispatch threads") { try CPUEngine(threads: $0) },
        Entry(name: "reference", summary: "float64 scalar reference (the specification; slow)") { _ in ReferenceEngine() },
    ]

    public static var names: [String] { entries.map(\.name) }

    public static func make(_ name: String, threads: Int) throws -> any ComputeEngine {
        guard let entry = entries.first(where: { $0.name == name }) else {
            throw QTaleError.invalidArgument("unknown backend '\(name)'; available: \(names.joined(separator: ", "))")
        }
        return try entry.make(threads)
    }
}
