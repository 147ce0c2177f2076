import Foundation
import QTaleCore
import QTaleGGUF
import QTaleModel
import QTaleSafetensors
import QTaleTestSupport
import XCTest

/// Token-adaptive layer execution on the synthetic model: equivalences with the dense model and with a
/// model whose block is removed, KV eviction against an independent float64 recomputation with masks,
/// compaction, and router-file validation.
final class LayerSkipTests: XCTestCase {
    static let shape: SyntheticModel.Shape = {
        var s = SyntheticModel.Shape()
        s.layers = 4
        return s
    }()
    static let path = try! SyntheticModel.write(shape: shape, seed: 21)
    let prompt: [Int32] = [1, 259, 44, 75, 90, 3, 120, 200, 261, 17, 5, 66, 70]

    func load(_ backend: String = "cpu", path: String = LayerSkipTests.path) throws -> LoadedModel {
        try LoadedModel(path: path, engine: EngineRegistry.make(backend, threads: 2))
    }

    func nmse(_ a: [Float], _ b: [Float]) -> Double {
        var e = 0.0, r = 0.0
        for (x, y) in zip(a, b) { e += Double(x - y) * Double(x - y); r += Double(y) * Double(y) }
        return e / r
    }

    func testExecutingEveryBlockEqualsTheDenseModel() throws {
        let model = try load()
        let dense = try model.makeSession().forward(prompt)
        let forced = try model.makeSession(policy: .forcedRatio(1, RouterConfiguration())).forward(prompt)
        XCTAssertEqual(forced, dense, "all blocks executing must be bit-identical to dense")
        // Routers at θ = 0 execute everything too (p_exec > 0), while running the router ops.
        let routers = try RouterSet.random(configuration: RouterConfiguration(hidden: 16), dModel: 64, layers: 4, seed: 3)
        let session = try model.makeSession(policy: .routed(routers, threshold: 0))
        XCTAssertEqual(try session.forward(prompt), dense)
        XCTAssertEqual(session.telemetry.executionRatio, 1)
        XCTAssertGreaterThan(session.telemetry.routerFLOPs, 0)
    }

    func testSkippingABlockForEveryTokenEqualsRemovingIt() throws {
        // The same weights without block 2: blocks 3 → 2.
        var writer = SyntheticModel.writer(shape: Self.shape, seed: 21)
        writer.tensors.removeAll { $0.name.hasPrefix("blk.2.") }
        for i in writer.tensors.indices where writer.tensors[i].name.hasPrefix("blk.3.") {
            writer.tensors[i].name = "blk.2." + writer.tensors[i].name.dropFirst("blk.3.".count)
        }
        for i in writer.metadata.indices where writer.metadata[i].0 == "llama.block_count" { writer.metadata[i].1 = .uint32(3) }
        let removedPath = TemporaryFiles.path("synthetic-without-block-2.gguf")
        try writer.write(to: removedPath)

        let skipped = try load().makeSession(policy: .skipBlocks([2]))
        let removed = try load(path: removedPath).makeSession()
        XCTAssertEqual(try skipped.forward(prompt), try removed.forward(prompt))
        var a = [Float](repeating: 0, count: 265), b = a
        for token: Int32 in [9, 99, 199] {
            try a.withUnsafeMutableBufferPointer { try skipped.forward(token: token, into: $0) }
            try b.withUnsafeMutableBufferPointer { try removed.forward(token: token, into: $0) }
            XCTAssertEqual(a, b)
        }
        XCTAssertEqual(skipped.telemetry.executedPerBlock[2], 0)
        XCTAssertEqual(skipped.kvCacheBytes * 3, removed.kvCacheBytes * 3)
    }

    /// Compacted prefill, and decode over an evicted cache, against recomputing the whole sequence with
    /// attention masks built from the decisions (float64, straight from the GGUF weights).
    func testKVEvictionMatchesMaskedRecomputation() throws {
        let model = try load()
        let configuration = RouterConfiguration(alwaysOnBlocks: 1, alwaysOnPositions: 2)
        let policy = ExecutionPolicy.forcedRatio(0.6, configuration)
        let session = try model.makeSession(policy: policy)
        session.recordsExecutionMap = true
        let prefill = try session.forward(Array(prompt.prefix(9)))
        var decoded = [Float](repeating: 0, count: 265)
        for token in prompt.dropFirst(9) {
            try decoded.withUnsafeMutableBufferPointer { try session.forward(token: token, into: $0) }
        }
        let decisions = session.telemetry.map.map { $0.map { $0 == "1" } }
        XCTAssertEqual(decisions.count, prompt.count)
        let skippedPairs = decisions.flatMap { $0 }.filter { !$0 }.count
        XCTAssertGreaterThan(skippedPairs, 5, "the pattern must skip something")
        XCTAssertTrue(decisions.prefix(2).allSatisfy { $0.allSatisfy { $0 } }, "always-on positions")
        XCTAssertTrue(decisions.allSatisfy { $0[0] }, "always-on block")

        let reference = try MaskedReference(path: Self.path)
        XCTAssertLessThan(nmse(prefill, reference.logits(tokens: Array(prompt.prefix(9)), decisions: Array(decisions.prefix(9)))), 1e-10)
        XCTAssertLessThan(nmse(decoded, reference.logits(tokens: prompt, decisions: decisions)), 1e-10)
        // The cache holds only executing tokens.
        let entries = decisions.flatMap { $0 }.filter { $0 }.count
        XCTAssertEqual(session.kvCacheBytes, entries * 2 * 2 * 16 * 4)
    }

    func testCompactedPrefillEqualsTokenByTokenDecode() throws {
        let model = try load()
        let policy = ExecutionPolicy.forcedRatio(0.5, RouterConfiguration(alwaysOnBlocks: 1, alwaysOnPositions: 1))
        let compacted = try model.makeSession(policy: policy).forward(prompt)
        let stepwise = try model.makeSession(policy: policy)
        var last: [Float] = []
        for token in prompt { last = try stepwise.forward([token]) }
        XCTAssertLessThan(nmse(compacted, last), 1e-10)
    }

    /// The same routing decisions, execution map, tokens and KV bytes on every engine (GPU engines where
    /// available; in CI, where PoCL and llvmpipe are installed, an unavailable engine fails the test),
    /// with decode decisions made on the host and on the engine.
    func testRoutedDecisionsAndTokensAgreeOnEveryEngineAndDecisionSite() throws {
        // Random routers: p_exec ≈ sigmoid(1.9 + noise); θ near the middle of that range skips some.
        let routers = try RouterSet.random(configuration: RouterConfiguration(hidden: 32, alwaysOnBlocks: 1, alwaysOnPositions: 2),
                                           dModel: 64, layers: 4, seed: 5)
        struct Run: Equatable { let map: [String], tokens: [Int32], kvBytes: Int, executed: [Int] }
        var runs: [(name: String, run: Run)] = []
        var backends = ["cpu", "reference"]
        for gpu in ["opencl", "vulkan"] {
            let probe = EngineRegistry.entries.first { $0.name == gpu }!.probe()
            if probe.isAvailable { backends.append(gpu) }
            else if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail("\(gpu) unavailable in CI: \(probe)") }
        }
        for backend in backends {
            let model = try load(backend)
            for site in RouterDecisionSite.allCases {
                let session = try model.makeSession(policy: .routed(routers, threshold: 0.87))
                session.recordsExecutionMap = true
                session.routerDecisions = site
                var out: [Int32] = []
                _ = try TextGenerator(model: model, session: session).generate(
                    prompt: prompt, maxTokens: 10, sampling: SamplingParameters(temperature: 0), stopAtEndOfGeneration: false,
                    onToken: { out.append($0) }, onText: { _ in })
                let t = session.telemetry
                runs.append(("\(backend)/\(site)", Run(map: t.map, tokens: out, kvBytes: t.kvCacheBytes, executed: t.executedPerBlock)))
                XCTAssertGreaterThan(t.executionRatio, 0.3)
                XCTAssertTrue(t.map.suffix(9).joined().contains("0"), "θ must make some decode steps skip")
            }
        }
        for (name, run) in runs.dropFirst() { XCTAssertEqual(run, runs[0].run, "\(name) differs from \(runs[0].name)") }
    }

    /// Decode with decisions made on the engine (reserved K/V slots given back when a token skips)
    /// against recomputing the sequence with attention masks built from those decisions.
    func testDeviceDecidedDecodeMatchesMaskedRecomputation() throws {
        let routers = try RouterSet.random(configuration: RouterConfiguration(hidden: 32, alwaysOnBlocks: 1, alwaysOnPositions: 2),
                                           dModel: 64, layers: 4, seed: 5)
        let session = try load().makeSession(policy: .routed(routers, threshold: 0.87))
        session.recordsExecutionMap = true
        session.routerDecisions = .device
        _ = try session.forward(Array(prompt.prefix(4)))
        var decoded = [Float](repeating: 0, count: 265)
        for token in prompt.dropFirst(4) {
            try decoded.withUnsafeMutableBufferPointer { try session.forward(token: token, into: $0) }
        }
        let decisions = session.telemetry.map.map { $0.map { $0 == "1" } }
        XCTAssertGreaterThan(decisions.dropFirst(4).flatMap { $0 }.filter { !$0 }.count, 3, "decode must skip something")
        let reference = try MaskedReference(path: Self.path)
        XCTAssertLessThan(nmse(decoded, reference.logits(tokens: prompt, decisions: decisions)), 1e-10)
        XCTAssertEqual(session.kvCacheBytes, decisions.flatMap { $0 }.filter { $0 }.count * 2 * 2 * 16 * 4)
    }

    func testBadRouterFilesAreRejected() throws {
        let good = try RouterSet.random(configuration: RouterConfiguration(hidden: 8), dModel: 64, layers: 4, seed: 1)
        let path = TemporaryFiles.path("routers-good.safetensors")
        try good.save(to: path)
        XCTAssertEqual(try RouterSet.load(path: path, dModel: 64, layers: 4), good)
        XCTAssertThrowsError(try RouterSet.load(path: path, dModel: 64, layers: 5)) {
            XCTAssertTrue("\($0)".contains("for 4 blocks; the model has 5"), "\($0)")
        }
        XCTAssertThrowsError(try RouterSet.load(path: path, dModel: 96, layers: 4)) {
            XCTAssertTrue("\($0)".contains("d_model 64"), "\($0)")
        }
        var withNaN = good
        withNaN.routers[3]!.w2[5] = .nan
        try withNaN.save(to: TemporaryFiles.path("routers-nan.safetensors"))
        XCTAssertThrowsError(try RouterSet.load(path: TemporaryFiles.path("routers-nan.safetensors"), dModel: 64, layers: 4)) {
            XCTAssertTrue("\($0)".contains("router.3.w2") && "\($0)".contains("non-finite"), "\($0)")
        }
        var wrongShape = good
        wrongShape.routers[2]!.b1 = [1, 2, 3]
        XCTAssertThrowsError(try RouterSet.load(path: { () -> String in
            var w = SafetensorsRouterWriter(set: wrongShape)
            return try! w.write()
        }(), dModel: 64, layers: 4)) {
            XCTAssertTrue("\($0)".contains("router.2.b1") && "\($0)".contains("shape"), "\($0)")
        }
        XCTAssertThrowsError(try RouterSet.load(path: Self.path, dModel: 64, layers: 4), "a GGUF is not a router file")
    }
}

/// Writes a router set whose tensors may have inconsistent shapes (to test validation).
struct SafetensorsRouterWriter {
    let set: RouterSet
    mutating func write() throws -> String {
        let path = TemporaryFiles.path("routers-\(UUID().uuidString.prefix(6)).safetensors")
        var w = SafetensorsWriter()
        for (l, r) in set.routers.enumerated() {
            guard let r else { continue }
            w.add("router.\(l).w1", floats: r.w1, shape: [set.configuration.hidden, set.dModel])
            w.add("router.\(l).b1", floats: r.b1, shape: [r.b1.count])
            w.add("router.\(l).norm", floats: r.norm, shape: [r.norm.count])
            w.add("router.\(l).w2", floats: r.w2, shape: [2, set.configuration.hidden])
            w.add("router.\(l).b2", floats: r.b2, shape: [2])
        }
        let c = set.configuration
        w.metadata = ["qtale.routers.hidden": "\(c.hidden)", "qtale.routers.always_on_blocks": "\(c.alwaysOnBlocks)",
                      "qtale.routers.always_on_positions": "\(c.alwaysOnPositions)", "qtale.routers.layers": "\(set.layers)",
                      "qtale.routers.d_model": "\(set.dModel)"]
        try w.write(to: path)
        return path
    }
}
