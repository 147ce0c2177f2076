/*
 * The packed quantized-weight layout, shared by the OpenCL C and GLSL kernels.
 * Mirrors QuantizationFormat in Sources/QTaleCore/QuantizedLayout.swift, which documents it in full;
 * the conformance suite catches any drift between the two.
 *
 *   w[r][k] = scale[r][k / GROUP] * code[r][k] + offset[r][k / GROUP]     (scale, offset: binary16)
 *
 * Codes come in packs of 32 consecutive codes of one row; a row holds ceil(K / 32) packs, and the
 * codes past K in its last pack are zero. Inside a pack c[0..32):
 *   8 bits: 32 bytes, byte j = c[j]
 *   4 bits: 16 bytes, byte j = c[j] | c[j + 16] << 4
 *   3 bits: 12 bytes, byte j (j < 8) = c[j] & 3 | (c[j+8] & 3) << 2 | (c[j+16] & 3) << 4 | (c[j+24] & 3) << 6,
 *           bytes 8..11 = little-endian uint32 whose bit i is bit 2 of c[i]
 * Groups hold GROUP codes (a multiple of 32); the last group of a row may be shorter.
 */
#ifndef QTALE_QUANT_LAYOUT_H
#define QTALE_QUANT_LAYOUT_H

#define QTALE_CODES_PER_PACK 32
/* Bytes of one pack of 32 codes at `bits` per code. */
#define QTALE_PACK_BYTES(bits) ((bits) * 4)

#endif
