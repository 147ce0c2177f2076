/*
 * rope (float64 angles): rotary position embedding in place, GGUF LLaMA "normal" layout. In each head
 * of headDim channels, the pair (2i, 2i+1), 2i < ropeDims, of token t rotates by
 * positions[t] * base^(-2i / ropeDims).                          (must match ReferenceEngine.rope)
 *
 * The reference computes the angle and the rotation in float64 and the conformance bound is an
 * NMSE of 1e-11, while angles reach thousands of radians: float32 angles are off by ~1e-4 rad. So
 * this variant (for devices with shaderFloat64; the engine enables it) computes base^x, the angle,
 * its reduction and sin/cos in float64 with series (GLSL has no float64 exp/log/sin/cos), and
 * rotates in float64. rope_f32.comp is the float32 fallback.
 *
 * Bindings (set 0): 0 data (float32, rotated in place), 1 positions (int32).
 * Push constants:   rows, columns, headDim, ropeDims, dataOffset, dataStride, positionsOffset,
 *                   base (float bits).
 * Work-groups:      (ceil(heads * ropeDims / 2 / QTALE_WG), rows); invocation x owns pair x of token y.
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) buffer Data { float data[]; };
layout(set = 0, binding = 1) readonly buffer Positions { int positions[]; };

layout(push_constant) uniform Parameters {
    int rows, columns, headDim, ropeDims, dataOffset, dataStride, positionsOffset;
    float base;
} p;

const double LN2_HI = 6.93147180369123816490e-01LF;   // ln 2 = LN2_HI + LN2_LO (fdlibm split)
const double LN2_LO = 1.90821492927058770002e-10LF;
const double LN2 = 0.69314718055994530942LF;
const double HALF_PI = 1.57079632679489661923LF;
const double HALF_PI_LO = 6.12323399573676603587e-17LF;  // pi/2 - HALF_PI

/* ln(x) for x > 0: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s), s = (m-1)/(m+1),
 * |s| <= 0.172: atanh(s) / s = sum s^2k / (2k+1), to k = 12 (error below 1e-19). */
double ln64(double x) {
    int e;
    double m = frexp(x, e);
    if (m < 0.70710678118654752440LF) { m *= 2.0LF; e -= 1; }
    double s = (m - 1.0LF) / (m + 1.0LF), z = s * s;
    double series = 1.0LF / 25.0LF;
    series = fma(series, z, 1.0LF / 23.0LF); series = fma(series, z, 1.0LF / 21.0LF);
    series = fma(series, z, 1.0LF / 19.0LF); series = fma(series, z, 1.0LF / 17.0LF);
    series = fma(series, z, 1.0LF / 15.0LF); series = fma(series, z, 1.0LF / 13.0LF);
    series = fma(series, z, 1.0LF / 11.0LF); series = fma(series, z, 1.0LF / 9.0LF);
    series = fma(series, z, 1.0LF / 7.0LF);  series = fma(series, z, 1.0LF / 5.0LF);
    series = fma(series, z, 1.0LF / 3.0LF);  series = fma(series, z, 1.0LF);
    return 2.0LF * s * series + double(e) * LN2;
}

/* exp(x) for moderate x: x = k ln2 + r, |r| <= ln2 / 2, Taylor series of e^r to r^16. */
double exp64(double x) {
    double k = round(x / LN2);
    double r = (x - k * LN2_HI) - k * LN2_LO;
    double e = 1.0LF / 20922789888000.0LF;                       // 1/16!
    e = fma(e, r, 1.0LF / 1307674368000.0LF); e = fma(e, r, 1.0LF / 87178291200.0LF);
    e = fma(e, r, 1.0LF / 6227020800.0LF);    e = fma(e, r, 1.0LF / 479001600.0LF);
    e = fma(e, r, 1.0LF / 39916800.0LF);      e = fma(e, r, 1.0LF / 3628800.0LF);
    e = fma(e, r, 1.0LF / 362880.0LF);        e = fma(e, r, 1.0LF / 40320.0LF);
    e = fma(e, r, 1.0LF / 5040.0LF);          e = fma(e, r, 1.0LF / 720.0LF);
    e = fma(e, r, 1.0LF / 120.0LF);           e = fma(e, r, 1.0LF / 24.0LF);
    e = fma(e, r, 1.0LF / 6.0LF);             e = fma(e, r, 0.5LF);
    e = fma(e, r, 1.0LF);                     e = fma(e, r, 1.0LF);
    return ldexp(e, int(k));
}

/* sin r and cos r for |r| <= pi/4: Taylor series to r^19 and r^18 (error below 1e-17). */
void sincos64(double r, out double s, out double c) {
    double z = r * r;
    double ps = -1.0LF / 121645100408832000.0LF;                  // -1/19!
    ps = fma(ps, z, 1.0LF / 355687428096000.0LF);  ps = fma(ps, z, -1.0LF / 1307674368000.0LF);
    ps = fma(ps, z, 1.0LF / 6227020800.0LF);       ps = fma(ps, z, -1.0LF / 39916800.0LF);
    ps = fma(ps, z, 1.0LF / 362880.0LF);           ps = fma(ps, z, -1.0LF / 5040.0LF);
    ps = fma(ps, z, 1.0LF / 120.0LF);              ps = fma(ps, z, -1.0LF / 6.0LF);
    s = fma(r * z, ps, r);
    double pc = 1.0LF / 6402373705728000.0LF;                    // 1/18!
    pc = fma(pc, z, -1.0LF / 20922789888000.0LF);  pc = fma(pc, z, 1.0LF / 87178291200.0LF);
    pc = fma(pc, z, -1.0LF / 479001600.0LF);       pc = fma(pc, z, 1.0LF / 3628800.0LF);
    pc = fma(pc, z, -1.0LF / 40320.0LF);           pc = fma(pc, z, 1.0LF / 720.0LF);
    pc = fma(pc, z, -1.0LF / 24.0LF);              pc = fma(pc, z, 0.5LF);
    c = fma(-z, pc, 1.0LF);
}

void main() {
    uint pair = gl_GlobalInvocationID.x;
    int t = int(gl_WorkGroupID.y);
    if (t >= p.rows || p.headDim <= 0 || p.ropeDims < 2) return;
    uint pairsPerHead = uint(p.ropeDims / 2);
    uint heads = uint(p.columns / p.headDim);
    if (pair >= heads * pairsPerHead) return;
    uint head = pair / pairsPerHead, i = pair % pairsPerHead;

    double position = double(positions[p.positionsOffset + t]);
    double frequency = exp64(-double(2u * i) / double(p.ropeDims) * ln64(double(p.base)));
    double angle = position * frequency;

    // Quadrant reduction: angle = q pi/2 + r, |r| <= pi/4; then the series for sin r and cos r.
    double q = round(angle / HALF_PI);
    double r = (angle - q * HALF_PI) - q * HALF_PI_LO;
    double s, c;
    sincos64(r, s, c);
    int quadrant = int(mod(q, 4.0LF));
    double sine = quadrant == 0 ? s : quadrant == 1 ? c : quadrant == 2 ? -s : -c;
    double cosine = quadrant == 0 ? c : quadrant == 1 ? -s : quadrant == 2 ? -c : s;

    int index = p.dataOffset + t * p.dataStride + int(head) * p.headDim + 2 * int(i);
    double x0 = double(data[index]), x1 = double(data[index + 1]);
    data[index] = float(x0 * cosine - x1 * sine);
    data[index + 1] = float(x0 * sine + x1 * cosine);
}
