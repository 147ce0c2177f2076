import Foundation
import QTaleCore
import QTaleData
import QTaleTestSupport
import XCTest

/// Every dataset reader on small inline fixtures in the official formats, on the real files under
/// ../shared/data where present (counts as their SOURCES.md states), and on malformed input, which must
/// raise an error naming the file, the line and the problem.
final class DataReaderTests: XCTestCase {
    /// Writes `text` to a fresh file named `name` in its own folder and returns the path.
    func fixture(_ name: String, _ text: String, folder: String? = nil) throws -> String {
        let directory = folder ?? TemporaryFiles.path("data-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Asserts that `body` throws an error whose message contains every fragment.
    func assertError(_ fragments: String..., file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            let message = "\(error)"
            for fragment in fragments {
                XCTAssertTrue(message.contains(fragment), "'\(message)' does not mention '\(fragment)'", file: file, line: line)
            }
        }
    }

    // MARK: ARC and OpenBookQA

    let arc = """
        {"id":"Q1","question":{"stem":"Which is a gas?","choices":[{"text":"ice","label":"A"},{"text":"steam","label":"B"},{"text":"rock","label":"C"}]},"answerKey":"B"}

        {"id":"Q2","question":{"stem":"Pick four.","choices":[{"text":"one","label":"1"},{"text":"two","label":"2"},{"text":"three","label":"3"},{"text":"four","label":"4"}]},"answerKey":"4"}\r
        {"id":"Q3","question":{"stem":"Five?","choices":[{"text":"a","label":"A"},{"text":"b","label":"B"},{"text":"c","label":"C"},{"text":"d","label":"D"},{"text":"e","label":"E"}]},"answerKey":"E"}

        """

    func testARCReadsLetterAndDigitLabels() throws {
        let questions = try ARCReader.read(jsonl: fixture("ARC-Easy-Dev.jsonl", arc))
        XCTAssertEqual(questions.map(\.id), ["Q1", "Q2", "Q3"])
        XCTAssertEqual(questions.map(\.answer), [1, 3, 4])
        XCTAssertEqual(questions[0].choices, ["ice", "steam", "rock"])
        XCTAssertEqual(questions[1].query, "Pick four.", "a CRLF line end must not leak into the text")
        XCTAssertEqual(questions[1].location, "ARC-Easy-Dev.jsonl:3", "blank lines still count for line numbers")
        XCTAssertEqual(try BenchmarkTask.arcEasy.load(from: fixture("x.jsonl", arc)).count, 3)
    }

    func testMalformedARCIsNamed() throws {
        let good = arc.split(separator: "\n").first!
        assertError("bad.jsonl:2", "not valid JSON") { _ = try ARCReader.read(jsonl: try fixture("bad.jsonl", "\(good)\n{\"id\": \n")) }
        assertError("bad.jsonl:1", "missing field 'answerKey'") {
            _ = try ARCReader.read(jsonl: try fixture("bad.jsonl", #"{"id":"Q","question":{"stem":"s","choices":[]}}"#))
        }
        assertError("bad.jsonl:1", "question.stem", "a string") {
            _ = try ARCReader.read(jsonl: try fixture("bad.jsonl", #"{"id":"Q","question":{"stem":3,"choices":[]},"answerKey":"A"}"#))
        }
        assertError("bad.jsonl:1", "answerKey 'C'", "A, B") {
            _ = try ARCReader.read(jsonl: try fixture("bad.jsonl", #"{"id":"Q","question":{"stem":"s","choices":[{"text":"x","label":"A"},{"text":"y","label":"B"}]},"answerKey":"C"}"#))
        }
        assertError("bad.jsonl:1", "at least 2") {
            _ = try ARCReader.read(jsonl: try fixture("bad.jsonl", #"{"id":"Q","question":{"stem":"s","choices":[{"text":"x","label":"A"}]},"answerKey":"A"}"#))
        }
        assertError("bad.jsonl:1", "not a JSON object") { _ = try ARCReader.read(jsonl: try fixture("bad.jsonl", "[1, 2]\n")) }
        assertError("does not exist") { _ = try ARCReader.read(jsonl: "/nonexistent/ARC.jsonl") }
        assertError("bad.jsonl:1", "UTF-8") {
            let path = try fixture("bad.jsonl", "")
            try Data([0x7B, 0xFF, 0xFE, 0x7D, 0x0A]).write(to: URL(fileURLWithPath: path))
            _ = try ARCReader.read(jsonl: path)
        }
    }

    let obqaTSV = """
        ID\tQuestion Stem\tChoices\tComplete Question\tAnswer Key
        8-376\tFrilled sharks live far beneath the surface, so they are known as\t(A) Deep sea animals (B) fish (C) Long (Sea) Fish (D) Far Sea Animals\tx\tA
        7-57\tGas can fill any container, and liquid\t(A) is standard (B) is the opposite (C) only needs a few (D) uses what it needs\tx\tD

        """

    func testOpenBookQAReadsTheTSVAndTheJSONL() throws {
        let questions = try OpenBookQAReader.read(try fixture("dev.tsv", obqaTSV))
        XCTAssertEqual(questions.count, 2)
        XCTAssertEqual(questions[0].id, "8-376")
        XCTAssertEqual(questions[0].choices, ["Deep sea animals", "fish", "Long (Sea) Fish", "Far Sea Animals"])
        XCTAssertEqual(questions.map(\.answer), [0, 3])
        XCTAssertEqual(questions[1].query, "Gas can fill any container, and liquid")
        XCTAssertEqual(try BenchmarkTask.openBookQA.load(from: fixture("train.jsonl", arc)).count, 3)
    }

    func testMalformedOpenBookQATSVIsNamed() throws {
        let header = obqaTSV.split(separator: "\n")[0]
        assertError("dev.tsv:2", "3 tab-separated fields") { _ = try OpenBookQAReader.read(try fixture("dev.tsv", "\(header)\na\tb\tc\n")) }
        assertError("dev.tsv:2", "Choices field") { _ = try OpenBookQAReader.read(try fixture("dev.tsv", "\(header)\na\tb\tA) x B) y\td\tA\n")) }
        assertError("dev.tsv:2", "Answer Key 'E'") { _ = try OpenBookQAReader.read(try fixture("dev.tsv", "\(header)\na\tb\t(A) x (B) y\td\tE\n")) }
        assertError("dev.tsv:1", "no 'Answer Key' column") { _ = try OpenBookQAReader.read(try fixture("dev.tsv", "ID\tQuestion Stem\tChoices\n")) }
        assertError("dev.tsv", "empty") { _ = try OpenBookQAReader.read(try fixture("dev.tsv", "\n")) }
    }

    // MARK: Social IQa, WinoGrande, PIQA (questions plus a label list)

    let siqa = """
        {"context": "Cameron had a barbecue.", "question": "How would Others feel?", "answerA": "like attending", "answerB": "like staying home", "answerC": "a good friend"}
        {"context": "Jan gave out jobs.", "question": "What will Jan do next?", "answerA": "rest", "answerB": "check the work", "answerC": "quit"}

        """

    func testSocialIQAUsesOneBasedLabels() throws {
        let path = try fixture("dev.jsonl", siqa)
        _ = try fixture("dev-labels.lst", "1\n2\n", folder: (path as NSString).deletingLastPathComponent)
        let questions = try SocialIQAReader.read(jsonl: path, labels: (path as NSString).deletingLastPathComponent + "/dev-labels.lst")
        XCTAssertEqual(questions.map(\.answer), [0, 1])
        XCTAssertEqual(questions[0].context, "Cameron had a barbecue.")
        XCTAssertEqual(questions[0].query, "How would Others feel?")
        XCTAssertEqual(questions[1].choices, ["rest", "check the work", "quit"])
        // The task finds the label list next to the file, or both in the folder.
        XCTAssertEqual(try BenchmarkTask.socialIQA.load(from: path).map(\.answer), [0, 1])
        XCTAssertEqual(try BenchmarkTask.socialIQA.load(from: (path as NSString).deletingLastPathComponent).count, 2)
    }

    func testLabelListProblemsAreNamed() throws {
        let path = try fixture("dev.jsonl", siqa), folder = (path as NSString).deletingLastPathComponent
        let labels = try fixture("dev-labels.lst", "1\n", folder: folder)
        assertError("dev-labels.lst' has 1 labels", "has 2 questions") { _ = try SocialIQAReader.read(jsonl: path, labels: labels) }
        try Data("1\n4\n".utf8).write(to: URL(fileURLWithPath: labels))
        assertError("dev-labels.lst:2", "label '4'", "1, 2, 3") { _ = try SocialIQAReader.read(jsonl: path, labels: labels) }
        try FileManager.default.removeItem(atPath: labels)
        assertError("no label list", "dev-labels.lst") { _ = try BenchmarkTask.socialIQA.load(from: path) }
        assertError("holds no NAME.jsonl") { _ = try BenchmarkTask.socialIQA.load(from: folder) }
        assertError("missing field 'answerC'") {
            let bad = try fixture("x.jsonl", #"{"context": "c", "question": "q", "answerA": "a", "answerB": "b"}"#)
            _ = try SocialIQAReader.read(jsonl: bad, labels: try fixture("x-labels.lst", "1\n", folder: (bad as NSString).deletingLastPathComponent))
        }
    }

    let winogrande = """
        {"qID": "3QHI-2", "sentence": "Ian ate Dennis's menudo because _ despised eating intestine.", "option1": "Ian", "option2": "Dennis", "answer": "2"}
        {"qID": "3QHI-1", "sentence": "Ian ate Dennis's menudo because _ enjoyed eating intestine.", "option1": "Ian", "option2": "Dennis", "answer": "1"}

        """

    func testWinoGrandeReadsInlineAnswersAndLabelLists() throws {
        let path = try fixture("dev.jsonl", winogrande), folder = (path as NSString).deletingLastPathComponent
        XCTAssertEqual(try WinoGrandeReader.read(jsonl: path).map(\.answer), [1, 0])
        let labels = try fixture("dev-labels.lst", "2\n1\n", folder: folder)
        let questions = try WinoGrandeReader.read(jsonl: path, labels: labels)
        XCTAssertEqual(questions.map(\.answer), [1, 0])
        XCTAssertEqual(questions[0].id, "3QHI-2")
        XCTAssertEqual(questions[0].choices, ["Ian", "Dennis"])
        XCTAssertEqual(try BenchmarkTask.winoGrande.load(from: folder).count, 2)

        try Data("1\n1\n".utf8).write(to: URL(fileURLWithPath: labels))
        assertError("dev.jsonl:1", "disagrees with label 1", "misaligned") { _ = try WinoGrandeReader.read(jsonl: path, labels: labels) }
        let unlabelled = try fixture("test.jsonl", #"{"qID": "t", "sentence": "A _ b.", "option1": "x", "option2": "y"}"#)
        assertError("test.jsonl:1", "no answer") { _ = try WinoGrandeReader.read(jsonl: unlabelled) }
        let noBlank = try fixture("x.jsonl", #"{"qID": "t", "sentence": "No blank.", "option1": "x", "option2": "y", "answer": "1"}"#)
        assertError("x.jsonl:1", "no '_' blank") { _ = try WinoGrandeReader.read(jsonl: noBlank) }
        let badAnswer = try fixture("x.jsonl", #"{"qID": "t", "sentence": "A _.", "option1": "x", "option2": "y", "answer": "3"}"#)
        assertError("x.jsonl:1", "answer '3'") { _ = try WinoGrandeReader.read(jsonl: badAnswer) }
    }

    func testPIQAUsesZeroBasedLabels() throws {
        let path = try fixture("valid.jsonl", """
            {"goal": "How do I open a jar?", "sol1": "Twist the lid.", "sol2": "Eat the lid."}
            {"id": "p2", "goal": "Dry wet shoes", "sol1": "Put them in water.", "sol2": "Stuff them with newspaper."}
            """)
        let folder = (path as NSString).deletingLastPathComponent
        _ = try fixture("valid-labels.lst", "0\n1\n", folder: folder)
        // A folder with several labelled splits takes the evaluation split.
        _ = try fixture("train.jsonl", #"{"goal": "g", "sol1": "a", "sol2": "b"}"#, folder: folder)
        _ = try fixture("train-labels.lst", "0\n", folder: folder)
        let questions = try BenchmarkTask.piqa.load(from: folder)
        XCTAssertEqual(questions.map(\.answer), [0, 1])
        XCTAssertEqual(questions.map(\.id), ["valid.jsonl:1", "p2"])
        XCTAssertEqual(questions[1].choices, ["Put them in water.", "Stuff them with newspaper."])
        XCTAssertEqual(try BenchmarkTask.piqa.load(from: folder + "/train.jsonl").count, 1)
        assertError("valid-labels.lst:1", "label '2'", "0, 1") {
            _ = try PIQAReader.read(jsonl: path, labels: try fixture("valid-labels.lst", "2\n1\n", folder: folder))
        }
        try FileManager.default.removeItem(atPath: folder + "/valid.jsonl")
        try FileManager.default.moveItem(atPath: folder + "/train.jsonl", toPath: folder + "/other.jsonl")
        try FileManager.default.moveItem(atPath: folder + "/train-labels.lst", toPath: folder + "/other-labels.lst")
        _ = try fixture("more.jsonl", #"{"goal": "g", "sol1": "a", "sol2": "b"}"#, folder: folder)
        _ = try fixture("more-labels.lst", "0\n", folder: folder)
        assertError("several labelled splits", "more, other") { _ = try BenchmarkTask.piqa.load(from: folder) }
    }

    // MARK: BoolQ

    func testBoolQIsNoOrYes() throws {
        let path = try fixture("dev.jsonl", """
            {"question": "is the sky blue", "title": "Sky", "answer": true, "passage": "The sky is blue."}
            {"question": "do fish fly", "title": "Fish", "answer": false, "passage": "Fish swim."}
            """)
        let questions = try BenchmarkTask.boolQ.load(from: path)
        XCTAssertEqual(questions.map(\.answer), [1, 0])
        XCTAssertEqual(questions[0].choices, ["no", "yes"])
        XCTAssertEqual(questions[0].context, "The sky is blue.")
        XCTAssertEqual(questions[1].query, "do fish fly")
        assertError("x.jsonl:1", "field 'answer' is not true or false") {
            _ = try BoolQReader.read(jsonl: try fixture("x.jsonl", #"{"question": "q", "passage": "p", "answer": "yes"}"#))
        }
        assertError("is a directory", "pass the file") { _ = try BenchmarkTask.boolQ.load(from: (path as NSString).deletingLastPathComponent) }
        assertError("does not exist") { _ = try BenchmarkTask.boolQ.load(from: path + ".missing") }
    }

    // MARK: The real files (../shared/data), where this checkout has them

    static let sharedData: String? = {
        if let dir = ProcessInfo.processInfo.environment["QTALE_DATA_DIR"], !dir.isEmpty { return dir }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = root.deletingLastPathComponent().appendingPathComponent("shared/data").path
        return FileManager.default.fileExists(atPath: dir) ? dir : nil
    }()

    func testRealFilesHaveTheCountsTheirSourcesState() throws {
        guard let data = Self.sharedData else { throw XCTSkip("no ../shared/data (set QTALE_DATA_DIR)") }
        let cases: [(BenchmarkTask, String, Int, Int)] = [  // task, path, questions, choices of the first
            (.arcEasy, "arc_easy/ARC-Easy-Dev.jsonl", 570, 4), (.arcEasy, "arc_easy/ARC-Easy-Train.jsonl", 2251, 4),
            (.arcChallenge, "arc_challenge/ARC-Challenge-Dev.jsonl", 299, 4),
            (.arcChallenge, "arc_challenge/ARC-Challenge-Train.jsonl", 1119, 4),
            (.openBookQA, "openbookqa/dev.tsv", 500, 4), (.openBookQA, "openbookqa/train.jsonl", 4957, 4),
            (.socialIQA, "siqa", 33410, 3), (.winoGrande, "winogrande", 10234, 2),
        ]
        for (task, relative, count, choices) in cases {
            let path = data + "/" + relative
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let questions = try task.load(from: path)
            XCTAssertEqual(questions.count, count, relative)
            XCTAssertEqual(questions.first?.choices.count, choices, relative)
            XCTAssertTrue(questions.allSatisfy { $0.choices.indices.contains($0.answer) }, relative)
        }
        // SOURCES.md: ARC-Easy dev has 567 four-way, 1 three-way and 2 five-way questions.
        let arcDev = try BenchmarkTask.arcEasy.load(from: data + "/arc_easy/ARC-Easy-Dev.jsonl")
        XCTAssertEqual(Dictionary(grouping: arcDev, by: \.choices.count).mapValues(\.count), [4: 567, 3: 1, 5: 2])
        XCTAssertEqual(arcDev.first?.id, "MCAS_2000_4_6")
        XCTAssertEqual(arcDev.first?.choices.first, "cellular telephone")
        // OpenBookQA dev: the first question of dev.tsv.
        let obqa = try BenchmarkTask.openBookQA.load(from: data + "/openbookqa/dev.tsv")
        XCTAssertEqual(obqa[0].id, "8-376")
        XCTAssertEqual(obqa[0].choices, ["Deep sea animals", "fish", "Long Sea Fish", "Far Sea Animals"])
        XCTAssertEqual(obqa[0].answer, 0)
        XCTAssertEqual(obqa.map(\.answer).filter { $0 == 3 }.isEmpty, false)
    }
}
