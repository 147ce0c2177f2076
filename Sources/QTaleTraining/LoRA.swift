import Foundation
import QTaleCore
import QTaleModel
import QTaleSafetensors

/// The projections LoRA adapts (D-LLM: q, k and v of every block; method.md §1).
public enum LoRATarget: String, CaseIterable, Sendable, Codable {
    case q, k, v

    /// The base linear this adapter adds to.
    public var kind: LinearKind {
        switch self {
        case .q: .query
        case .k: .key
        case .v: .value
        }
    }
}

/// LoRA's hyper-parameters: `y = W·x + (α/r)·B·(A·dropout(x))`.
public struct LoRAConfiguration: Sendable, Equatable, Codable {
    /// r, the rank of `B·A`.
    public var rank: Int
    /// α; the update is scaled by α/r (α = r: scale 1, D-LLM's recipe).
    public var alpha: Double
    /// The dropout probability on the adapter's input (training only; 0.05 in D-LLM).
    public var dropout: Double

    public init(rank: Int, alpha: Double? = nil, dropout: Double = 0.05) {
        self.rank = rank
        self.alpha = alpha ?? Double(rank)
        self.dropout = dropout
    }

    /// α/r.
    public var scale: Double { alpha / Double(rank) }

    public func validate() throws {
        guard rank >= 1 && rank <= 4096 else { throw QTaleError.invalidArgument("--lora-rank must be between 1 and 4096, got \(rank)") }
        guard alpha.isFinite && alpha > 0 else { throw QTaleError.invalidArgument("--lora-alpha must be > 0, got \(alpha)") }
        guard dropout.isFinite && dropout >= 0 && dropout < 1 else {
            throw QTaleError.invalidArgument("--lora-dropout must be in [0, 1), got \(dropout)")
        }
    }
}

/// One adapter: `A [rank × columns]`, `B [rows × rank]`, row-major float32, for a base linear
/// `W [rows × columns]` (rows = output channels).
public struct LoRAAdapter: Sendable, Equatable {
    public var a: [Float]
    public var b: [Float]
    public let rows: Int
    public let columns: Int

    public init(a: [Float], b: [Float], rows: Int, columns: Int) {
        self.a = a
        self.b = b
        self.rows = rows
        self.columns = columns
    }

    /// `scale·B·A`, `[rows × columns]` row-major, accumulated in float64.
    public func delta(rank r: Int, scale: Double) -> [Float] {
        var out = [Float](repeating: 0, count: rows * columns)
        var row = [Double](repeating: 0, count: columns)
        for i in 0..<rows {
            for j in 0..<columns { row[j] = 0 }
            for k in 0..<r {
                let bik = Double(b[i * r + k])
                if bik == 0 { continue }
                let base = k * columns
                for j in 0..<columns { row[j] += bik * Double(a[base + j]) }
            }
            for j in 0..<columns { out[i * columns + j] = Float(scale * row[j]) }
        }
        return out
    }
}

/// LoRA adapters on q, k and v of every block of a model.
///
/// File format (safetensors, next to the routers in the file `qtale train-routers` writes): tensors
/// `lora.<block>.<q|k|v>.a` F32 `[rank, in]` and `lora.<block>.<q|k|v>.b` F32 `[out, rank]`, and metadata
/// `qtale.lora.{rank, alpha, dropout, layers, d_model, targets}` (targets = `q,k,v`). Rows of q and k are in
/// qtale's (GGUF) order, adjacent RoPE pairs, the order of the in-memory weights the adapters were trained on.
public struct LoRASet: Sendable, Equatable {
    public var configuration: LoRAConfiguration
    public var layers: Int
    public var dModel: Int
    /// `[block][target]`, targets in ``LoRATarget/allCases`` order.
    public var adapters: [[LoRAAdapter]]

    /// PEFT's initialisation (D-LLM's recipe): `A ~ N(0, σ = 1/r)` (PEFT's `init_lora_weights="gaussian"`),
    /// `B = 0`, so training starts from the base model. Seeded.
    public static func random(configuration: LoRAConfiguration, model c: LlamaConfiguration, seed: UInt64) throws -> LoRASet {
        try configuration.validate()
        var rng = SeededGenerator(seed: seed ^ 0x10A4_10A4_10A4_10A4)
        func normal() -> Float {
            let u1 = max(Double(rng.next() >> 11) / Double(1 << 53), 1e-300), u2 = Double(rng.next() >> 11) / Double(1 << 53)
            return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
        }
        let r = configuration.rank, sigma = 1 / Float(r)
        let adapters = (0..<c.nLayers).map { _ in
            LoRATarget.allCases.map { target -> LoRAAdapter in
                let shape = target.kind.shape(in: c)
                return LoRAAdapter(a: (0 ..< r * shape.columns).map { _ in normal() * sigma },
                                   b: [Float](repeating: 0, count: shape.rows * r), rows: shape.rows, columns: shape.columns)
            }
        }
        return LoRASet(configuration: configuration, layers: c.nLayers, dModel: c.dModel, adapters: adapters)
    }

    /// All parameters, block by block, target by target, `A` then `B`.
    public func flatten() -> [Float] {
        var out: [Float] = []
        for block in adapters { for a in block { out += a.a; out += a.b } }
        return out
    }

    public var parameterCount: Int { adapters.reduce(0) { $0 + $1.reduce(0) { $0 + $1.a.count + $1.b.count } } }

    public func unflatten(_ values: ArraySlice<Float>) -> LoRASet {
        var out = self
        var i = values.startIndex
        func take(_ n: Int) -> [Float] { defer { i += n }; return Array(values[i ..< i + n]) }
        for l in out.adapters.indices {
            for t in out.adapters[l].indices {
                out.adapters[l][t].a = take(out.adapters[l][t].a.count)
                out.adapters[l][t].b = take(out.adapters[l][t].b.count)
            }
        }
        precondition(i == values.endIndex, "LoRA vector length mismatch")
        return out
    }

    /// Adds the adapters and their metadata to a file being written.
    public func add(to w: inout SafetensorsWriter) {
        let c = configuration
        w.metadata.merge(["qtale.lora.rank": "\(c.rank)", "qtale.lora.alpha": "\(c.alpha)", "qtale.lora.dropout": "\(c.dropout)",
                          "qtale.lora.layers": "\(layers)", "qtale.lora.d_model": "\(dModel)",
                          "qtale.lora.targets": LoRATarget.allCases.map(\.rawValue).joined(separator: ",")]) { $1 }
        for (l, block) in adapters.enumerated() {
            for (target, a) in zip(LoRATarget.allCases, block) {
                w.add("lora.\(l).\(target.rawValue).a", floats: a.a, shape: [c.rank, a.columns])
                w.add("lora.\(l).\(target.rawValue).b", floats: a.b, shape: [a.rows, c.rank])
            }
        }
    }

    /// Whether `file` holds LoRA adapters.
    public static func present(in file: SafetensorsFile) -> Bool { file.metadata["qtale.lora.rank"] != nil }

    /// Reads the adapters stored in `file` for a model of configuration `c`, rejecting ones that do not fit it.
    public static func read(from file: SafetensorsFile, model c: LlamaConfiguration) throws -> LoRASet {
        let path = file.file.path
        func meta(_ key: String) throws -> String {
            guard let text = file.metadata["qtale.lora.\(key)"] else {
                throw QTaleError.invalidModel("'\(path)' lacks metadata 'qtale.lora.\(key)' (was it trained with --lora-rank > 0?)")
            }
            return text
        }
        guard let rank = Int(try meta("rank")), let alpha = Double(try meta("alpha")), let dropout = Double(try meta("dropout")),
              let layers = Int(try meta("layers")), let dModel = Int(try meta("d_model")) else {
            throw QTaleError.invalidModel("'\(path)': malformed qtale.lora metadata")
        }
        let targets = try meta("targets")
        guard targets == LoRATarget.allCases.map(\.rawValue).joined(separator: ",") else {
            throw QTaleError.invalidModel("'\(path)': LoRA targets '\(targets)' are not supported (q,k,v)")
        }
        guard layers == c.nLayers, dModel == c.dModel else {
            throw QTaleError.invalidModel("'\(path)': LoRA adapters are for \(layers) blocks of d_model \(dModel); the model has \(c.nLayers) of \(c.dModel)")
        }
        let configuration = LoRAConfiguration(rank: rank, alpha: alpha, dropout: dropout)
        do { try configuration.validate() } catch { throw QTaleError.invalidModel("'\(path)': \(error)") }
        let adapters = try (0..<layers).map { l in
            try LoRATarget.allCases.map { target -> LoRAAdapter in
                let shape = target.kind.shape(in: c)
                func load(_ part: String, _ expected: [Int]) throws -> [Float] {
                    let name = "lora.\(l).\(target.rawValue).\(part)"
                    let t = try file.tensor(name)
                    guard t.shape == expected else {
                        throw QTaleError.invalidModel("'\(path)': LoRA tensor '\(name)' has shape \(t.shape), expected \(expected)")
                    }
                    let v = try file.floats(t)
                    if let bad = v.firstIndex(where: { !$0.isFinite }) {
                        throw QTaleError.invalidModel("'\(path)': LoRA tensor '\(name)' holds a non-finite value at index \(bad)")
                    }
                    return v
                }
                return LoRAAdapter(a: try load("a", [rank, shape.columns]), b: try load("b", [shape.rows, rank]),
                                   rows: shape.rows, columns: shape.columns)
            }
        }
        return LoRASet(configuration: configuration, layers: layers, dModel: dModel, adapters: adapters)
    }

    /// The adapters in the file at `path`, or `nil` when it holds none.
    public static func load(path: String, model c: LlamaConfiguration) throws -> LoRASet? {
        let file = try SafetensorsFile(path: path)
        guard present(in: file) else { return nil }
        return try read(from: file, model: c)
    }
}

/// Folds LoRA adapters into a model: `W' = W + (α/r)·B·A` for q, k and v of every block (method.md §1:
/// LoRA is merged before inference; §2(c): quantization runs on the merged model).
public enum LoRAMerge {
    /// The merged tensor of `role`: every decoder linear as float32 (packed ones dequantized exactly),
    /// q, k, v with the adapter added; norms, embedding and output head as the source holds them.
    ///
    /// No row permutation is needed: qtale's model sources deliver q and k rows in GGUF order (adjacent
    /// RoPE pairs; Hugging Face checkpoints are permuted on import), the same order as the in-memory
    /// weights the adapters were trained on, and qtale's model files store that order too.
    public static func tensor(_ role: TensorRole, source: any ModelSource, lora: LoRASet) throws -> HostTensor {
        let t = try source.tensor(role)
        guard case let .linear(block, kind) = role else { return t }
        var values = t.floats()
        if let target = LoRATarget.allCases.first(where: { $0.kind == kind }) {
            let adapter = lora.adapters[block][LoRATarget.allCases.firstIndex(of: target)!]
            guard adapter.rows == t.rows, adapter.columns == t.columns else {
                throw QTaleError.invalidModel("LoRA adapter of '\(role)' is \(adapter.rows)×\(adapter.columns); the weight is \(t.rows)×\(t.columns)")
            }
            let delta = adapter.delta(rank: lora.configuration.rank, scale: lora.configuration.scale)
            for i in values.indices { values[i] += delta[i] }
        }
        return .float(values, rows: t.rows, columns: t.columns)
    }

    /// Writes the merged model as a qtale model file (float linears, ``QTaleModelFile``) with `routers`
    /// embedded, so `qtale quantize` accepts it and `qtale generate` runs it routed by default.
    public static func write(source: any ModelSource, lora: LoRASet, routers: RouterSet?, to path: String) throws {
        let c = source.configuration
        guard lora.layers == c.nLayers, lora.dModel == c.dModel else {
            throw QTaleError.invalidArgument("LoRA adapters are for \(lora.layers) blocks of d_model \(lora.dModel); the model has \(c.nLayers) of \(c.dModel)")
        }
        try QTaleModelFile.write(to: path, configuration: c, vocabulary: source.vocabulary(), routers: routers, quantization: nil) { role in
            try tensor(role, source: source, lora: lora)
        }
    }
}
