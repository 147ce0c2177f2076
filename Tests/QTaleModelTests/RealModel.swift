import Foundation
import QTaleCore
import QTaleModel
import XCTest

/// The default model (SmolLM2-135M-Instruct Q4_1), fetched on first use like `--model smollm2`.
/// Set QTALE_MODEL_PATH to use another copy of the same file.
enum RealModel {
    static func path() throws -> String {
        if let path = ProcessInfo.processInfo.environment["QTALE_MODEL_PATH"], !path.isEmpty { return path }
        return try ModelLocator.resolve(ModelLocator.defaultModelName) { print($0) }
    }

    private static var cache: [String: LoadedModel] = [:]

    /// The model loaded once per engine configuration for the whole test run.
    static func load(backend: String = "cpu", threads: Int = 2) throws -> LoadedModel {
        let key = "\(backend)-\(threads)"
        if let model = cache[key] { return model }
        let model = try LoadedModel(path: path(), engine: EngineRegistry.make(backend, threads: threads))
        cache[key] = model
        return model
    }
}

/// The JSON files written by scripts/make_goldens.py from llama.cpp (llama-cpp-python).
enum Goldens {
    struct Tokenizer: Decodable {
        struct Case: Decodable { let text: String; let ids: [Int32] }
        let cases: [Case]
    }
    struct Generation: Decodable {
        struct Case: Decodable {
            let prompt: String
            let prompt_ids: [Int32]
            let generated_ids: [Int32]
        }
        let cases: [Case]
    }
    struct Logits: Decodable {
        struct Case: Decodable {
            let prompt: String
            let prompt_ids: [Int32]
            let argmax: Int32
            let logits_f32le_b64: String
            var logits: [Float] {
                let data = Data(base64Encoded: logits_f32le_b64)!
                return data.withUnsafeBytes { raw in (0..<data.count / 4).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
            }
        }
        let cases: [Case]
    }

    static func load<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
        let url = try XCTUnwrap(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Goldens"),
                                "missing golden file \(name).json")
        return try JSONDecoder().decode(T.self, from: Data(contentsOf: url))
    }
}
