import QTaleCore

/// The post-training quantization methods (method.md §3-5).
public enum QuantizationMethod: String, CaseIterable, Codable, Sendable {
    /// Round-to-nearest on each group's min/max grid.
    case rtn
    /// Activation-aware scaling folded into the previous op, clipping search, then RTN.
    case awq
    /// Hessian-based error feedback column by column.
    case gptq
    /// MagR's ℓ∞ magnitude reduction, then GPTQ.
    case magrGPTQ = "magr-gptq"

    public var needsCalibration: Bool { self != .rtn }
}

/// What `qtale quantize` does, recorded in the output file's `qtale.quantization` metadata.
public struct QuantizationSettings: Codable, Sendable {
    public var method: QuantizationMethod
    public var bits: Int
    public var groupSize: Int
    /// GPTQ: quantize columns in descending Hessian-diagonal order, with static groups.
    public var actOrder = false
    /// Calibration sequences and their length in tokens.
    public var calibrationSamples = 128
    public var calibrationLength = 512
    /// Tokens per linear that AWQ's clipping search scores (the reference uses 512).
    public var clipSearchTokens = 512
    public var seed: UInt64 = 0
    /// The calibration text's path, for provenance.
    public var calibrationFile: String?

    public init(method: QuantizationMethod, bits: Int, groupSize: Int) {
        self.method = method
        self.bits = bits
        self.groupSize = groupSize
    }

    public func format() throws -> QuantizationFormat {
        guard [3, 4, 8].contains(bits) else { throw QTaleError.invalidArgument("quantization to \(bits) bits is not supported (use 4 or 3)") }
        return try QuantizationFormat(bits: bits, groupSize: groupSize)
    }
}

/// What a quantization run produced and how long it took.
public struct QuantizationReport: Codable, Sendable {
    public var settings: QuantizationSettings
    public var input: String
    public var calibrationTokens: Int
    public var seconds: Double
    public var secondsPerBlock: [Double]
    /// Per block and linear: the relative output error ‖(W − Ŵ)X‖² / ‖WX‖² on calibration inputs where
    /// the method measured it (GPTQ's and MagR's Hessian-weighted error), else absent.
    public var relativeErrors: [String: Double]
}
