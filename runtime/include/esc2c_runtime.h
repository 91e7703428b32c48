/* esc2c runtime: the int8 kernels the CMSIS-NN v4.0.0 subset lacks, bit-exact to the integer contract the
 * project is built for (DESIGN.md section 3):
 *  - tflite (default): TFLite / CMSIS-NN int8 arithmetic; requantization exactly like arm_nn_requantize,
 *    single rounding when CMSIS_NN_USE_SINGLE_ROUNDING is defined; multipliers are int32 with a shift;
 *  - onnxruntime (ESC2C_REQUANT_FLOAT defined): onnxruntime's fused integer kernels; a requantization
 *    multiplies by a float32 scale and rounds half to even (the shift is unused); the esc2c_*_ort_s8 kernels
 *    below compute QLinearAdd / QLinearAveragePool / QLinearGlobalAveragePool / a rescale in float32 exactly
 *    as onnxruntime does. Built with -ffp-contract=off: every float operation rounds where written.
 * Offsets follow CMSIS-NN: input offset = -zero_point, output offset = +zero_point. Shifts: positive = left.
 * All kernels return 0 on success. */
#ifndef ESC2C_RUNTIME_H
#define ESC2C_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(ESC2C_REQUANT_FLOAT)
typedef float esc2c_mult_t; /* a float32 scale */
#else
typedef int32_t esc2c_mult_t; /* an int32 fixed-point multiplier, with a shift */
#endif

/* Round half to even (nearbyintf in the default rounding mode) of v, saturated to +-2^22: far outside
 * any int8 result, so a later clamp gives what the unsaturated value would. */
static inline int32_t esc2c_round_f32(float v)
{
    const float lim = 4194304.0f; /* 2^22: v + 1.5 * 2^23 then has a unit ulp */
    v = v > lim ? lim : (v < -lim ? -lim : v);
    return (int32_t)((v + 12582912.0f) - 12582912.0f);
}

/* The in-bounds part of the pooling window of output pixel (oy, ox): rows y0 + [ky0, ky1), columns
 * x0 + [kx0, kx1), count of them (the average pools' divisor when padding is not counted). */
typedef struct
{
    int32_t y0, x0, ky0, ky1, kx0, kx1, count;
} esc2c_window_t;

static inline esc2c_window_t esc2c_pool_window(int32_t oy, int32_t ox, int32_t in_h, int32_t in_w, int32_t kernel_h,
                                               int32_t kernel_w, int32_t stride_h, int32_t stride_w, int32_t pad_h,
                                               int32_t pad_w)
{
    esc2c_window_t w;
    w.y0 = oy * stride_h - pad_h;
    w.x0 = ox * stride_w - pad_w;
    w.ky0 = w.y0 < 0 ? -w.y0 : 0;
    w.ky1 = (in_h - w.y0) < kernel_h ? (in_h - w.y0) : kernel_h;
    w.kx0 = w.x0 < 0 ? -w.x0 : 0;
    w.kx1 = (in_w - w.x0) < kernel_w ? (in_w - w.x0) : kernel_w;
    w.count = (w.ky1 - w.ky0) * (w.kx1 - w.kx0);
    return w;
}

/* tflite: arm_nn_requantize, val * multiplier * 2^(shift - 31), rounded like the selected CMSIS-NN mode;
 * onnxruntime: round half to even of float(val) * multiplier (MlasRequantizeOutput), shift unused. */
#if defined(ESC2C_REQUANT_FLOAT)
static inline int32_t esc2c_requantize(int32_t val, esc2c_mult_t multiplier, int32_t shift)
{
    (void)shift;
    return esc2c_round_f32((float)val * multiplier);
}
#else
int32_t esc2c_requantize(int32_t val, int32_t multiplier, int32_t shift);
#endif

#if !defined(ESC2C_REQUANT_FLOAT)

/* Residual add, TFLite ADD int8: each input (q + offset) << left_shift is rescaled by its own
 * multiplier, the sum by the output multiplier, then offset and clamped. out may alias in1 or in2. */
int esc2c_add_s8(const int8_t *in1, const int8_t *in2, int8_t *out, int32_t size,
                 int32_t in1_offset, int32_t in1_mult, int32_t in1_shift,
                 int32_t in2_offset, int32_t in2_mult, int32_t in2_shift, int32_t left_shift,
                 int32_t out_offset, int32_t out_mult, int32_t out_shift,
                 int32_t act_min, int32_t act_max);

/* Elementwise rescale: out = clamp(requantize(q + in_offset) + out_offset). out may alias in. */
int esc2c_requantize_s8(const int8_t *in, int8_t *out, int32_t size, int32_t in_offset,
                        int32_t mult, int32_t shift, int32_t out_offset, int32_t act_min, int32_t act_max);

/* Average pool (NHWC) whose output has its own scale: per window, the n in-bounds values give
 * sum(q + in_offset), requantized with mult[n], shift[n] (tables indexed by the count), plus out_offset. */
int esc2c_avgpool_rescale_s8(const int8_t *in, int32_t in_h, int32_t in_w, int32_t ch,
                             int8_t *out, int32_t out_h, int32_t out_w,
                             int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                             int32_t pad_h, int32_t pad_w, int32_t in_offset,
                             const int32_t *mult, const int32_t *shift, int32_t out_offset,
                             int32_t act_min, int32_t act_max);

#endif /* tflite-only kernels */

/* Max pool (NHWC) with 2x2 windows, stride 2 and no padding: out[y][x][c] = the largest of in[2y + i][2x + j][c]
 * (i, j in 0..1), clamped to [act_min, act_max]. Needs 2 * out_h <= in_h and 2 * out_w <= in_w (a last odd row
 * or column is not read). Max and clamp commute with any monotone requantization, so it serves both contracts;
 * 4 channels at a time (SSUB8 and SEL on DSP targets). out may alias in (each output is stored after the
 * inputs it and every earlier output read, at or before the first of them). Returns 0, or -1 on bad
 * arguments. */
int esc2c_max_pool_2x2_s8(const int8_t *in, int32_t in_h, int32_t in_w, int32_t ch,
                          int8_t *out, int32_t out_h, int32_t out_w, int32_t act_min, int32_t act_max);

/* Grouped convolution (NHWC), 1 <= groups <= channels: weights [C_out][KH][KW][C_in / groups], output channel
 * o reads input channels of group o / (C_out / groups); int32 bias; per-channel requantization. Also the
 * onnxruntime contract's plain, depthwise (groups = C_in) and fully connected (1x1 on 1x1xK) layers. */
int esc2c_group_conv_s8(const int8_t *in, int32_t in_h, int32_t in_w, int32_t in_c,
                        const int8_t *weights, const int32_t *bias,
                        int8_t *out, int32_t out_h, int32_t out_w, int32_t out_c, int32_t groups,
                        int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                        int32_t pad_h, int32_t pad_w, int32_t in_offset,
                        const esc2c_mult_t *mult, const int32_t *shift, int32_t out_offset,
                        int32_t act_min, int32_t act_max);

/* onnxruntime's QLinearAdd (same shapes) on the raw values a = in1 + offset, b = in2 + offset (offset 128
 * for a uint8 model, else 0): out = clamp(rint(fma(ra, a, fma(rb, b, k))) - offset) with ra = s_a / s_c,
 * rb = s_b / s_c, k = zp_c - fma(ra, zp_a, rb * zp_b), raw zero points (esc2c.quant.ortparams).
 * out may alias in1 or in2. */
int esc2c_add_ort_s8(const int8_t *in1, const int8_t *in2, int8_t *out, int32_t size,
                     float ra, float rb, float k, int32_t offset, int32_t act_min, int32_t act_max);

/* onnxruntime's QLinearAveragePool (NHWC; the count excludes padding): per window the in-bounds values,
 * dequantized as float(q + in_offset) * in_scale, summed in row-major order, divided by their count;
 * out = clamp(rint(avg / out_scale + (out_offset + offset)) - offset), offset 128 for a uint8 model (whose
 * raw zero point onnxruntime adds before rounding), else 0. */
int esc2c_avgpool_ort_s8(const int8_t *in, int32_t in_h, int32_t in_w, int32_t ch,
                         int8_t *out, int32_t out_h, int32_t out_w,
                         int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                         int32_t pad_h, int32_t pad_w, int32_t in_offset, float in_scale, float out_scale,
                         int32_t out_offset, int32_t offset, int32_t act_min, int32_t act_max);

/* onnxruntime's QLinearGlobalAveragePool (NHWC, n pixels): out[c] = clamp(rint(float(sum(q + in_offset))
 * * scale) + out_offset) with scale = in_scale / (out_scale * n). */
int esc2c_global_avgpool_ort_s8(const int8_t *in, int32_t n, int32_t ch, int8_t *out, int32_t in_offset,
                                float scale, int32_t out_offset, int32_t act_min, int32_t act_max);

/* DequantizeLinear then QuantizeLinear: out = clamp(rint((float(q + in_offset) * in_scale) / out_scale)
 * + out_offset). out may alias in. */
int esc2c_rescale_ort_s8(const int8_t *in, int8_t *out, int32_t size, int32_t in_offset, float in_scale,
                         float out_scale, int32_t out_offset, int32_t act_min, int32_t act_max);

#ifdef __cplusplus
}
#endif

#endif /* ESC2C_RUNTIME_H */
