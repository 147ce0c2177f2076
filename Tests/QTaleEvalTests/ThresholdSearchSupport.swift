import Foundation
import QTaleCore
import QTaleData
import QTaleEval
import QTaleModel
import QTaleTestSupport

/// A six-block synthetic model with random routers on every block (none always on) and a handful of
/// questions, shared by the sweep and calibration tests.
enum ThresholdFixture {
    static let path: String = {
        var shape = SyntheticModel.Shape()
        shape.layers = 6
        return try! SyntheticModel.write(shape: shape, seed: 4711)
    }()

    static func model() throws -> LoadedModel {
        try LoadedModel(path: path, engine: EngineRegistry.make("cpu", threads: 2))
    }

    /// Routers with a narrow hidden layer: p_exec mostly lies between 0.7 and 0.95, so the ratio falls
    /// across the upper half of a θ grid.
    static func routers() throws -> RouterSet {
        try RouterSet.random(configuration: RouterConfiguration(hidden: 16, alwaysOnBlocks: 0, alwaysOnPositions: 1),
                             dModel: 64, layers: 6, seed: 9)
    }

    static let stems = ["The sun is hot and", "In the water there is", "Her cat likes to", "A tree grows", "The winter was",
                        "He opened the door and", "Birds fly over the", "The machine makes", "Rain falls on", "They ate the",
                        "A small stone in", "The teacher wrote"]
    static let options = [["bright", "cold as ice", "the", "green"], ["fish", "a tree", "the sea", "sand"],
                          ["eat", "er", "run fast", "sleep"], ["tall", "in the air", "slowly", "her"]]

    /// Questions with the given answers (index i gets `answers[i]`).
    static func questions(answers: [Int]) -> [MultipleChoiceQuestion] {
        answers.enumerated().map { i, answer in
            MultipleChoiceQuestion(id: "q\(i)", query: stems[i % stems.count], choices: options[i % options.count], answer: answer,
                                   location: "synthetic:\(i + 1)")
        }
    }

    /// Questions the dense model answers correctly (by acc), so its accuracy is 1 and any question that
    /// routing flips makes the accuracy fall.
    static func questionsDenseGetsRight(model: LoadedModel, count: Int = 12) throws -> [MultipleChoiceQuestion] {
        let evaluator = MultipleChoiceEvaluator(task: .arcEasy, model: model, session: try model.makeSession(contextLength: 128))
        let probe = try evaluator.run(questions(answers: [Int](repeating: 0, count: count)))
        return questions(answers: probe.outcomes.map(\.prediction))
    }
}

extension SweepPoint {
    /// A point with only the figures the search algorithms read.
    static func fake(_ θ: Double?, acc: Double, ratio: Double) -> SweepPoint {
        SweepPoint(threshold: θ.map { ($0 * 1e6).rounded() / 1e6 }, acc: acc, acc_norm: acc, execution_ratio: ratio)
    }
}
