import QTaleCore

/// The asymmetric min/max group quantizer of AWQ and GPTQ (method.md §3), on the stored grid.
///
/// For a group with minimum `lo` and maximum `hi` (after clipping, see below):
///
///     scale = β · max(hi − lo, 1e-5) / (2^b − 1)          β = rangeShrink, 1 unless MagR asks otherwise
///     zero  = clamp(−round(lo / scale), 0, 2^b − 1)
///     code  = clamp(round(w / scale) + zero, 0, 2^b − 1)
///
/// **Why the stored values and not the formula's.** Every engine dequantizes with binary16 parameters,
/// `Float(scale16) · code + Float(offset16)` in float32, with `offset = −zero · scale`
/// (``QuantizationFormat``). A quantizer that reasoned with the float32 scale would report values the
/// model never computes, and GPTQ would feed back the wrong error. So the scale is rounded to binary16
/// first, the zero point is chosen with that rounded scale, `offset16 = Float16(−zero · scale16)`, and each
/// code is the nearest point of the grid those two stored numbers define. Where the offset's rounding
/// moved the grid, the code can differ from `round(w / scale) + zero` by one at a near-tie; it is then the
/// nearer one. ``GroupParameters/dequantize(_:)`` returns exactly what engines compute.
///
/// Parameters are computed in float64 from float32 inputs and rounded once to binary16 (the references
/// compute in float32 or float16; the difference is below the rounding to binary16). `round` is
/// round-half-to-even, as `torch.round`.
///
/// **Options.**
/// - `rangeShrink` β: MagR's reference multiplies the scale by β (0.9 at 3 bits per channel, 0.95 at group
///   128) and computes the zero point with the shrunk scale, so the grid keeps the minimum and gives up the
///   top of the range, which MagR has already shrunk.
/// - `rangeIncludesZero`: GPTQ's and MagR's quantizer widen the range to include 0
///   (`lo = min(lo, 0)`, `hi = max(hi, 0)`); AWQ's does not. Default off (method.md §3).
/// - Per-group clip maxima (AWQ's clip search): the group's weights are clamped to `[−clip, clip]` before
///   the minimum and maximum are taken and before rounding.
public struct GroupQuantizer: Hashable, Sendable {
    public let format: QuantizationFormat
    /// β: the scale is multiplied by it; 1 leaves the min/max range as it is.
    public let rangeShrink: Float
    /// Whether the range is widened to include 0, as GPTQ's reference quantizer does.
    public let rangeIncludesZero: Bool

    /// Smallest range `hi − lo` the scale is computed from (AWQ's `clamp(min=1e-5)`), so constant groups
    /// get a tiny nonzero scale instead of a division by zero.
    public static let minimumRange = 1e-5

    public init(format: QuantizationFormat, rangeShrink: Float = 1, rangeIncludesZero: Bool = false) throws {
        guard rangeShrink.isFinite, rangeShrink > 0 else {
            throw QTaleError.invalidArgument("quantizer range shrink β must be a positive number, got \(rangeShrink)")
        }
        self.format = format
        self.rangeShrink = rangeShrink
        self.rangeIncludesZero = rangeIncludesZero
    }

    /// The parameters of a group whose (unclipped) values span `minimum ... maximum`.
    /// `clip`: the group's weights are clamped to `[−clip, clip]` first (`.infinity`: no clipping).
    public func parameters(minimum: Float, maximum: Float, clip: Float = .infinity) -> GroupParameters {
        var lo = Double(minimum), hi = Double(maximum)
        let bound = Double(clip)
        if bound.isFinite {
            lo = min(max(lo, -bound), bound)
            hi = min(max(hi, -bound), bound)
        }
        if rangeIncludesZero {
            lo = min(lo, 0)
            hi = max(hi, 0)
        }
        let maxCode = format.maxCode
        var scale16 = Float16(Double(rangeShrink) * max(hi - lo, Self.minimumRange) / Double(maxCode))
        if scale16 == 0 { scale16 = .leastNonzeroMagnitude }
        if !scale16.isFinite { scale16 = .greatestFiniteMagnitude }
        let scale = Double(scale16)
        let zero = Int(min(max(-(lo / scale).rounded(.toNearestOrEven), 0), Double(maxCode)))
        var offset16 = Float16(-Double(zero) * scale)
        if !offset16.isFinite { offset16 = -.greatestFiniteMagnitude }
        return GroupParameters(scale: scale16, offset: offset16, zero: zero, maxCode: maxCode, clip: clip)
    }

    /// The parameters of a group of weights (any count ≥ 1).
    public func parameters(for values: UnsafeBufferPointer<Float>, clip: Float = .infinity) -> GroupParameters {
        precondition(!values.isEmpty, "a quantization group needs at least one value")
        var lo = values[0], hi = values[0]
        for v in values {
            lo = min(lo, v)
            hi = max(hi, v)
        }
        return parameters(minimum: lo, maximum: hi, clip: clip)
    }

    /// The parameters of a group of weights (any count ≥ 1).
    public func parameters(for values: some Collection<Float>, clip: Float = .infinity) -> GroupParameters {
        precondition(!values.isEmpty, "a quantization group needs at least one value")
        return parameters(minimum: values.min()!, maximum: values.max()!, clip: clip)
    }
}

/// One group's stored quantization parameters: the binary16 scale and offset of the packed layout, the
/// integer zero point they came from, and the clip bound applied before rounding.
public struct GroupParameters: Hashable, Sendable {
    public var scale: Float16
    /// `Float16(−zero · scale)`.
    public var offset: Float16
    public var zero: Int
    public var maxCode: Int
    /// Weights are clamped to `[−clip, clip]` before rounding; `.infinity` when not clipped.
    public var clip: Float

    public init(scale: Float16, offset: Float16, zero: Int, maxCode: Int, clip: Float = .infinity) {
        self.scale = scale
        self.offset = offset
        self.zero = zero
        self.maxCode = maxCode
        self.clip = clip
    }

    /// The code of the stored-grid point nearest to `value` (clipped first).
    @inlinable
    public func code(for value: Float) -> Int {
        var v = Double(value)
        if clip.isFinite { v = min(max(v, -Double(clip)), Double(clip)) }
        let c = ((v - Double(offset)) / Double(scale)).rounded(.toNearestOrEven)
        guard c.isFinite else { return 0 }
        return Int(min(max(c, 0), Double(maxCode)))
    }

    /// The weight an engine computes for `code`: `Float(scale) · code + Float(offset)` in float32.
    @inlinable
    public func dequantize(_ code: Int) -> Float {
        Float(scale) * Float(code) + Float(offset)
    }

    /// `dequantize(code(for: value))`: the value as the quantized model will see it.
    @inlinable
    public func quantize(_ value: Float) -> Float {
        dequantize(code(for: value))
    }
}
