import Foundation
import QTaleCore
import QTaleSafetensors

/// Packed linears of AutoAWQ (GEMM) and GPTQ Hugging Face checkpoints, converted losslessly into qtale's
/// one packed layout (``QuantizationFormat``): codes and scales move bit for bit, and an integer zero
/// point `z` becomes `offset = -z·scale` rounded to binary16 (the only rounding; at most half a binary16
/// ulp of `z·scale`).
///
/// A quantized linear is `<module>.qweight` (int32 words of packed codes), `<module>.qzeros` (int32
/// words of packed zero points), `<module>.scales` (`[groups, out]`) and, for GPTQ, `<module>.g_idx`
/// (`[in]`, the group of each input). Every code of a group `g` of input channels dequantizes as
/// `w = (code - zero) · scale`.
///
/// - **AutoAWQ GEMM** (4-bit only): `qweight` `[in, out/8]`, `qzeros` `[in/group, out/8]`. Eight codes per
///   word run along the *output* dimension, interleaved: bits `4i ..< 4i+4` of word `b` hold output
///   column `8b + [0, 2, 4, 6, 1, 3, 5, 7][i]`. Zeros are stored as they are.
/// - **GPTQ** (4- and 8-bit): `qweight` `[in·bits/32, out]`, `qzeros` `[groups, out·bits/32]`. `32/bits`
///   codes per word run along the *input* dimension (zeros along the output dimension), code `j` of a
///   word in bits `bits·j ..< bits·(j+1)`. `checkpoint_format` `"gptq"` (v1, the default) stores
///   `zero - 1` (decoded as `(field & mask) + 1`, so a stored all-ones field means `2^bits`);
///   `"gptq_v2"` stores the zero itself. 3-bit GPTQ words split codes across word boundaries and
///   are refused, as is an act-order `g_idx` that is not `k / group` (qtale's groups are contiguous).
struct QuantizedCheckpointScheme: CustomStringConvertible {
    enum Method: Equatable {
        case awqGEMM
        /// `zeroBias` is added to each stored zero: 1 for GPTQ v1, 0 for v2.
        case gptq(zeroBias: Int)
    }

    let method: Method
    let bits: Int
    /// Inputs per group, or -1 for one group per row.
    let groupSize: Int
    /// GPTQ act-order: a `g_idx` tensor must then be present (and trivial).
    let actOrder: Bool

    var description: String {
        let group = groupSize == -1 ? "per-row groups" : "group \(groupSize)"
        switch method {
        case .awqGEMM: return "AutoAWQ GEMM w\(bits), \(group)"
        case let .gptq(bias): return "GPTQ\(bias == 0 ? " v2" : "") w\(bits), \(group)"
        }
    }

    /// The scheme described by a checkpoint's `quantization_config` (in `config.json`), or by AutoGPTQ's
    /// `quantize_config.json` / AutoAWQ's `quant_config.json` next to it. `example` names a packed
    /// tensor for the messages.
    init(directory: String, config: [String: Any], example: String) throws {
        let url = URL(fileURLWithPath: directory)
        var q: [String: Any]
        var source = "\(directory)/config.json: quantization_config"
        var defaultMethod: String? = nil
        if let embedded = config["quantization_config"] as? [String: Any] {
            q = embedded
        } else if let file = try? HuggingFaceModelSource.json(url.appendingPathComponent("quantize_config.json")) {
            (q, source, defaultMethod) = (file, "\(directory)/quantize_config.json", "gptq")
        } else if let file = try? HuggingFaceModelSource.json(url.appendingPathComponent("quant_config.json")) {
            (q, source, defaultMethod) = (file, "\(directory)/quant_config.json", "awq")
        } else {
            throw QTaleError.invalidModel("'\(directory)' holds packed tensors ('\(example)') but config.json has no quantization_config saying how they are packed")
        }
        func fail(_ reason: String) -> QTaleError {
            QTaleError.invalidModel("'\(source)' (packed tensors such as '\(example)'): \(reason)")
        }
        guard let method = (q["quant_method"] as? String)?.lowercased() ?? defaultMethod else {
            throw fail("quant_method is missing")
        }
        guard let bits = (q["bits"] ?? q["w_bit"]) as? Int else { throw fail("bits is missing or not an integer") }
        guard let group = (q["group_size"] ?? q["q_group_size"]) as? Int else { throw fail("group_size is missing or not an integer") }
        switch method {
        case "awq":
            let version = ((q["version"] as? String) ?? "gemm").lowercased()
            guard version == "gemm" else {
                throw fail("AutoAWQ version '\(version)' packs its words differently; qtale reads AutoAWQ GEMM checkpoints")
            }
            guard bits == 4 else { throw fail("AutoAWQ GEMM with \(bits) bits; qtale reads 4-bit AutoAWQ GEMM") }
            self.method = .awqGEMM
            actOrder = false
        case "gptq":
            let format = ((q["checkpoint_format"] as? String) ?? "gptq").lowercased()
            switch format {
            case "gptq": self.method = .gptq(zeroBias: 1)
            case "gptq_v2": self.method = .gptq(zeroBias: 0)
            default: throw fail("GPTQ checkpoint_format '\(format)' is not one qtale reads ('gptq' or 'gptq_v2')")
            }
            switch bits {
            case 4, 8: break
            case 3: throw fail("3-bit GPTQ packs codes across 32-bit word boundaries, which qtale does not read; qtale reads 4- and 8-bit GPTQ")
            default: throw fail("GPTQ with \(bits) bits; qtale reads 4- and 8-bit GPTQ")
            }
            actOrder = (q["desc_act"] as? Bool) ?? false
        default:
            throw fail("quant_method '\(method)' is not one qtale reads ('awq' GEMM 4-bit or 'gptq' 4/8-bit)")
        }
        guard group == -1 || (group > 0 && group % QuantizationFormat.codesPerPack == 0 && group <= 1 << 16) else {
            throw fail("group_size \(group) is not a multiple of \(QuantizationFormat.codesPerPack) (or -1); qtale's layout needs groups of whole 32-code packs")
        }
        self.bits = bits
        groupSize = group
    }

    /// Converts `<module>.qweight/.qzeros/.scales(/.g_idx)` into a `rows × columns` packed matrix in the
    /// checkpoint's row order. `lookup` finds a tensor by name in the checkpoint's shards.
    func packedMatrix(module: String, rows: Int, columns: Int, path: String,
                      lookup: (String) -> (SafetensorsFile, SafetensorsTensorInfo)?) throws -> PackedMatrix {
        let qweightName = module + ".qweight"
        func fail(_ name: String, _ reason: String) -> QTaleError {
            QTaleError.invalidModel("'\(path)': tensor '\(name)' (\(self)): \(reason)")
        }
        func find(_ suffix: String) throws -> (SafetensorsFile, SafetensorsTensorInfo) {
            guard let found = lookup(module + suffix) else {
                throw QTaleError.invalidModel("'\(path)': packed linear '\(module)' (\(self)) has '\(qweightName)' but no '\(module + suffix)'")
            }
            return found
        }
        let group = groupSize == -1 ? columns : groupSize
        guard group % QuantizationFormat.codesPerPack == 0, group <= 1 << 16 else {
            throw fail(qweightName, "group_size -1 makes one group of all \(columns) inputs, which qtale's layout only holds when it is a multiple of 32 and at most 65536")
        }
        let format = try QuantizationFormat(bits: bits, groupSize: group)
        let groups = (columns + group - 1) / group
        let perWord = 32 / bits, mask = UInt32((1 << bits) - 1)

        let (qweightFile, qweight) = try find(".qweight")
        let (qzerosFile, qzeros) = try find(".qzeros")
        let (scalesFile, scales) = try find(".scales")
        let packedAlongOutput = method == .awqGEMM
        let packedDimension = packedAlongOutput ? rows : columns
        guard packedDimension % perWord == 0 else {
            throw fail(qweightName, "its \(packedDimension) \(packedAlongOutput ? "output" : "input") channels do not fill whole 32-bit words of \(perWord) codes")
        }
        guard rows % perWord == 0 else {
            throw fail(module + ".qzeros", "its \(rows) output channels do not fill whole 32-bit words of \(perWord) zeros")
        }
        let qweightShape = packedAlongOutput ? [columns, rows / perWord] : [columns / perWord, rows]
        let qzerosShape = [groups, rows / perWord]
        for (name, t, shape) in [(qweightName, qweight, qweightShape), (module + ".qzeros", qzeros, qzerosShape)] {
            guard t.dtype == .i32, t.shape == shape else {
                throw fail(name, "is \(t.dtype.rawValue) \(t.shape); a \(rows)×\(columns) linear needs I32 \(shape)")
            }
        }
        guard scales.shape == [groups, rows] else {
            throw fail(module + ".scales", "has shape \(scales.shape); a \(rows)×\(columns) linear with \(groups) groups per row needs [\(groups), \(rows)]")
        }
        let scaleValues = try scalesFile.floats(scales)
        try checkGroupIndex(module: module, columns: columns, group: group, path: path, lookup: lookup)

        func words(_ file: SafetensorsFile, _ t: SafetensorsTensorInfo) -> [UInt32] {
            let raw = file.data(of: t)
            return (0..<t.elementCount).map { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
        }
        let weightWords = words(qweightFile, qweight), zeroWords = words(qzerosFile, qzeros)

        // Codes straight into packs: 4-bit code k of a row sits in byte k % 16 of pack k / 32, low nibble
        // for k % 32 < 16; 8-bit code k is byte k of the row.
        var codes = [UInt8](repeating: 0, count: rows * format.codeBytesPerRow(columns: columns))
        let rowBytes = format.codeBytesPerRow(columns: columns)
        codes.withUnsafeMutableBufferPointer { out in
            func put(_ code: UInt32, row: Int, column k: Int) {
                if bits == 8 {
                    out[row * rowBytes + k] = UInt8(code)
                } else {
                    let inPack = k % 32
                    out[row * rowBytes + (k / 32) * 16 + inPack % 16] |= UInt8(code) << (inPack < 16 ? 0 : 4)
                }
            }
            switch method {
            case .awqGEMM:
                let wordsPerRow = rows / perWord
                for k in 0..<columns {
                    for b in 0..<wordsPerRow {
                        let word = weightWords[k * wordsPerRow + b]
                        for i in 0..<perWord { put((word >> UInt32(bits * i)) & mask, row: b * perWord + Self.awqOrder[i], column: k) }
                    }
                }
            case .gptq:
                for p in 0..<columns / perWord {
                    for n in 0..<rows {
                        let word = weightWords[p * rows + n]
                        for j in 0..<perWord { put((word >> UInt32(bits * j)) & mask, row: n, column: p * perWord + j) }
                    }
                }
            }
        }

        // Scales move as they are (binary16); offsets are -zero·scale.
        var halfScales = [Float16](repeating: 0, count: rows * groups), offsets = halfScales
        let zeroBias: Int
        if case let .gptq(bias) = method { zeroBias = bias } else { zeroBias = 0 }
        for g in 0..<groups {
            for c in 0..<rows / perWord {
                let word = zeroWords[g * (rows / perWord) + c]
                for i in 0..<perWord {
                    let n = c * perWord + (method == .awqGEMM ? Self.awqOrder[i] : i)
                    let zero = Int((word >> UInt32(bits * i)) & mask) + zeroBias
                    let value = scaleValues[g * rows + n], scale = Float16(value)
                    guard value.isFinite, Float(scale) == value else {
                        throw fail(module + ".scales", "scale \(value) (output \(n), group \(g)) is not exactly a finite binary16 value, so it cannot move losslessly into qtale's binary16 scales")
                    }
                    let offset = Float16(-Float(zero) * value)
                    guard offset.isFinite else {
                        throw fail(module + ".qzeros", "zero \(zero) × scale \(value) (output \(n), group \(g)) overflows binary16")
                    }
                    halfScales[n * groups + g] = scale
                    offsets[n * groups + g] = offset
                }
            }
        }
        return try PackedMatrix(format: format, rows: rows, columns: columns, codes: codes, scales: halfScales, offsets: offsets)
    }

    /// GPTQ's `g_idx` must put input `k` in group `k / group` (no act-order reordering).
    private func checkGroupIndex(module: String, columns: Int, group: Int, path: String,
                                 lookup: (String) -> (SafetensorsFile, SafetensorsTensorInfo)?) throws {
        guard case .gptq = method else { return }
        let name = module + ".g_idx"
        guard let found = lookup(name) else {
            if actOrder {
                throw QTaleError.invalidModel("'\(path)': packed linear '\(module)' (\(self)) uses desc_act (act-order) but has no '\(name)' giving each input's group")
            }
            return
        }
        let (file, t) = found
        guard t.shape == [columns], t.dtype == .i32 || t.dtype == .i64 else {
            throw QTaleError.invalidModel("'\(path)': tensor '\(name)' is \(t.dtype.rawValue) \(t.shape); expected I32 or I64 [\(columns)]")
        }
        let raw = file.data(of: t)
        for k in 0..<columns {
            let g = t.dtype == .i32 ? Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * k, as: Int32.self)))
                                    : Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * k, as: Int64.self)))
            guard g == k / group else {
                throw QTaleError.invalidModel("'\(path)': tensor '\(name)' puts input \(k) in group \(g), not \(k / group): act-order (desc_act) groups that are not contiguous runs of \(group) inputs cannot be held by qtale's layout; re-quantize without desc_act or with static_groups")
            }
        }
    }

    /// Output column of nibble `i` in an AutoAWQ GEMM word.
    static let awqOrder = [0, 2, 4, 6, 1, 3, 5, 7]
}
