#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import QTaleCore

/// Settings for choosing the next token.
public struct SamplingParameters: Sendable, Equatable, Codable {
    /// 0 means greedy (argmax).
    public var temperature: Float = 0
    /// Keep only the `topK` most likely tokens; 0 keeps all.
    public var topK: Int = 40
    /// Keep the smallest set of tokens whose probability reaches `topP`; 1 keeps all.
    public var topP: Float = 0.95
    public var seed: UInt64 = 0

    public init(temperature: Float = 0, topK: Int = 40, topP: Float = 0.95, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public func validated() throws -> SamplingParameters {
        guard temperature >= 0, temperature.isFinite, temperature <= 100 else {
            throw QTaleError.invalidArgument("--temperature must be between 0 and 100, got \(temperature)")
        }
        guard topK >= 0 else { throw QTaleError.invalidArgument("--top-k must be ≥ 0, got \(topK)") }
        guard topP > 0, topP <= 1 else { throw QTaleError.invalidArgument("--top-p must be in (0, 1], got \(topP)") }
        return self
    }
}

/// Greedy, or temperature + top-k + top-p sampling. Buffers are allocated once, so sampling a token
/// does not allocate.
public struct Sampler {
    public let parameters: SamplingParameters
    private var generator: SeededGenerator
    private var candidates: [(id: Int32, logit: Float)]

    public init(parameters: SamplingParameters, vocabularySize: Int) {
        self.parameters = parameters
        generator = SeededGenerator(seed: parameters.seed)
        candidates = []
        candidates.reserveCapacity(vocabularySize)
    }

    /// The index of the largest logit (the first one on ties).
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0
        for i in 1..<logits.count where logits[i] > logits[best] { best = i }
        return Int32(best)
    }

    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        guard parameters.temperature > 0 else { return Self.argmax(logits) }
        candidates.removeAll(keepingCapacity: true)
        let k = parameters.topK == 0 ? logits.count : min(parameters.topK, logits.count)
        if k == logits.count {
            for i in 0..<logits.count { candidates.append((Int32(i), logits[i])) }
            candidates.sort { $0.logit > $1.logit }
        } else {
            // Keep the k best in a sorted array: insertion is cheap because k is small.
            for i in 0..<logits.count {
                let logit = logits[i]
                if candidates.count == k, logit <= candidates[k - 1].logit { continue }
                var j = candidates.count < k ? candidates.count : k - 1
                if candidates.count < k { candidates.append((Int32(i), logit)) }
                while j > 0 && candidates[j - 1].logit < logit {
                    candidates[j] = candidates[j - 1]
                    j -= 1
                }
                candidates[j] = (Int32(i), logit)
            }
        }
        // Softmax over the survivors, then the nucleus.
        let maxLogit = candidates[0].logit
        var total: Float = 0
        for i in candidates.indices {
            let p = expf((candidates[i].logit - maxLogit) / parameters.temperature)
            candidates[i].logit = p
            total += p
        }
        var kept = candidates.count, mass: Float = 0
        for i in candidates.indices {
            mass += candidates[i].logit / total
            if mass >= parameters.topP { kept = i + 1; break }
        }
        let keptMass = candidates[0..<kept].reduce(Float(0)) { $0 + $1.logit }
        var r = Float(Double(generator.next() >> 11) / Double(1 << 53)) * keptMass
        for i in 0..<kept {
            r -= candidates[i].logit
            if r <= 0 { return candidates[i].id }
        }
        return candidates[kept - 1].id
    }
}
