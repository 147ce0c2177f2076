import ArgumentParser
import Foundation
import QTaleCore
import QTaleGGUF
import QTaleModel
import QTaleTokenizer

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a model's architecture, tensor types and sizes.")

    @Argument(help: "A GGUF file, or 'smollm2'.")
    var model: String

    @Flag(help: "Print every tensor.")
    var tensors = false

    func run() throws {
        let path = try ModelLocator.resolve(model) { Console.status($0) }
        let gguf = try GGUFFile(path: path)
        let c = try LlamaConfiguration(gguf: gguf)
        var lines = [
            "file            \(path) (GGUF v\(gguf.version), \(gguf.file.bytes.count) bytes)",
            "name            \(gguf.metadata["general.name"]?.string ?? "-")",
            "architecture    \(c.architecture)",
            "layers          \(c.nLayers)",
            "d_model         \(c.dModel)",
            "ffn             \(c.ffnDim)",
            "heads           \(c.nHeads) (KV heads \(c.nKVHeads), head dim \(c.headDim))",
            "rope            base \(c.ropeBase), dims \(c.ropeDims)",
            "rms epsilon     \(c.normEpsilon)",
            "context         \(c.contextLength)",
            "vocabulary      \(c.vocabSize) (\(gguf.metadata["tokenizer.ggml.model"]?.string ?? "?"), pre '\(gguf.metadata["tokenizer.ggml.pre"]?.string ?? "default")')",
            "output head     \(c.tiedOutput ? "tied to token_embd" : "separate")",
        ]
        var byType: [GGUFTensorType: (count: Int, elements: Int, bytes: Int)] = [:]
        for t in gguf.tensors {
            let s = byType[t.type, default: (0, 0, 0)]
            byType[t.type] = (s.count + 1, s.elements + t.elementCount, s.bytes + t.byteCount)
        }
        lines.append("tensors         \(gguf.tensors.count)")
        for (type, s) in byType.sorted(by: { $0.value.bytes > $1.value.bytes }) {
            lines.append(String(format: "  %-6@ %4d tensors %12d params %10.2f MB  %.2f bits/weight",
                                type.description, s.count, s.elements, Double(s.bytes) / 1e6, 8 * Double(s.bytes) / Double(s.elements)))
        }
        if tensors {
            for t in gguf.tensors {
                lines.append("  \(t.name.padding(toLength: 28, withPad: " ", startingAt: 0)) \(t.type.description.padding(toLength: 5, withPad: " ", startingAt: 0)) \(t.dimensions) \(t.byteCount) bytes")
            }
        }
        Console.out(lines.joined(separator: "\n") + "\n")
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of a text as a JSON array.",
        discussion: "Special tokens in the text are parsed; a BOS token is added only if the model's metadata asks for one.")

    @Option(name: .shortAndLong, help: "A GGUF file, or 'smollm2'.")
    var model: String = ModelLocator.defaultModelName

    @Argument(help: "The text to tokenize.")
    var text: String

    func run() throws {
        let path = try ModelLocator.resolve(model) { Console.status($0) }
        let gguf = try GGUFFile(path: path)
        let tokenizer = try BPETokenizer(vocabulary: TokenizerVocabulary(gguf: gguf))
        Console.out("[" + tokenizer.encode(text, parseSpecial: true).map(String.init).joined(separator: ", ") + "]\n")
    }
}
