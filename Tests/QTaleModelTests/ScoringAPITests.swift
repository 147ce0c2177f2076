import Foundation
import QTaleCore
import QTaleModel
import QTaleTestSupport
import XCTest

/// The scoring half of the model API: logits for every position, context mark/rewind, single-block
/// probes and perplexity, each against a straightforward recomputation with the generation API.
final class ScoringAPITests: XCTestCase {
    static let path = try! SyntheticModel.write(shape: SyntheticModel.Shape(), seed: 5)
    let tokens: [Int32] = [1, 259, 44, 75, 90, 3, 120, 200, 261, 17, 5, 66, 70, 8, 140]

    func load() throws -> LoadedModel { try LoadedModel(path: Self.path, engine: EngineRegistry.make("cpu", threads: 2)) }

    func testAllLogitsEqualTheLastLogitsOfEachPrefix() throws {
        let model = try load()
        let vocabulary = model.configuration.vocabSize
        // maxBatch 4 makes the pass split into chunks, and the logits buffer is read in chunks too.
        let all = try model.makeSession(maxBatch: 4).forwardAllLogits(tokens)
        XCTAssertEqual(all.count, tokens.count * vocabulary)
        for n in 1...tokens.count {
            let last = try model.makeSession().forward(Array(tokens[0..<n]))
            let row = Array(all[(n - 1) * vocabulary ..< n * vocabulary])
            let error = zip(row, last).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(error, 1e-4, "prefix \(n)")
        }
    }

    func testRewindForgetsExactlyTheTokensAfterTheMark() throws {
        for policy: ExecutionPolicy in [.dense, .forcedRatio(0.5, RouterConfiguration(alwaysOnBlocks: 0, alwaysOnPositions: 1))] {
            let model = try load()
            let session = try model.makeSession(policy: policy)
            _ = try session.forward(Array(tokens[0..<6]))
            let mark = session.mark()
            let kvAtMark = session.kvCacheBytes
            _ = try session.forward([33, 34, 35, 36, 37])
            try session.rewind(to: mark)
            XCTAssertEqual(session.position, 6)
            XCTAssertEqual(session.kvCacheBytes, kvAtMark)
            let continued = try session.forward(Array(tokens[6...]))
            let fresh = try model.makeSession(policy: policy).forward(tokens)
            XCTAssertLessThan(zip(continued, fresh).map { abs($0 - $1) }.max()!, 1e-4, "\(policy)")
            XCTAssertThrowsError(try model.makeSession().rewind(to: mark), "a mark past the context must be refused")
        }
    }

    func testProbingEveryBlockReproducesTheForwardPass() throws {
        let model = try load()
        let c = model.configuration
        let session = try model.makeSession(maxBatch: 32)
        var hidden = try session.embed(tokens)
        var observed: [BlockProbePoint: Int] = [:]
        for l in 0..<c.nLayers {
            hidden = try session.probeBlock(l, weights: model.weights.blocks[l], hidden: hidden) { point, view in
                observed[point, default: 0] += 1
                XCTAssertEqual(view.rows, self.tokens.count)
            }
        }
        XCTAssertEqual(Set(observed.keys), Set(BlockProbePoint.allCases))
        // Final norm and head on the host, in float64, from the probed last hidden state.
        let last = Array(hidden[(tokens.count - 1) * c.dModel ..< tokens.count * c.dModel])
        let normWeight = try model.source.tensor(.outputNorm).floats()
        let head = try model.source.tensor(.tokenEmbedding).floats()
        let meanSquare = last.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(c.dModel)
        let scale = 1 / (meanSquare + Double(c.normEpsilon)).squareRoot()
        let normed = (0..<c.dModel).map { Double(last[$0]) * scale * Double(normWeight[$0]) }
        let expected = (0..<c.vocabSize).map { v in (0..<c.dModel).reduce(0.0) { $0 + normed[$1] * Double(head[v * c.dModel + $1]) } }
        let logits = try model.makeSession().forward(tokens)
        let error = zip(logits, expected).map { abs(Double($0) - $1) }.max()!
        XCTAssertLessThan(error, 1e-3)
    }

    func testPerplexityFollowsItsProtocol() throws {
        let model = try load()
        let session = try model.makeSession(contextLength: 5, maxBatch: 5)
        let windows = Perplexity.windows(of: tokens, contextLength: 5)
        XCTAssertEqual(windows.count, 3)   // 15 tokens: three windows, no tail
        XCTAssertEqual(Perplexity.windows(of: tokens, contextLength: 4, limit: 2).count, 2)
        let result = try Perplexity.evaluate(session: session, windows: windows, model: "synthetic", text: "-")
        // Independent: each scored token from the last logits of its own prefix inside the window.
        var total = 0.0
        for window in windows {
            let w = Array(window)
            for t in 1..<w.count {
                let logits = try model.makeSession().forward(Array(w[0..<t])).map(Double.init)
                let m = logits.max()!
                total += log(logits.reduce(0) { $0 + exp($1 - m) }) + m - logits[Int(w[t])]
            }
        }
        XCTAssertEqual(result.scoredTokens, 12)
        XCTAssertEqual(result.negativeLogLikelihood, total / 12, accuracy: 1e-4)
        XCTAssertEqual(result.perplexity, exp(total / 12), accuracy: 1e-3 * result.perplexity)
        XCTAssertThrowsError(try Perplexity.evaluate(session: session, windows: [], model: "m", text: "t"))
    }
}
