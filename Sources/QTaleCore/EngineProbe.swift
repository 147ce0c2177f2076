/// What an engine found on this machine without creating anything: for `qtale backends` and for
/// tests that must know whether an engine can run here.
public struct EngineProbe: Sendable, CustomStringConvertible {
    /// Devices the engine can use, in `--device` order (e.g. "Portable Computing Language: cpu-haswell-...").
    public var devices: [String]
    /// API and driver versions in words.
    public var version: String
    /// Why the engine cannot run here (nil when it can).
    public var unavailableReason: String?

    public init(devices: [String], version: String, unavailableReason: String? = nil) {
        self.devices = devices
        self.version = version
        self.unavailableReason = unavailableReason
    }

    public static func unavailable(_ reason: String) -> EngineProbe {
        EngineProbe(devices: [], version: "", unavailableReason: reason)
    }

    public var isAvailable: Bool { unavailableReason == nil && !devices.isEmpty }

    public var description: String {
        if let unavailableReason { return "unavailable: \(unavailableReason)" }
        return "\(version); " + devices.enumerated().map { "device \($0.offset): \($0.element)" }.joined(separator: "; ")
    }
}
