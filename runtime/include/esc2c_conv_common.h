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
    int32_t right;
    int32_t add;   /* the lean path's 2^(right - 1) + (out_offset << right), see chan_setup_lean */
    int32_t bias2; /* the lean path's 2 * bias */
    int32_t left, mask, half;
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

/* The largest |accumulator| a layer can produce before its bias: taps * max|x + in_offset| * 128. */
static inline int64_t acc_bound(int32_t taps, int32_t in_offset)
{
    const int64_t lo = in_offset - 128 < 0 ? 128 - (int64_t)in_offset : (int64_t)in_offset - 128;
    const int64_t hi = in_offset + 127 < 0 ? -127 - (int64_t)in_offset : (int64_t)in_offset + 127;
    return (int64_t)taps * (lo > hi ? lo : hi) * 128;
}

/* The lean requantization, double rounding only, for a channel set up by chan_setup: with shift <= -1
 * (left = 0, right >= 1) and v = 2 * (acc + bias) = 2 * acc + bias2 exact,
 *   high = (v * mult + 2^31) >> 32                  (SMMULR: one instruction for the doubling high multiply)
 *   out  = (high + add - (high < 0)) >> right       (add = 2^(right - 1) + (out_offset << right))
 * equals arm_nn_requantize(acc + bias) + out_offset: the divide by 2^right rounds half away from zero, and
 * out_offset << right passes the shift unchanged. Exact as long as nothing wraps in 32 bits, which holds for
 * every |acc| <= bound when 2 * (bound + |bias|) < 2^31 and |high| + 2^(right - 1) + |out_offset| * 2^right + 2
 * < 2^31 (|high| <= bound + |bias| + 1). Returns 1 when the channel may take the lean path; 0 keeps it on
 * chan_requant (the other rounding modes always do). */
static inline int chan_setup_lean(chan_t *c, int32_t out_offset, int64_t bound)
{
#if defined(ESC2C_REQUANT_FLOAT) || defined(CMSIS_NN_USE_SINGLE_ROUNDING)
    (void)c;
    (void)out_offset;
    (void)bound;
    return 0;
#else
    if (c->left != 0 || c->right < 1 || c->right > 30)
    {
        return 0;
    }
    const int64_t b = bound + (c->bias < 0 ? -(int64_t)c->bias : (int64_t)c->bias);
    const int64_t off = out_offset < 0 ? -(int64_t)out_offset : (int64_t)out_offset;
    const int64_t half = (int64_t)1 << (c->right - 1);
    if (2 * b >= ((int64_t)1 << 31) || b + 1 + half + (off << c->right) + 2 >= ((int64_t)1 << 31))
    {
        return 0;
    }
    c->add = (int32_t)(half + (int64_t)out_offset * ((int64_t)1 << c->right));
    c->bias2 = 2 * c->bias;
    return 1;
#endif
}

#if !defined(ESC2C_REQUANT_FLOAT) && !defined(CMSIS_NN_USE_SINGLE_ROUNDING)
#define ESC2C_LEAN 1
/* arm_nn_requantize(acc + bias) + out_offset for a channel chan_setup_lean accepted (not yet clamped) */
static inline int32_t chan_lean(const chan_t *c, int32_t acc)
{
    const int32_t v = (int32_t)(((uint32_t)acc << 1) + (uint32_t)c->bias2); /* one ADD with LSL #1 */
#if defined(__ARM_FEATURE_DSP)
    int32_t high;
    __asm__("smmulr %0, %1, %2" : "=r"(high) : "r"(v), "r"(c->mult));
#else
    const int32_t high = (int32_t)(((int64_t)v * (int64_t)c->mult + ((int64_t)1 << 31)) >> 32);
#endif
    return (high + c->add + (high >> 31)) >> c->right;
}
#else
#define ESC2C_LEAN 0
#endif

/* Saturated to int8, then (unless sat_only: the clamp is the int8 range) clamped to [act_min, act_max]. */
static inline int8_t sat_clamp8(int32_t v, int32_t act_min, int32_t act_max, const int sat_only)
{
#if defined(__ARM_FEATURE_DSP)
    __asm__("ssat %0, #8, %1" : "=r"(v) : "r"(v));
#else
    v = v > 127 ? 127 : (v < -128 ? -128 : v);
#endif
    if (!sat_only)
    {
        v = v < act_min ? act_min : v;
        v = v > act_max ? act_max : v;
    }
    return (int8_t)v;
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
