/*
 * matmul_vec: output[0][n] = sum_k input[0][k] * dequantize(weight)[n][k], one token (decode);
 * output[0][n] += that sum when accumulate is 1.
 * Must match ReferenceEngine.matmul (float32 accumulation here).
 *
 * Bindings (set 0), whole engine buffers:
 *   0 input    uniform texel buffer, R32G32B32A32_SFLOAT (four floats per texel)
 *   1 codes    uniform texel buffer, R32G32B32A32_UINT (16 bytes per texel; rows are texel aligned
 *              for 4 and 8 bits, word aligned for 3 bits)
 *   2 scales   uniform texel buffer, R32_UINT (two binary16 per texel)
 *   3 offsets  uniform texel buffer, R32_UINT
 *   4 output   storage buffer, float32
 * Texel buffers because llvmpipe fetches a texel for every invocation at once but loads storage
 * buffers one invocation at a time (see VulkanBinding in Sources/QTaleVulkan/VulkanPipelines.swift).
 * Push constants: bits, groupSize, K, N, codeBytesPerRow, groupsPerRow, T (= 1), inputOffset,
 *                 inputStride, outputOffset, outputStride, accumulate, firstRow (the weight
 *                 buffers' row that is row 0 of the matrix; row indices below are buffer rows).
 * Work-groups:    (ceil(N / ROWS), 1), ROWS = KernelPlanner.matvecRowsPerGroup, of LANES = ROWS / RPI
 *                 invocations (not QTALE_WG: the grid depends on ROWS only, and on llvmpipe idle
 *                 invocations still run all code outside loops). Invocation i computes the RPI rows
 *                 group * ROWS + i + r * LANES, walking their packs of 32 codes in order; the 32 inputs
 *                 of a pack are the same for every invocation and are fetched once per pack for all
 *                 RPI rows. Per pack: scale * dot(x, codes) + offset * sum(x).
 *
 * Specialization constants (the engine builds one pipeline per variant and picks it from the
 * parameters): 0 QTALE_WG (unused); 1 RPI, rows per invocation (1, 2, 4 or 8; 8 on CPU devices, where
 * fewer invocations each fetch a pack's inputs once for eight rows); 2 BITS (3, 4 or 8, = the bits
 * parameter); 3 ALIGNED (inputOffset % 4 == 0: inputs are whole texels); 4 PARTIAL (K % 32 != 0);
 * 5 LANES, the work-group size; 6 ROWS (= LANES * RPI); 7 PAIRED (groupSize 32 and groupsPerRow even:
 * the scales and offsets of packs 2j and 2j+1 of every row share one texel, fetched once).
 *
 * Written for llvmpipe's code generator, which executes both sides of every branch under a mask
 * (only loops are skipped when no invocation is active) and spills arrays that are indexed
 * dynamically: so variants are specialization constants rather than branches, arrays are only
 * indexed with constants, and sums are spelled out (with fma) rather than dot() on vectors.
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(constant_id = 5) const uint LANES = 64;
layout(constant_id = 6) const uint ROWS = 64;
layout(constant_id = 7) const bool PAIRED = false;
layout(local_size_x_id = 5) in;
layout(constant_id = 1) const int RPI = 1;
layout(constant_id = 2) const int BITS = 4;
layout(constant_id = 3) const bool ALIGNED = true;
layout(constant_id = 4) const bool PARTIAL = false;

layout(set = 0, binding = 0) uniform samplerBuffer inputs;
layout(set = 0, binding = 1) uniform usamplerBuffer codes;
layout(set = 0, binding = 2) uniform usamplerBuffer scales;
layout(set = 0, binding = 3) uniform usamplerBuffer offsets;
layout(set = 0, binding = 4) restrict buffer Output { float outputs[]; };

layout(push_constant) uniform Parameters {
    int bits, groupSize, K, N, codeBytesPerRow, groupsPerRow, T, inputOffset, inputStride, outputOffset, outputStride, accumulate, firstRow;
} p;

vec4 x[8];   // the 32 inputs of the current pack: x[i] holds k = 4i .. 4i+3
float xsum;  // their sum
/* For 4 bits, the inputs pre-multiplied by the place value of their code in a word, so that a code
 * is used masked but unshifted: xl[i] pairs with the low nibbles of word i (c[4i .. 4i+3] at bits
 * 0, 8, 16, 24), xh[i] with the high nibbles (c[16+4i ..] at bits 4, 12, 20; the last is shifted down). */
vec4 xl[4], xh[4];
const vec4 LOW_PLACES = vec4(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 16777216.0);
const vec4 HIGH_PLACES = vec4(1.0 / 16.0, 1.0 / 4096.0, 1.0 / 1048576.0, 1.0);

void prepareInputs(int bits) {
    vec4 s = (x[0] + x[1]) + (x[2] + x[3]) + (x[4] + x[5]) + (x[6] + x[7]);
    xsum = (s.x + s.y) + (s.z + s.w);
    if (bits == 4) {
        xl[0] = x[0] * LOW_PLACES; xl[1] = x[1] * LOW_PLACES; xl[2] = x[2] * LOW_PLACES; xl[3] = x[3] * LOW_PLACES;
        xh[0] = x[4] * HIGH_PLACES; xh[1] = x[5] * HIGH_PLACES; xh[2] = x[6] * HIGH_PLACES; xh[3] = x[7] * HIGH_PLACES;
    }
}

/* The inputs of a full pack starting at element `first`, a multiple of 4 (the fast path). */
void loadAligned(int first, int bits) {
    int t = first >> 2;
    x[0] = texelFetch(inputs, t);     x[1] = texelFetch(inputs, t + 1);
    x[2] = texelFetch(inputs, t + 2); x[3] = texelFetch(inputs, t + 3);
    x[4] = texelFetch(inputs, t + 4); x[5] = texelFetch(inputs, t + 5);
    x[6] = texelFetch(inputs, t + 6); x[7] = texelFetch(inputs, t + 7);
    prepareInputs(bits);
}

/* Four inputs starting `shift` (0..3) elements into texel a, continuing into texel b. */
vec4 funnel(vec4 a, vec4 b, int shift) {
    return shift == 0 ? a : shift == 1 ? vec4(a.yzw, b.x) : shift == 2 ? vec4(a.zw, b.xy) : vec4(a.w, b.xyz);
}

/* Zeroes the inputs of x[i] at or past `valid`. */
vec4 clip(vec4 v, int i, int valid) {
    return vec4(4 * i < valid ? v.x : 0.0, 4 * i + 1 < valid ? v.y : 0.0, 4 * i + 2 < valid ? v.z : 0.0, 4 * i + 3 < valid ? v.w : 0.0);
}

/* The inputs of the pack starting at element `first`, of which `valid` (1..32) are in range; any
 * alignment. Fetches only texels that hold those inputs (never past the buffer) and zeroes the rest. */
void loadGeneral(int first, int valid, int bits) {
    int t = first >> 2, shift = first & 3, last = (first + valid - 1) >> 2;
    vec4 v0 = texelFetch(inputs, t);
    vec4 v1 = t + 1 <= last ? texelFetch(inputs, t + 1) : vec4(0.0);
    vec4 v2 = t + 2 <= last ? texelFetch(inputs, t + 2) : vec4(0.0);
    vec4 v3 = t + 3 <= last ? texelFetch(inputs, t + 3) : vec4(0.0);
    vec4 v4 = t + 4 <= last ? texelFetch(inputs, t + 4) : vec4(0.0);
    vec4 v5 = t + 5 <= last ? texelFetch(inputs, t + 5) : vec4(0.0);
    vec4 v6 = t + 6 <= last ? texelFetch(inputs, t + 6) : vec4(0.0);
    vec4 v7 = t + 7 <= last ? texelFetch(inputs, t + 7) : vec4(0.0);
    vec4 v8 = t + 8 <= last ? texelFetch(inputs, t + 8) : vec4(0.0);
    x[0] = clip(funnel(v0, v1, shift), 0, valid); x[1] = clip(funnel(v1, v2, shift), 1, valid);
    x[2] = clip(funnel(v2, v3, shift), 2, valid); x[3] = clip(funnel(v3, v4, shift), 3, valid);
    x[4] = clip(funnel(v4, v5, shift), 4, valid); x[5] = clip(funnel(v5, v6, shift), 5, valid);
    x[6] = clip(funnel(v6, v7, shift), 6, valid); x[7] = clip(funnel(v7, v8, shift), 7, valid);
    prepareInputs(bits);
}

float code(uint masked) { return float(int(masked)); }   // values below 2^31: a signed conversion

/* 4 bits: byte j of a pack holds c[j] (low nibble) and c[j + 16] (high nibble); word i holds bytes 4i..4i+3. */
float dot4word(vec4 lo, vec4 hi, uint v) {
    float a = fma(lo.y, code(v & 0xF00u), lo.x * code(v & 0xFu));
    float b = fma(lo.w, code(v & 0xF000000u), lo.z * code(v & 0xF0000u));
    float c = fma(hi.y, code(v & 0xF000u), hi.x * code(v & 0xF0u));
    float d = fma(hi.w, code(v >> 28), hi.z * code(v & 0xF00000u));
    return (a + b) + (c + d);
}

float dot4(uvec4 w) {
    return (dot4word(xl[0], xh[0], w.x) + dot4word(xl[1], xh[1], w.y)) + (dot4word(xl[2], xh[2], w.z) + dot4word(xl[3], xh[3], w.w));
}

/* 8 bits: byte j holds c[j]. */
float dot8word(vec4 xs, uint v) {
    return fma(xs.y, code((v >> 8) & 255u), xs.x * code(v & 255u)) + fma(xs.w, code(v >> 24), xs.z * code((v >> 16) & 255u));
}

float dot8(uvec4 a, uvec4 b) {
    return ((dot8word(x[0], a.x) + dot8word(x[1], a.y)) + (dot8word(x[2], a.z) + dot8word(x[3], a.w)))
         + ((dot8word(x[4], b.x) + dot8word(x[5], b.y)) + (dot8word(x[6], b.z) + dot8word(x[7], b.w)));
}

/* 3 bits: byte j (< 8) holds the low two bits of c[j], c[j+8], c[j+16], c[j+24] (bits 0-1, 2-3,
 * 4-5, 6-7); word 2 bit i is bit 2 of c[i]. xs holds the inputs of codes c0 .. c0+3, whose low bits
 * are in the four bytes of `lowWord` at bit 2q (c0 = 8q + 4h). */
float dot3quad(vec4 xs, uint lowWord, uint q, uint high, uint c0) {
    uint s = 2u * q;
    return fma(xs.x, code(((lowWord >> s) & 3u) | (((high >> c0) & 1u) << 2)),
               xs.y * code(((lowWord >> (s + 8u)) & 3u) | (((high >> (c0 + 1u)) & 1u) << 2)))
         + fma(xs.z, code(((lowWord >> (s + 16u)) & 3u) | (((high >> (c0 + 2u)) & 1u) << 2)),
               xs.w * code(((lowWord >> (s + 24u)) & 3u) | (((high >> (c0 + 3u)) & 1u) << 2)));
}

float dot3(uint w0, uint w1, uint w2) {
    return ((dot3quad(x[0], w0, 0u, w2, 0u) + dot3quad(x[1], w1, 0u, w2, 4u))
          + (dot3quad(x[2], w0, 1u, w2, 8u) + dot3quad(x[3], w1, 1u, w2, 12u)))
         + ((dot3quad(x[4], w0, 2u, w2, 16u) + dot3quad(x[5], w1, 2u, w2, 20u))
          + (dot3quad(x[6], w0, 3u, w2, 24u) + dot3quad(x[7], w1, 3u, w2, 28u)));
}

uint pick(uvec4 a, uvec4 b, int i) {   // word i (0..6) of the eight words a, b
    return i == 0 ? a.x : i == 1 ? a.y : i == 2 ? a.z : i == 3 ? a.w : i == 4 ? b.x : i == 5 ? b.y : b.z;
}

/* dot(x, codes of pack pk) of `row`. */
float packDot(int bits, int pk, int row) {
    if (bits == 4) return dot4(texelFetch(codes, row * (p.codeBytesPerRow / 16) + pk));
    if (bits == 8) {
        int t = row * (p.codeBytesPerRow / 16) + 2 * pk;
        return dot8(texelFetch(codes, t), texelFetch(codes, t + 1));
    }
    // A 12-byte pack may straddle two texels; the second is fetched only when it exists.
    int word = row * (p.codeBytesPerRow / 4) + 3 * pk, t = word >> 2, s = word & 3;
    int lastTexel = ((p.firstRow + p.N) * p.codeBytesPerRow - 1) / 16;
    uvec4 a = texelFetch(codes, t), b = texelFetch(codes, min(t + 1, lastTexel));
    return dot3(pick(a, b, s), pick(a, b, s + 1), pick(a, b, s + 2));
}

/* Binary16 number i of a scales or offsets buffer (texels hold two). */
float halfAt(usamplerBuffer b, int i) {
    vec2 pair = unpackHalf2x16(texelFetch(b, i >> 1).x);
    return (i & 1) == 0 ? pair.x : pair.y;
}

/* scale * dot + offset * sum(x) for pack pk of `row`, group g of the row. */
float packTerm(int bits, int pk, int row, int g) {
    int i = row * p.groupsPerRow + g;
    return fma(halfAt(scales, i), packDot(bits, pk, row), halfAt(offsets, i) * xsum);
}

/* The same with the scale and offset given. */
float packTermWith(int bits, int pk, int row, float scale, float offset) {
    return fma(scale, packDot(bits, pk, row), offset * xsum);
}

/* The row slots: slot r of invocation i is row group * ROWS + i + r * LANES, slots 0-3 in `rows` and
 * `acc`, 4-7 in `rows2` and `acc2`. RPI is a constant, so unused slots vanish. */
#define FOR_SLOTS(S) \
    S(0, rows.x, acc.x) \
    if (RPI > 1) { S(1, rows.y, acc.y) } \
    if (RPI > 2) { S(2, rows.z, acc.z) S(3, rows.w, acc.w) } \
    if (RPI > 4) { S(4, rows2.x, acc2.x) S(5, rows2.y, acc2.y) S(6, rows2.z, acc2.z) S(7, rows2.w, acc2.w) }

#define TERM(r, row, a) a += packTerm(bits, pk, row, g);
#define FETCH_PAIR(r, row, a) { int i = (row * p.groupsPerRow + pk) >> 1; \
    scalePair[r] = unpackHalf2x16(texelFetch(scales, i).x); offsetPair[r] = unpackHalf2x16(texelFetch(offsets, i).x); }
#define TERM_FIRST(r, row, a) a += packTermWith(bits, pk, row, scalePair[r].x, offsetPair[r].x);
#define TERM_SECOND(r, row, a) a += packTermWith(bits, pk + 1, row, scalePair[r].y, offsetPair[r].y);

vec2 scalePair[8], offsetPair[8];

/* Sums over the full packs; `bits` and `aligned` are constants after inlining. */
void rowDots(int bits, bool aligned, ivec4 rows, ivec4 rows2, inout vec4 acc, inout vec4 acc2) {
    int fullPacks = p.K / 32;
    if (PAIRED) {
        // Group size 32 and an even number of groups per row: pack pairs (2j, 2j+1) share a texel of
        // scales and one of offsets in every row.
        for (int pk = 0; pk + 1 < fullPacks; pk += 2) {
            FOR_SLOTS(FETCH_PAIR)
            if (aligned) loadAligned(p.inputOffset + pk * 32, bits); else loadGeneral(p.inputOffset + pk * 32, 32, bits);
            FOR_SLOTS(TERM_FIRST)
            if (aligned) loadAligned(p.inputOffset + pk * 32 + 32, bits); else loadGeneral(p.inputOffset + pk * 32 + 32, 32, bits);
            FOR_SLOTS(TERM_SECOND)
        }
        // An odd last full pack (a loop, so that it costs nothing when there is none).
        for (int pk = fullPacks & ~1; pk < fullPacks; pk++) {
            int g = pk;
            if (aligned) loadAligned(p.inputOffset + pk * 32, bits); else loadGeneral(p.inputOffset + pk * 32, 32, bits);
            FOR_SLOTS(TERM)
        }
    } else {
        int packsPerGroup = p.groupSize / 32;
        int g = 0, inGroup = 0;
        for (int pk = 0; pk < fullPacks; pk++) {
            if (aligned) loadAligned(p.inputOffset + pk * 32, bits); else loadGeneral(p.inputOffset + pk * 32, 32, bits);
            FOR_SLOTS(TERM)
            inGroup++;
            g = inGroup == packsPerGroup ? g + 1 : g;
            inGroup = inGroup == packsPerGroup ? 0 : inGroup;
        }
    }
}

void tail(int bits, ivec4 rows, ivec4 rows2, inout vec4 acc, inout vec4 acc2) {
    int pk = p.K / 32, g = pk * 32 / p.groupSize;
    loadGeneral(p.inputOffset + pk * 32, p.K - pk * 32, bits);
    FOR_SLOTS(TERM)
}

void store(uint n, float value) {
    if (n < uint(p.N)) {
        int o = p.outputOffset + int(n);
        outputs[o] = p.accumulate != 0 ? outputs[o] + value : value;
    }
}

void main() {
    uint lid = gl_LocalInvocationID.x;
    // Slot r of invocation i holds row group * ROWS + i + r * LANES; rows past N compute row 0.
    uvec4 n = gl_WorkGroupID.x * ROWS + lid + uvec4(0u, 1u, 2u, 3u) * LANES;
    uvec4 n2 = n + 4u * LANES;
    ivec4 rows = p.firstRow + ivec4(mix(uvec4(0u), n, lessThan(n, uvec4(uint(p.N)))));
    ivec4 rows2 = p.firstRow + ivec4(mix(uvec4(0u), n2, lessThan(n2, uvec4(uint(p.N)))));
    vec4 acc = vec4(0.0), acc2 = vec4(0.0);
    rowDots(BITS, ALIGNED, rows, rows2, acc, acc2);
    if (PARTIAL) tail(BITS, rows, rows2, acc, acc2);
    store(n.x, acc.x);
    if (RPI > 1) store(n.y, acc.y);
    if (RPI > 2) { store(n.z, acc.z); store(n.w, acc.w); }
    if (RPI > 4) { store(n2.x, acc2.x); store(n2.y, acc2.y); store(n2.z, acc2.z); store(n2.w, acc2.w); }
}
