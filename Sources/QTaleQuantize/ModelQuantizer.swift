import Dispatch
import QTaleCore
import QTaleModel

/// Quantizes a model's decoder linears block by block (method.md §3-5).
///
/// The model runs on the engine the user chose: calibration activations come from
/// ``LlamaModel/probeBlock(_:weights:hidden:observe:)``, so the float forward pass is the same code as
/// inference, and candidate blocks (AWQ's scaled and quantized weights) are uploaded and run as they
/// will be at inference time.
///
/// - RTN: each linear on its own, no calibration.
/// - GPTQ and MagR+GPTQ (sequential, as the GPTQ reference): per block, the float block's inputs to each
///   linear give the Hessians; the linears are quantized; the *quantized* block's outputs become the next
///   block's inputs. The four linears that share an input share its Hessian. (Not "true sequential":
///   all seven linears of a block see inputs from the float block.)
/// - AWQ: per block, on the float model's activations: scale search for [q, k, v] (loss on the attention
///   sublayer's output), [gate, up] (loss on the MLP output) and [down] (loss on its own output); o is
///   skipped under grouped-query attention (method.md's table); the inverse scales fold into the
///   RMSNorm weights and into up's rows. Then the clipping search for every linear but q and k, then RTN.
///   The float block's outputs feed the next block.
///
/// Only q, k, v, o, gate, up and down change; norms change only where AWQ folds scales into them.
public final class ModelQuantizer {
    public let settings: QuantizationSettings
    let source: any ModelSource
    let engine: any ComputeEngine
    public let model: LoadedModel
    let format: QuantizationFormat
    let multiplier: EngineMatrixMultiplier

    /// Tensors that differ from the source after ``run(calibration:progress:)``.
    public internal(set) var replaced: [TensorRole: HostTensor] = [:]

    public init(source: any ModelSource, engine: any ComputeEngine, settings: QuantizationSettings) throws {
        self.settings = settings
        self.source = source
        self.engine = engine
        format = try settings.format()
        model = try LoadedModel(source: source, engine: engine)
        multiplier = EngineMatrixMultiplier(engine: engine)
    }

    /// The quantized model's tensor for `role`: the replacement, or the source's own.
    public func tensor(_ role: TensorRole) throws -> HostTensor {
        if let t = replaced[role] { return t }
        return try source.tensor(role)
    }

    /// Runs the method. `progress(blocksDone, status)` is called after each block.
    public func run(calibration: CalibrationSet?, progress: (Int, String) -> Void) throws -> QuantizationReport {
        let c = model.configuration
        if settings.method.needsCalibration && calibration == nil {
            throw QTaleError.invalidArgument("\(settings.method.rawValue) needs calibration text (--calib FILE)")
        }
        let start = DispatchTime.now().uptimeNanoseconds
        var perBlock: [Double] = []
        var errors: [String: Double] = [:]
        var session: LlamaModel?
        var hidden: [[Float]] = []
        if let calibration, settings.method.needsCalibration {
            let s = try model.makeSession(contextLength: calibration.length, maxBatch: calibration.length)
            hidden = try calibration.sequences.map { try s.embed($0) }
            session = s
        }
        for l in 0..<c.nLayers {
            let blockStart = DispatchTime.now().uptimeNanoseconds
            var status = ""
            switch settings.method {
            case .rtn:
                for kind in LinearKind.allCases {
                    let role = TensorRole.linear(block: l, kind)
                    let w = try weights(role)
                    replaced[role] = .packed(try RoundToNearest.quantize(w, rows: kind.shape(in: c).rows,
                                                                        columns: kind.shape(in: c).columns, quantizer: quantizer()))
                }
            case .gptq, .magrGPTQ:
                let blockErrors = try quantizeBlockGPTQ(l, session: session!, hidden: &hidden)
                for (kind, e) in blockErrors { errors["\(l).\(kind.rawValue)"] = e }
                status = String(format: "mean rel. err %.4f", blockErrors.values.reduce(0, +) / Double(max(1, blockErrors.count)))
            case .awq:
                status = try quantizeBlockAWQ(l, session: session!, hidden: &hidden)
            }
            perBlock.append(Double(DispatchTime.now().uptimeNanoseconds - blockStart) / 1e9)
            progress(l + 1, status)
        }
        return QuantizationReport(settings: settings, input: source.path, calibrationTokens: calibration?.tokenCount ?? 0,
                                  seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9,
                                  secondsPerBlock: perBlock, relativeErrors: errors)
    }

    // MARK: Shared pieces

    /// The float weights of `role` as the source holds them (packed sources are dequantized exactly).
    func weights(_ role: TensorRole) throws -> [Float] { try source.tensor(role).floats() }

    func quantizer(rangeShrink: Float = 1, rangeIncludesZero: Bool = false) throws -> GroupQuantizer {
        try GroupQuantizer(format: format, rangeShrink: rangeShrink, rangeIncludesZero: rangeIncludesZero)
    }

    /// Runs block `l` with `weights` over every calibration sequence, collecting the activations at
    /// `points` (concatenated over sequences, `[tokens × width]`) and returning the block outputs
    /// (none with `stopAfter`, which ends each run after that point).
    func probe(_ l: Int, weights: LlamaBlockWeights, session: LlamaModel, hidden: [[Float]],
               collect points: Set<BlockProbePoint>, stopAfter: BlockProbePoint? = nil)
        throws -> (outputs: [[Float]], activations: [BlockProbePoint: [Float]]) {
        var collected: [BlockProbePoint: [Float]] = [:]
        var outputs: [[Float]] = []
        outputs.reserveCapacity(hidden.count)
        for sequence in hidden {
            outputs.append(try session.probeBlock(l, weights: weights, hidden: sequence, stopAfter: stopAfter) { point, view in
                guard points.contains(point) else { return }
                collected[point, default: []] += try self.engine.readFloats(view)
            })
        }
        return (outputs, collected)
    }

    /// The block's weights with `linears` and norms replaced, uploaded to the engine (kept alive by `storage`).
    func candidate(_ l: Int, linears: [LinearKind: HostTensor], attentionNorm: [Float]? = nil, ffnNorm: [Float]? = nil,
                   storage: EngineTensors) throws -> LlamaBlockWeights {
        var w = model.weights.blocks[l]
        for (kind, tensor) in linears { w[kind] = try storage.upload(tensor) }
        if let attentionNorm { w.attentionNorm = try storage.upload(floats: attentionNorm, rows: 1, columns: attentionNorm.count) }
        if let ffnNorm { w.ffnNorm = try storage.upload(floats: ffnNorm, rows: 1, columns: ffnNorm.count) }
        return w
    }

    /// The input each linear reads.
    static func input(of kind: LinearKind) -> BlockProbePoint {
        switch kind {
        case .query, .key, .value: .attentionInput
        case .attentionOutput: .attended
        case .gate, .up: .mlpInput
        case .down: .mlpHidden
        }
    }
}
