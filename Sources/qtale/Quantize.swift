import ArgumentParser
import Foundation
import QTaleCore
import QTaleModel
import QTaleQuantize

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a model's decoder linears to 4 or 3 bits (RTN, AWQ, GPTQ, MagR+GPTQ).",
        discussion: """
            Input: a GGUF file (dequantized exactly), a Hugging Face LLaMA directory (config.json, \
            *.safetensors, tokenizer.json) or a qtale model file. Output: a qtale safetensors model \
            (docs/model-format.md), written atomically, that every command's --model accepts. \
            Only q, k, v, o, gate, up and down are quantized; embeddings, norms (except where AWQ folds \
            its scales), the output head and stored routers are kept. Calibration takes --calib-samples \
            windows of --calib-len tokens at seeded random offsets of --calib. A group size that does not \
            divide a layer's input width leaves a shorter last group (d_model 576 with group 128: 4×128 + 64).
            """)

    @OptionGroup var engine: EngineOptions

    @Option(help: "Method: \(QuantizationMethod.allCases.map(\.rawValue).joined(separator: ", ")).")
    var method: String

    @Option(help: "Bits per weight: 4 or 3.")
    var bits: Int

    @Option(help: "Weights per scale/offset pair: 32, 64 or 128.")
    var group = 128

    @Flag(name: .customLong("act-order"), help: "GPTQ: quantize columns by descending Hessian diagonal (static groups).")
    var actOrder = false

    @Option(help: "Calibration text (UTF-8), e.g. wikitext-2 valid.txt. Required except for rtn.")
    var calib: String?

    @Option(name: .customLong("calib-samples"), help: "Calibration sequences (default: 128; 16 for awq, which runs each block once per candidate scale).")
    var calibSamples: Int?

    @Option(name: .customLong("calib-len"), help: "Tokens per calibration sequence.")
    var calibLen = 512

    @Option(help: "Seed for the calibration windows.")
    var seed: UInt64 = 0

    @Option(name: .shortAndLong, help: "Output file (qtale safetensors).")
    var output: String

    @Option(name: .customLong("report-json"), help: "Also write the run's report (settings, times, errors) to this JSON file.")
    var reportJSON: String?

    func validate() throws {
        guard QuantizationMethod(rawValue: method) != nil else {
            throw ValidationError("unknown --method '\(method)'; use one of \(QuantizationMethod.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard bits == 3 || bits == 4 else { throw ValidationError("--bits must be 4 or 3") }
        guard [32, 64, 128].contains(group) else { throw ValidationError("--group must be 32, 64 or 128") }
        if let calibSamples { guard calibSamples >= 1 && calibSamples <= 4096 else { throw ValidationError("--calib-samples must be between 1 and 4096") } }
        guard calibLen >= 16 && calibLen <= 8192 else { throw ValidationError("--calib-len must be between 16 and 8192") }
        if method != QuantizationMethod.rtn.rawValue && calib == nil {
            throw ValidationError("--method \(method) needs calibration text: --calib FILE")
        }
        if actOrder && !(method == "gptq" || method == "magr-gptq") { throw ValidationError("--act-order applies to gptq and magr-gptq only") }
    }

    func run() throws {
        let methodValue = QuantizationMethod(rawValue: method)!
        var settings = QuantizationSettings(method: methodValue, bits: bits, groupSize: group)
        settings.actOrder = actOrder
        settings.calibrationSamples = calibSamples ?? (methodValue == .awq ? 16 : 128)
        settings.calibrationLength = calibLen
        settings.seed = seed
        settings.calibrationFile = calib
        let path = try ModelLocator.resolve(engine.model) { Console.status($0) }
        let source = try ModelSources.open(path)
        let quantizer = try ModelQuantizer(source: source, engine: engine.selection.makeEngine(), settings: settings)
        var calibration: CalibrationSet?
        if let calib, methodValue.needsCalibration {
            guard let data = FileManager.default.contents(atPath: calib) else { throw QTaleError.io("cannot read calibration text '\(calib)'") }
            guard let text = String(data: data, encoding: .utf8) else { throw QTaleError.invalidArgument("'\(calib)' is not UTF-8 text") }
            let tokens = quantizer.model.tokenizer.encode(text, parseSpecial: false, addBOS: false)
            calibration = try CalibrationSet(tokens: tokens, count: settings.calibrationSamples, length: calibLen, seed: seed)
        }
        let c = source.configuration
        Console.status("quantizing \(path) with \(method) to w\(bits)g\(group)" +
                       (calibration.map { ", \($0.sequences.count) × \($0.length) calibration tokens" } ?? "") +
                       " on \(quantizer.model.engine.name)")
        let bar = ProgressBar("quantize", total: c.nLayers, unit: "blocks")
        bar.update(0)
        let report = try quantizer.run(calibration: calibration) { done, status in bar.update(done, status: status) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let provenance = String(decoding: try encoder.encode(report), as: UTF8.self)
        try QTaleModelFile.write(to: output, configuration: c, vocabulary: source.vocabulary(), routers: source.routers(),
                                 quantization: provenance, tensor: quantizer.tensor)
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        Console.status(String(format: "wrote %@ (%.1f MB) in %.1f s", output, Double(size) / 1e6, report.seconds))
        if let reportJSON { try Console.writeJSON(report, to: reportJSON) }
    }
}
