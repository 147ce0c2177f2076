import QTaleData
import XCTest

/// The zero-shot prompts are lm-evaluation-harness's, character for character.
final class PromptFormatTests: XCTestCase {
    func question(context: String? = nil, query: String, choices: [String]) -> MultipleChoiceQuestion {
        MultipleChoiceQuestion(id: "q", context: context, query: query, choices: choices, answer: 0, location: "f:1")
    }

    func testFormats() {
        let arc = BenchmarkTask.arcEasy.prompts(for: question(query: "Which is a gas?", choices: ["ice", "steam"]))
        XCTAssertEqual(arc, [ChoicePrompt(context: "Question: Which is a gas?\nAnswer:", continuation: " ice", normalisationLength: 3),
                             ChoicePrompt(context: "Question: Which is a gas?\nAnswer:", continuation: " steam", normalisationLength: 5)])
        XCTAssertEqual(BenchmarkTask.arcChallenge.prompts(for: question(query: "Q", choices: ["a", "b"]))[0].context, "Question: Q\nAnswer:")
        let obqa = BenchmarkTask.openBookQA.prompts(for: question(query: "The sun is responsible for", choices: ["plants", "rain"]))
        XCTAssertEqual(obqa[1], ChoicePrompt(context: "The sun is responsible for", continuation: " rain", normalisationLength: 4))
        let siqa = BenchmarkTask.socialIQA.prompts(for: question(context: "Jan gave out jobs.", query: "What will Jan do?", choices: ["rest", "go"]))
        XCTAssertEqual(siqa[0].context, "Q: Jan gave out jobs. What will Jan do?\nA:")
        XCTAssertEqual(siqa[0].continuation, " rest")
        let piqa = BenchmarkTask.piqa.prompts(for: question(query: "Open a jar", choices: ["Twist.", "Eat."]))
        XCTAssertEqual(piqa[1], ChoicePrompt(context: "Question: Open a jar\nAnswer:", continuation: " Eat.", normalisationLength: 4))
        let boolq = BenchmarkTask.boolQ.prompts(for: question(context: "The sky is blue.", query: "is the sky blue", choices: ["no", "yes"]))
        XCTAssertEqual(boolq.map(\.context), Array(repeating: "The sky is blue.\nQuestion: is the sky blue?\nAnswer:", count: 2))
        XCTAssertEqual(boolq.map(\.continuation), [" no", " yes"])
        // acc_norm lengths count characters (Unicode scalars), as Python's len does, not UTF-8 bytes.
        XCTAssertEqual(BenchmarkTask.openBookQA.prompts(for: question(query: "q", choices: ["café", "x"]))[0].normalisationLength, 4)
    }

    func testWinoGrandePartialScoring() {
        let q = question(query: "Ian ate Dennis's menudo because _ despised eating  intestine. ", choices: ["Ian", "Dennis"])
        let prompts = BenchmarkTask.winoGrande.prompts(for: q)
        XCTAssertEqual(prompts.map(\.context), ["Ian ate Dennis's menudo because Ian", "Ian ate Dennis's menudo because Dennis"])
        XCTAssertEqual(prompts.map(\.continuation), [" despised eating  intestine.", " despised eating  intestine."])
        XCTAssertEqual(prompts.map(\.normalisationLength), [35, 38])
        // A blank at the very start: the context is the option alone.
        let start = BenchmarkTask.winoGrande.prompts(for: question(query: "_ went home.", choices: ["Ann", "Bo"]))
        XCTAssertEqual(start.map(\.context), ["Ann", "Bo"])
        XCTAssertEqual(start[0].continuation, " went home.")
    }
}
