#if QTALE_AVX512_VNNI
import _Builtin_intrinsics.intel
#endif
import CMemoryHints
import QTaleCore

/// How the CPU engine's 4-bit decode matmuls (one token) treat the input vector.
public enum DecodeActivations: String, Sendable {
    /// float32 fused dequant-dot, exact up to summation order; every CPU has it.
    case float32
    /// The input split into three int8 terms per pack of 32, `x ≈ d·(q₀ + q₁/128 + q₂/128²)` with
    /// `d = max|x| / 127`, dotted with the codes in exact integer arithmetic (AVX-512 VNNI). The split's
    /// error is at most `d / (2·128²)`, near float32's rounding of the pack's largest element, so results
    /// match float32's accuracy (conformance NMSE ≤ 1e-10, measured near 1e-13) while decode issues
    /// about half the float path's instructions per weight. The default where the build has VNNI.
    case splitInt8
    /// One int8 term per pack, as llama.cpp's CPU path computes: fewer instructions still, at the
    /// price of rounding the activations: a matmul's output moves by NMSE up to about 1e-4 (conformance
    /// bound 5e-4, as ggml's), SmolLM2's decode logits by a median 3e-3.
    case int8

    /// What ``CPUEngine`` uses unless told otherwise: the split where this build has VNNI.
    public static var preferred: DecodeActivations { CPUEngine.int8DecodeAvailable ? .splitInt8 : .float32 }
}

extension CPUEngine {
    /// Whether this build runs the int8 decode modes (Package.swift defines QTALE_AVX512_VNNI when the
    /// build machine, whose CPU the binary is tuned for, has AVX-512 VNNI).
    public static var int8DecodeAvailable: Bool {
        #if QTALE_AVX512_VNNI
        true
        #else
        false
        #endif
    }

    /// The most int8 terms a pack is split into (``DecodeActivations/splitInt8``).
    static let maxInt8Terms = 3

    /// Packs the kernel reads at once: one 512-bit load of 4-bit codes.
    static let packsPerQuad = 4

    /// Scratch floats the int8 activations (up to ``maxInt8Terms`` terms) and their scales take, after
    /// the padded input and group sums.
    static func int8ActivationFloats(packs: Int) -> Int { (packs + packsPerQuad - 1) / packsPerQuad * (32 * maxInt8Terms + 16) }

    /// One token through 4-bit weights with the input split into int8 terms as `activations` says: rows `rows` of `out`
    /// (added to them with `accumulate`).
    /// `x` is the zero-padded input (`packs * 32` floats), `groupSums` its per-group sums, `space` at
    /// least ``int8ActivationFloats(packs:)`` floats of this worker's scratch.
    func int8Decode(_ activations: DecodeActivations, host: HostQuantizedMatrix, x: UnsafePointer<Float>, groupSums: UnsafePointer<Float>, packs: Int,
                    groupSize: Int, rows: Range<Int>, out: UnsafeMutablePointer<Float>, accumulate: Bool, space: UnsafeMutableRawPointer) {
        #if QTALE_AVX512_VNNI
        // One specialisation per term count, so the kernel's term loops unroll.
        switch activations {
        case .float32: preconditionFailure("int8Decode: float32 activations take the float path")
        case .int8: int8Decode(OneInt8Term.self, host: host, x: x, groupSums: groupSums, packs: packs, groupSize: groupSize,
                           rows: rows, out: out, accumulate: accumulate, space: space)
        case .splitInt8: int8Decode(ThreeInt8Terms.self, host: host, x: x, groupSums: groupSums, packs: packs, groupSize: groupSize,
                            rows: rows, out: out, accumulate: accumulate, space: space)
        }
        #else
        preconditionFailure("int8 decode needs AVX-512 VNNI (CPUEngine.int8DecodeAvailable)")
        #endif
    }

    #if QTALE_AVX512_VNNI
    private func int8Decode<Terms: Int8TermCount>(_: Terms.Type, host: HostQuantizedMatrix, x: UnsafePointer<Float>,
                                                  groupSums: UnsafePointer<Float>, packs: Int, groupSize: Int, rows: Range<Int>,
                                                  out: UnsafeMutablePointer<Float>, accumulate: Bool, space: UnsafeMutableRawPointer) {
        let quads = (packs + Self.packsPerQuad - 1) / Self.packsPerQuad
        let activations = space.bindMemory(to: Int8.self, capacity: 128 * Terms.count * quads)
        let scales = (space + 128 * Terms.count * quads).bindMemory(to: Float.self, capacity: 16 * quads)
        Self.quantizeActivations(Terms.self, x, packs: packs, into: activations, scales: scales)
        for n in rows {
            let sum = Self.int8DotRow(Terms.self, host: host, row: n, activations: UnsafePointer(activations),
                                      activationScales: UnsafePointer(scales), groupSums: groupSums, packs: packs, groupSize: groupSize)
            out[n] = accumulate ? out[n] + sum : sum
        }
    }

    /// Each int8 term after the first holds what the one before left over, times 2^int8TermBits: a power
    /// of two, so the kernel combines terms by shifting exact integer sums. The remainder of a rounding
    /// is within ±0.5, so later terms stay within ±64.
    static let int8TermBits: UInt32 = 7
    static let int8TermBase = Float(1 << int8TermBits)

    /// Writes, per quad of packs (A, B, C, D), `Terms.count` blocks of 128 bytes, each in the order the
    /// kernel's two 512-bit `vpdpbusd` read them: [A 0-15, B 0-15, C 0-15, D 0-15, A 16-31, …, D 16-31];
    /// then 16 floats [e_A ×4, …, e_D ×4], where `x ≈ e · Σ_t q_t · 128^(count-1-t)`, that is
    /// `e = d / 128^(count-1)` with `d = max|x| / 127` (the first term is within ±127). Packs past the
    /// end are zeros.
    static func quantizeActivations<Terms: Int8TermCount>(_: Terms.Type, _ x: UnsafePointer<Float>, packs: Int,
                                                          into bytes: UnsafeMutablePointer<Int8>, scales: UnsafeMutablePointer<Float>) {
        for quad in 0 ..< (packs + packsPerQuad - 1) / packsPerQuad {
            let block = bytes + 128 * Terms.count * quad
            for slot in 0..<packsPerQuad {
                let p = packsPerQuad * quad + slot
                var d: Float = 0
                if p < packs {
                    var a = x.vector(at: 32 * p), b = x.vector(at: 32 * p + 16)
                    // Intrinsics: the standard library's pointwiseMax and max() are lane loops with NaN checks.
                    d = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b))) / 127
                    let inverse = FloatVector(repeating: d > 0 ? 1 / d : 0)
                    a *= inverse
                    b *= inverse
                    for t in 0..<Terms.count {
                        let low = block + 128 * t + 16 * slot
                        a = storeRounded(a, low)
                        b = storeRounded(b, low + 64)
                    }
                } else {
                    for t in 0..<Terms.count {
                        (block + 128 * t + 16 * slot).update(repeating: 0, count: 16)
                        (block + 128 * t + 16 * slot + 64).update(repeating: 0, count: 16)
                    }
                }
                var e = d
                for _ in 1 ..< Terms.count { e /= int8TermBase }
                (scales + 16 * quad + 4 * slot).update(repeating: e, count: 4)
            }
        }
    }

    /// Stores `v` rounded to the nearest integers (|v| ≤ 127.5) as 16 bytes; returns the remainder × ``int8TermBase``.
    @inline(__always)
    private static func storeRounded(_ v: FloatVector, _ bytes: UnsafeMutablePointer<Int8>) -> FloatVector {
        let q = _mm512_cvtps_epi32(v)
        UnsafeMutableRawPointer(bytes).storeBytes(of: _mm512_cvtepi32_epi8(q), as: __m128i.self)
        let rounded: FloatVector = _mm512_cvtepi32_ps(q)
        return (v - rounded) * int8TermBase
    }

    /// How far ahead of the codes it reads the decode loop prefetches, in bytes (a few rows of a large
    /// matrix). The hardware prefetcher alone leaves the split-int8 loop waiting on memory: its
    /// arithmetic fills the out-of-order window, so too few loads are in flight. Measured on Zen 4,
    /// 4096×14336 at 2 threads: 26 → 29–34 GB/s.
    static let codePrefetchDistance = 8192

    /// `Σ_p w_g(p) · e_p · Σ_{k∈p} code_k Σ_t q_tk 128^(count-1-t) + Σ_g offset_g · Σ_{k∈g} x_k`: per
    /// quad of packs and term, low and high nibbles against the matching activation bytes, one 512-bit
    /// `vpdpbusd` each; lanes 4i…4i+3 hold pack i's partial sums. The terms accumulate in one integer
    /// sum, shifted left ``int8TermBits`` before each next term (Horner's rule in base 128, exact: a
    /// lane's sum stays below 2^31), then one convert and the scales. Compared with converting each
    /// term, this halves the work on the multiply pipes, which bound the loop.
    @inline(__always)
    static func int8DotRow<Terms: Int8TermCount>(_: Terms.Type, host: HostQuantizedMatrix, row n: Int, activations: UnsafePointer<Int8>,
                                                 activationScales: UnsafePointer<Float>, groupSums: UnsafePointer<Float>,
                                                 packs: Int, groupSize: Int) -> Float {
        let codes = UnsafeRawPointer(host.codes + n * host.codeBytesPerRow)
        let scales = host.scales + n * host.groupsPerRow
        let packsPerGroup = groupSize / QuantizationFormat.codesPerPack
        let nibble = _mm512_set1_epi8(0x0F)
        // Lane `i` of a quad's 16 lanes belongs to pack `i / 4`.
        let laneToPack = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0)
        @inline(__always) func quadSum(_ c: __m512i, _ quad: Int) -> SIMD16<Float> {
            let xs = UnsafeRawPointer(activations + 128 * Terms.count * quad)
            // Intrinsics, not SIMD64<UInt8> operators: the standard library's byte shift is a lane loop.
            let low = _mm512_and_si512(c, nibble), high = _mm512_and_si512(_mm512_srli_epi16(c, 4), nibble)
            @inline(__always) func addTerm(_ t: Int, to sum: __m512i) -> __m512i {
                let partial = _mm512_dpbusd_epi32(sum, low, xs.loadUnaligned(fromByteOffset: 128 * t, as: __m512i.self))
                return _mm512_dpbusd_epi32(partial, high, xs.loadUnaligned(fromByteOffset: 128 * t + 64, as: __m512i.self))
            }
            var sum = addTerm(0, to: _mm512_setzero_si512())
            for t in 1 ..< Terms.count {
                sum = addTerm(t, to: _mm512_slli_epi32(sum, int8TermBits))
            }
            let sums: SIMD16<Float> = _mm512_cvtepi32_ps(sum)
            return sums * activationScales.vector(at: 16 * quad)
        }
        // Group of a pack: a shift for the usual power-of-two group sizes (a division per pack would
        // cost more than the quad's arithmetic).
        let groupShift = packsPerGroup.trailingZeroBitCount, powerOfTwo = packsPerGroup & (packsPerGroup - 1) == 0
        @inline(__always) func group(_ pack: Int) -> Int { powerOfTwo ? pack >> groupShift : pack / packsPerGroup }
        /// The weight scale of each lane's pack; `count` packs of the quad exist.
        @inline(__always) func weightScales(_ quad: Int, count: Int) -> SIMD16<Float> {
            let first = packsPerQuad * quad
            if packsPerGroup == 1 && count == packsPerQuad {
                let four: SIMD4<Float> = _mm_cvtph_ps(_mm_loadl_epi64(UnsafeRawPointer(scales + first).assumingMemoryBound(to: __m128i.self)))
                return _mm512_permutexvar_ps(laneToPack, _mm512_castps128_ps512(four))
            }
            if powerOfTwo && packsPerGroup >= packsPerQuad {
                // Groups of whole quads: one scale for all four packs.
                return SIMD16(repeating: Float(scales[first >> groupShift]))
            }
            var four = SIMD4<Float>()
            for i in 0..<count { four[i] = Float(scales[group(first + i)]) }
            return _mm512_permutexvar_ps(laneToPack, _mm512_castps128_ps512(four))
        }
        var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
        let whole = packs / packsPerQuad
        var quad = 0
        while quad + 1 < whole {
            // Two quads, two accumulators: the loop-carried add is not the critical path.
            qtale_prefetch(codes + 64 * quad + Self.codePrefetchDistance)
            qtale_prefetch(codes + 64 * quad + Self.codePrefetchDistance + 64)
            acc0.addProduct(quadSum(codes.loadUnaligned(fromByteOffset: 64 * quad, as: __m512i.self), quad),
                            weightScales(quad, count: packsPerQuad))
            acc1.addProduct(quadSum(codes.loadUnaligned(fromByteOffset: 64 * quad + 64, as: __m512i.self), quad + 1),
                            weightScales(quad + 1, count: packsPerQuad))
            quad += 2
        }
        if quad < whole {
            acc0.addProduct(quadSum(codes.loadUnaligned(fromByteOffset: 64 * quad, as: __m512i.self), quad),
                            weightScales(quad, count: packsPerQuad))
            quad += 1
        }
        let rest = packs - packsPerQuad * quad
        if rest > 0 {
            // The last 1-3 packs: a masked load reads only their bytes (the row may end the buffer), and
            // the activations of the missing packs are zeros.
            let c = _mm512_maskz_loadu_epi8((1 << UInt64(16 * rest)) - 1, codes + 64 * quad)
            acc1.addProduct(quadSum(c, quad), weightScales(quad, count: rest))
        }
        return (acc0 + acc1).treeSum + offsetTerm(offsets: host.offsets + n * host.groupsPerRow, groupSums: groupSums, groups: host.groupsPerRow)
    }
    #endif
}

/// How many int8 terms a pack is split into, as a type so each count gets its own specialised kernel.
protocol Int8TermCount {
    static var count: Int { get }
}

enum OneInt8Term: Int8TermCount {
    static var count: Int { 1 }
}

enum ThreeInt8Terms: Int8TermCount {
    static var count: Int { CPUEngine.maxInt8Terms }
}
