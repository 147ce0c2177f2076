import ArgumentParser
import Foundation
import QTaleCore
import QTaleGGUF
import QTaleModel
import QTaleQuantize
import QTaleTokenizer

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a model's architecture, tensor types and sizes.")

    @Argument(help: "A GGUF file, a qtale model file, a Hugging Face directory, or 'smollm2'.")
    var model: String

    @Flag(help: "Print every tensor.")
    var tensors = false

    func run() throws {
        let path = try ModelLocator.resolve(model) { Console.status($0) }
        let source = try ModelSources.open(path)
        let c = source.configuration
        let vocabulary = try source.vocabulary()
        var lines = [
            "file            \(path) (\(source.formatDescription))",
            "architecture    \(c.architecture)",
            "layers          \(c.nLayers)",
            "d_model         \(c.dModel)",
            "ffn             \(c.ffnDim)",
            "heads           \(c.nHeads) (KV heads \(c.nKVHeads), head dim \(c.headDim))",
            "rope            base \(c.ropeBase), dims \(c.ropeDims)",
            "rms epsilon     \(c.normEpsilon)",
            "context         \(c.contextLength)",
            "vocabulary      \(c.vocabSize) (byte-level BPE, pre '\(vocabulary.preTokenizer)')",
            "output head     \(c.tiedOutput ? "tied to the token embedding" : "separate")",
        ]
        if let routers = try source.routers() {
            lines.append("routers         hidden \(routers.configuration.hidden), always-on blocks \(routers.configuration.alwaysOnBlocks), positions \(routers.configuration.alwaysOnPositions)")
        }
        if let file = source as? QTaleModelFile, let text = file.quantization {
            if let r = try? JSONDecoder().decode(QuantizationReport.self, from: Data(text.utf8)) {
                let s = r.settings
                lines.append("quantization    \(s.method.rawValue) w\(s.bits)g\(s.groupSize)\(s.actOrder ? " act-order" : ""), " +
                             "\(r.calibrationTokens) calibration tokens, \(String(format: "%.0f", r.seconds)) s, from \(r.input)")
            } else {
                lines.append("quantization    \(text.prefix(200))")
            }
        }
        guard let gguf = (source as? GGUFModelSource)?.gguf else {
            Console.out(lines.joined(separator: "\n") + "\n")
            return
        }
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
        let tokenizer = try BPETokenizer(vocabulary: ModelSources.open(path).vocabulary())
        Console.out("[" + tokenizer.encode(text, parseSpecial: true).map(String.init).joined(separator: ", ") + "]\n")
    }
}
