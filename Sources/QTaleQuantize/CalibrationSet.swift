import QTaleCore

/// Calibration sequences for quantizers: `count` windows of `length` tokens taken at seeded random
/// offsets of a tokenized text, as GPTQ's reference samples wikitext-2 and AWQ's samples pile-val.
public struct CalibrationSet: Sendable {
    public let sequences: [[Int32]]
    public let length: Int

    public init(tokens: [Int32], count: Int, length: Int, seed: UInt64) throws {
        guard count >= 1 && count <= 1 << 16 else { throw QTaleError.invalidArgument("--calib-samples must be between 1 and 65536, got \(count)") }
        guard length >= 2 && length <= 1 << 16 else { throw QTaleError.invalidArgument("--calib-len must be between 2 and 65536, got \(length)") }
        guard tokens.count >= length else {
            throw QTaleError.invalidArgument("the calibration text has \(tokens.count) tokens, fewer than one window of --calib-len \(length)")
        }
        var rng = SeededGenerator(seed: seed)
        let span = UInt64(tokens.count - length + 1)
        sequences = (0..<count).map { _ in
            let start = Int(rng.next() % span)
            return Array(tokens[start ..< start + length])
        }
        self.length = length
    }

    public var tokenCount: Int { sequences.count * length }
}
