#if QTALE_AVX512_VNNI
import _Builtin_intrinsics.intel
#endif
import QTaleCore

/// How the CPU engine's decode matmuls treat the input vector.
public enum DecodeActivations: String, Sendable {
    /// float32, exact up to summation order (the default; conformance NMSE 1e-10).
    case float32
    /// int8 per pack of 32 (scale max|x| / 127), as llama.cpp's CPU path computes: four times fewer
    /// instructions per 4-bit weight, so decode becomes bound by memory, at the price of rounding the
    /// activations: a matmul's output moves by NMSE up to about 1e-4 (conformance bound 5e-4, as ggml's),
    /// SmolLM2's decode logits by a median 3e-3. 4-bit weights only; needs AVX-512 VNNI.
    case int8
}

extension CPUEngine {
    /// Whether this build runs ``DecodeActivations/int8`` (Package.swift defines QTALE_AVX512_VNNI when
    /// the build machine, whose CPU the binary is tuned for, has AVX-512 VNNI).
    public static var int8DecodeAvailable: Bool {
        #if QTALE_AVX512_VNNI
        true
        #else
        false
        #endif
    }

    /// Scratch floats the int8 activations and their scales take, after the padded input and group sums.
    static func int8ActivationFloats(packs: Int) -> Int { (packs + 1) / 2 * (16 + 8) }

    /// One token through 4-bit weights with int8 activations: rows `rows` of `out`.
    /// `x` is the zero-padded input (`packs * 32` floats), `groupSums` its per-group sums, `space` at
    /// least ``int8ActivationFloats(packs:)`` floats of this worker's scratch.
    func int8Decode(host: HostQuantizedMatrix, x: UnsafePointer<Float>, groupSums: UnsafePointer<Float>, packs: Int,
                    groupSize: Int, rows: Range<Int>, out: UnsafeMutablePointer<Float>, space: UnsafeMutableRawPointer) {
        #if QTALE_AVX512_VNNI
        let pairs = (packs + 1) / 2
        let activations = space.bindMemory(to: Int8.self, capacity: 64 * pairs)
        let scales = (space + 64 * pairs).bindMemory(to: Float.self, capacity: 8 * pairs)
        Self.quantizeActivations(x, packs: packs, into: activations, scales: scales)
        for n in rows {
            out[n] = Self.int8DotRow(host: host, row: n, activations: UnsafePointer(activations), activationScales: UnsafePointer(scales),
                                     groupSums: groupSums, packs: packs, groupSize: groupSize)
        }
        #else
        preconditionFailure("int8 decode needs AVX-512 VNNI (CPUEngine.int8DecodeAvailable)")
        #endif
    }

    #if QTALE_AVX512_VNNI
    /// Writes, per pair of packs (A, B), 64 bytes in the order the kernel's two 256-bit `vpdpbusd`
    /// read them: [A 0-15, B 0-15, A 16-31, B 16-31], and 8 floats [d_A ×4, d_B ×4] where
    /// `x ≈ d · q`. A missing B (odd pack count) is zeros.
    static func quantizeActivations(_ x: UnsafePointer<Float>, packs: Int, into bytes: UnsafeMutablePointer<Int8>,
                                    scales: UnsafeMutablePointer<Float>) {
        for pair in 0 ..< (packs + 1) / 2 {
            for half in 0..<2 {
                let p = 2 * pair + half
                let low = bytes + 64 * pair + 16 * half, high = low + 32
                var d: Float = 0
                if p < packs {
                    let a = x.vector(at: 32 * p), b = x.vector(at: 32 * p + 16)
                    d = pointwiseMax(pointwiseMax(a, -a), pointwiseMax(b, -b)).max() / 127
                    let inverse = d > 0 ? 1 / d : 0
                    for j in 0..<16 {
                        low[j] = Int8((a[j] * inverse).rounded())
                        high[j] = Int8((b[j] * inverse).rounded())
                    }
                } else {
                    low.update(repeating: 0, count: 16)
                    high.update(repeating: 0, count: 16)
                }
                (scales + 8 * pair + 4 * half).update(repeating: d, count: 4)
            }
        }
    }

    /// `Σ_p w_g(p) · d_p · Σ_{k∈p} code_k q_k + Σ_g offset_g · Σ_{k∈g} x_k`: per pair of packs, low and
    /// high nibbles against the matching activation bytes, one `vpdpbusd` each; lanes 0-3 hold pack
    /// A's partial sums and 4-7 pack B's, then one convert and two multiplies by the scales.
    @inline(__always)
    static func int8DotRow(host: HostQuantizedMatrix, row n: Int, activations: UnsafePointer<Int8>,
                           activationScales: UnsafePointer<Float>, groupSums: UnsafePointer<Float>,
                           packs: Int, groupSize: Int) -> Float {
        let codes = UnsafeRawPointer(host.codes + n * host.codeBytesPerRow)
        let scales = host.scales + n * host.groupsPerRow
        let packsPerGroup = groupSize / QuantizationFormat.codesPerPack
        let nibble = _mm256_set1_epi8(0x0F)
        var acc = SIMD8<Float>()
        @inline(__always) func pairSum(_ c: __m256i, _ pair: Int) -> SIMD8<Float> {
            let xs = UnsafeRawPointer(activations + 64 * pair)
            // Intrinsics, not SIMD32<UInt8> operators: the standard library's 32-lane byte shift is a lane loop.
            let low = _mm256_and_si256(c, nibble), high = _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble)
            var dot = _mm256_maskz_dpbusd_epi32(0xFF, _mm256_setzero_si256(), low, xs.loadUnaligned(as: __m256i.self))
            dot = _mm256_maskz_dpbusd_epi32(0xFF, dot, high, xs.loadUnaligned(fromByteOffset: 32, as: __m256i.self))
            let sums: SIMD8<Float> = _mm256_cvtepi32_ps(dot)
            return sums * UnsafeRawPointer(activationScales + 8 * pair).loadUnaligned(as: SIMD8<Float>.self)
        }
        @inline(__always) func weightScales(_ pair: Int) -> SIMD8<Float> {
            if packsPerGroup == 1 {
                let a = Float(scales[2 * pair]), b = 2 * pair + 1 < packs ? Float(scales[2 * pair + 1]) : 0
                return SIMD8(a, a, a, a, b, b, b, b)
            }
            return SIMD8(repeating: Float(scales[2 * pair / packsPerGroup]))
        }
        var pair = 0
        while 2 * pair + 1 < packs {
            acc.addProduct(pairSum(codes.loadUnaligned(fromByteOffset: 32 * pair, as: __m256i.self), pair), weightScales(pair))
            pair += 1
        }
        if 2 * pair < packs {
            // The last pack alone: its 16 bytes, and zeros where pack B would be (its activations are zeros too).
            let c = _mm256_zextsi128_si256(codes.loadUnaligned(fromByteOffset: 32 * pair, as: __m128i.self))
            acc.addProduct(pairSum(c, pair), weightScales(pair))
        }
        return acc.sum() + offsetTerm(offsets: host.offsets + n * host.groupsPerRow, groupSums: groupSums, groups: host.groupsPerRow)
    }
    #endif
}
