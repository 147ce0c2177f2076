import Foundation
import QTaleCore
import QTaleSafetensors

/// How token-adaptive execution is configured (method.md §1): which blocks and positions always run,
/// and the router's hidden width.
public struct RouterConfiguration: Sendable, Equatable, Codable {
    /// Router hidden width `h` (Linear d→h, RMSNorm(h), SiLU, Linear h→2).
    public var hidden: Int = 512
    /// Blocks `0 ..< alwaysOnBlocks` run for every token and have no router.
    public var alwaysOnBlocks: Int = 2
    /// Positions `0 ..< alwaysOnPositions` run every block (attention sink: every query keeps a key).
    public var alwaysOnPositions: Int = 2
    /// Free-form training provenance (recipe, data, target ratio, ...), stored as JSON text.
    public var provenance: String = "{}"

    public init(hidden: Int = 512, alwaysOnBlocks: Int = 2, alwaysOnPositions: Int = 2, provenance: String = "{}") {
        self.hidden = hidden
        self.alwaysOnBlocks = alwaysOnBlocks
        self.alwaysOnPositions = alwaysOnPositions
        self.provenance = provenance
    }
}

/// One block's router in float32, host side. Shapes: `w1 [hidden × dModel]`, `b1 [hidden]`,
/// `norm [hidden]`, `w2 [2 × hidden]` (row 0 = skip, row 1 = execute), `b2 [2]`.
public struct RouterParameters: Sendable, Equatable {
    public var w1: [Float], b1: [Float], norm: [Float], w2: [Float], b2: [Float]

    public init(w1: [Float], b1: [Float], norm: [Float], w2: [Float], b2: [Float]) {
        self.w1 = w1
        self.b1 = b1
        self.norm = norm
        self.w2 = w2
        self.b2 = b2
    }
}

/// The routers of a model: one per block from ``RouterConfiguration/alwaysOnBlocks`` on.
///
/// File format (safetensors): tensors `router.<block>.{w1,b1,norm,w2,b2}` in float32 and metadata
/// `qtale.routers.{hidden,always_on_blocks,always_on_positions,layers,d_model,provenance}`.
public struct RouterSet: Sendable, Equatable {
    public var configuration: RouterConfiguration
    public var dModel: Int
    public var layers: Int
    /// Indexed by block; `nil` for always-on blocks.
    public var routers: [RouterParameters?]

    static let parts = ["w1", "b1", "norm", "w2", "b2"]

    /// Routers initialised as D-LLM does: uniform(±1/sqrt(fan_in)) linears, unit norm weight, and the
    /// second bias at [0.1, 2.0] so that p_exec = sigmoid(1.9) ≈ 0.87 at the start.
    public static func random(configuration: RouterConfiguration, dModel: Int, layers: Int, seed: UInt64) throws -> RouterSet {
        try validate(configuration, dModel: dModel, layers: layers)
        var rng = SeededGenerator(seed: seed)
        func uniform(_ count: Int, bound: Float) -> [Float] {
            (0..<count).map { _ in Float(Double(rng.next() >> 11) / Double(1 << 53)) * 2 * bound - bound }
        }
        let h = configuration.hidden
        let routers: [RouterParameters?] = (0..<layers).map { l in
            guard l >= configuration.alwaysOnBlocks else { return nil }
            let bound1 = 1 / Float(dModel).squareRoot(), bound2 = 1 / Float(h).squareRoot()
            return RouterParameters(w1: uniform(h * dModel, bound: bound1), b1: uniform(h, bound: bound1),
                                    norm: [Float](repeating: 1, count: h), w2: uniform(2 * h, bound: bound2), b2: [0.1, 2.0])
        }
        return RouterSet(configuration: configuration, dModel: dModel, layers: layers, routers: routers)
    }

    static func validate(_ c: RouterConfiguration, dModel: Int, layers: Int) throws {
        guard c.hidden >= 1 && c.hidden <= 65536 else { throw QTaleError.invalidArgument("router hidden size \(c.hidden) is out of range") }
        guard c.alwaysOnBlocks >= 0 && c.alwaysOnBlocks <= layers else {
            throw QTaleError.invalidArgument("always-on blocks \(c.alwaysOnBlocks) must be between 0 and the model's \(layers) blocks")
        }
        guard c.alwaysOnPositions >= 0 && c.alwaysOnPositions <= 1 << 20 else {
            throw QTaleError.invalidArgument("always-on positions \(c.alwaysOnPositions) is out of range")
        }
    }

    /// Loads routers for a model of `dModel` channels and `layers` blocks, rejecting files that do not fit it.
    public static func load(path: String, dModel: Int, layers: Int) throws -> RouterSet {
        try read(from: SafetensorsFile(path: path), dModel: dModel, layers: layers)
    }

    /// Whether `file` holds routers (a router file, or a qtale model file with routers).
    static func present(in file: SafetensorsFile) -> Bool { file.metadata["qtale.routers.hidden"] != nil }

    /// Reads the routers stored in `file`, alone or next to a model's tensors.
    public static func read(from file: SafetensorsFile, dModel: Int, layers: Int) throws -> RouterSet {
        let path = file.file.path
        func meta(_ key: String) throws -> Int {
            guard let text = file.metadata["qtale.routers.\(key)"], let value = Int(text) else {
                throw QTaleError.invalidModel("router file '\(path)' lacks metadata 'qtale.routers.\(key)' (is it a qtale router file?)")
            }
            return value
        }
        let configuration = RouterConfiguration(hidden: try meta("hidden"), alwaysOnBlocks: try meta("always_on_blocks"),
                                                alwaysOnPositions: try meta("always_on_positions"),
                                                provenance: file.metadata["qtale.routers.provenance"] ?? "{}")
        let fileLayers = try meta("layers"), fileDModel = try meta("d_model")
        guard fileLayers == layers else {
            throw QTaleError.invalidModel("router file '\(path)' is for \(fileLayers) blocks; the model has \(layers)")
        }
        guard fileDModel == dModel else {
            throw QTaleError.invalidModel("router file '\(path)' is for d_model \(fileDModel); the model has \(dModel)")
        }
        try validate(configuration, dModel: dModel, layers: layers)
        let h = configuration.hidden
        let shapes: [String: [Int]] = ["w1": [h, dModel], "b1": [h], "norm": [h], "w2": [2, h], "b2": [2]]
        var routers: [RouterParameters?] = []
        for l in 0..<layers {
            guard l >= configuration.alwaysOnBlocks else { routers.append(nil); continue }
            var values: [String: [Float]] = [:]
            for part in parts {
                let name = "router.\(l).\(part)"
                let t = try file.tensor(name)
                guard t.shape == shapes[part]! else {
                    throw QTaleError.invalidModel("router tensor '\(name)' has shape \(t.shape), expected \(shapes[part]!)")
                }
                let v = try file.floats(t)
                if let bad = v.firstIndex(where: { !$0.isFinite }) {
                    throw QTaleError.invalidModel("router tensor '\(name)' holds a non-finite value (\(v[bad])) at index \(bad)")
                }
                values[part] = v
            }
            routers.append(RouterParameters(w1: values["w1"]!, b1: values["b1"]!, norm: values["norm"]!,
                                            w2: values["w2"]!, b2: values["b2"]!))
        }
        if let extra = file.tensors.keys.first(where: { name in
            name.hasPrefix("router.") && !(configuration.alwaysOnBlocks..<layers).contains { l in parts.contains { "router.\(l).\($0)" == name } }
        }) {
            throw QTaleError.invalidModel("router file '\(path)' has an unexpected tensor '\(extra)' (wrong layer count or always-on blocks?)")
        }
        return RouterSet(configuration: configuration, dModel: dModel, layers: layers, routers: routers)
    }

    /// Writes the routers atomically.
    public func save(to path: String) throws {
        var w = SafetensorsWriter()
        add(to: &w)
        try w.write(to: path)
    }

    /// Adds the router tensors and metadata to a file being written (a router file or a model file).
    public func add(to w: inout SafetensorsWriter) {
        let c = configuration
        w.metadata.merge(["qtale.routers.hidden": "\(c.hidden)", "qtale.routers.always_on_blocks": "\(c.alwaysOnBlocks)",
                      "qtale.routers.always_on_positions": "\(c.alwaysOnPositions)", "qtale.routers.layers": "\(layers)",
                      "qtale.routers.d_model": "\(dModel)", "qtale.routers.provenance": c.provenance]) { $1 }
        for (l, router) in routers.enumerated() {
            guard let router else { continue }
            w.add("router.\(l).w1", floats: router.w1, shape: [c.hidden, dModel])
            w.add("router.\(l).b1", floats: router.b1, shape: [c.hidden])
            w.add("router.\(l).norm", floats: router.norm, shape: [c.hidden])
            w.add("router.\(l).w2", floats: router.w2, shape: [2, c.hidden])
            w.add("router.\(l).b2", floats: router.b2, shape: [2])
        }
    }
}
