/* What the project's convolution kernels (esc2c_conv_s8_fast.c, esc2c_conv_s8_small.c) share, internal to the
 * runtime's sources: widening int8 taps to int16 pairs for SMLAD, and the per-channel requantization, split
 * into what depends on the channel only (computed once per call into a table) and the per-output arithmetic.
 */
#ifndef ESC2C_CONV_COMMON_H
#define ESC2C_CONV_COMMON_H

#include <stdint.h>
#include <string.h>

#include "esc2c_runtime.h" /* esc2c_mult_t, esc2c_round_f32 */

static inline uint32_t pack16(int32_t lo, int32_t hi)
{
    return (uint32_t)(uint16_t)lo | ((uint32_t)(uint16_t)hi << 16);
}

/* 4 int8 values src[0..3] + offset -> (src[0], src[2]) and (src[1], src[3]) int16 pairs */
static inline void widen4(const int8_t *src, uint32_t off2, int32_t off, uint32_t *w02, uint32_t *w13)
{
#if defined(__ARM_FEATURE_DSP)
    uint32_t v, a, b;
    (void)off;
    memcpy(&v, src, 4);
    __asm__("sxtab16 %0, %1, %2" : "=r"(a) : "r"(off2), "r"(v));
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(b) : "r"(off2), "r"(v));
    *w02 = a;
    *w13 = b;
#else
    (void)off2;
    *w02 = pack16(src[0] + off, src[2] + off);
    *w13 = pack16(src[1] + off, src[3] + off);
#endif
}

/* Per-channel constants, computed by each kernel into a table on its stack before the outputs that use
 * them: the bias and arm_nn_requantize split into what depends on the channel only.
 * Double rounding: high = doubling_high_mult(val << left, mult), then divide by 2^right with ties away from
 * zero (remainder against mask/2, one more for negative values), all exact in 32 bits like CMSIS-NN.
 * Single rounding: (prod >> (30 - shift) + 1) >> 1 == (prod + 2^(30 - shift)) >> (31 - shift); for
 * shift <= -1 that is the high word of (prod + 2^(30 - shift)) shifted right by -shift - 1. */
typedef struct
{
    int32_t bias;
    esc2c_mult_t mult;
#if defined(ESC2C_REQUANT_FLOAT)
    /* onnxruntime contract: round half to even of float(acc) * scale, nothing else per channel */
#elif defined(CMSIS_NN_USE_SINGLE_ROUNDING)
    int32_t high_only;
    int32_t shift; /* -shift - 1 when high_only, else the shift */
    int64_t round;
#else
    int32_t left, right, mask, half;
#endif
} chan_t;

static inline void chan_setup(chan_t *c, int32_t bias, esc2c_mult_t mult, int32_t shift)
{
    c->bias = bias;
    c->mult = mult;
#if defined(ESC2C_REQUANT_FLOAT)
    (void)shift;
#elif defined(CMSIS_NN_USE_SINGLE_ROUNDING)
    c->high_only = shift <= -1;
    c->shift = c->high_only ? -shift - 1 : shift;
    c->round = (int64_t)1 << (30 - shift);
#else
    c->left = shift > 0 ? shift : 0;
    c->right = shift > 0 ? 0 : -shift;
    c->mask = (int32_t)(((uint32_t)1 << c->right) - 1u);
    c->half = c->mask >> 1;
#endif
}

static inline int32_t chan_requant(const chan_t *c, int32_t acc)
{
    const int32_t val = acc + c->bias;
#if defined(ESC2C_REQUANT_FLOAT)
    return esc2c_round_f32((float)val * c->mult);
#elif defined(CMSIS_NN_USE_SINGLE_ROUNDING)
    const int64_t prod = (int64_t)val * (int64_t)c->mult;
    if (c->high_only)
    {
        return (int32_t)((prod + c->round) >> 32) >> c->shift;
    }
    const int64_t res = prod >> (30 - c->shift);
    return (int32_t)((res + 1) >> 1);
#else
    const int32_t v = (int32_t)((uint32_t)val << c->left);
    const int32_t high = (int32_t)(((int64_t)v * (int64_t)c->mult + ((int64_t)1 << 30)) >> 31);
    const int32_t res = high >> c->right;
    const int32_t threshold = c->half + (int32_t)((uint32_t)high >> 31);
    return res + ((high & c->mask) > threshold);
#endif
}

/* + out_offset, clamped to [act_min, act_max]; hi127: act_max is 127 (one saturation instruction). */
static inline int8_t clamp_out(int32_t v, int32_t out_offset, int32_t act_min, int32_t act_max, const int hi127)
{
    v += out_offset;
    if (hi127)
    {
#if defined(__ARM_FEATURE_DSP)
        __asm__("ssat %0, #8, %1" : "=r"(v) : "r"(v));
#else
        v = v > 127 ? 127 : v;
#endif
    }
    else
    {
        v = v > act_max ? act_max : v;
    }
    v = v < act_min ? act_min : v;
    return (int8_t)v;
}

#endif /* ESC2C_CONV_COMMON_H */
