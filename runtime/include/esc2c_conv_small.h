/* esc2c int8 convolution for few taps per output (NHWC, groups = 1), with an optional max pool in its
 * epilogue: the kernel the compiler picks for first layers and thin ones (up to 4 input channels), where the
 * fast kernel (esc2c_conv_fast.h) spends most of its time outside the multiply-accumulates. Bit-exact to the same integer
 * contract: per output channel acc = bias + sum((x + in_offset) * w), requantized like arm_nn_requantize
 * (single rounding under CMSIS_NN_USE_SINGLE_ROUNDING; float32 scales under ESC2C_REQUANT_FLOAT), plus
 * out_offset, clamped to [act_min, act_max].
 *
 * Weights are the plain int8 OHWI array ([out_c][kernel_h][kernel_w][in_c]), widened once per call into the
 * scratch buffer in the order the inner loop reads them: per channel, each kernel row's kernel_w * in_c taps
 * padded with zeros to a multiple of 4, words (tap 4q + s, tap 4q + s + 2) for s = 0, 1, so the input is
 * widened 4 bytes at a time (SXTAB16) and multiplied 2 taps per SMLAD. The channel's words stay in registers
 * while the columns of all pooled pixels pass by.
 *
 * Pooling (pool_h x pool_w > 1): max pool, stride pool_stride, no padding, over the convolution's output,
 * done on the accumulators: requantization and clamping are monotone non-decreasing (every scale is
 * positive), so the largest accumulator of a window gives the pooled value, and one requantization replaces
 * pool_h * pool_w. out_h x out_w is then the pooled size. A pooled row is written after all of its inputs are
 * read (through a row buffer in the scratch), like a band of esc2c's fused conv + pool layer.
 */
#ifndef ESC2C_CONV_SMALL_H
#define ESC2C_CONV_SMALL_H

#include <stdint.h>

#include "esc2c_runtime.h" /* esc2c_mult_t */

#ifdef __cplusplus
extern "C" {
#endif

/* Words (2 int16 taps) per channel: kernel_h rows of kernel_w * in_c taps, each padded to a multiple of 4. */
#define ESC2C_CONV_SMALL_WORDS(in_c, kernel_h, kernel_w) ((kernel_h) * ((((in_c) * (kernel_w)) + 3) / 4) * 2)
/* The kernel runs layers with at most this many words per channel and this many output channels. */
#define ESC2C_CONV_SMALL_MAX_WORDS 18
#define ESC2C_CONV_SMALL_MAX_OUT 64

/* Scratch bytes: the widened weights (out_c channels) and one column per pooled pixel, plus a row of
 * output when pooling, plus 3 bytes to align the words to 4 bytes (any scratch address). */
#define ESC2C_CONV_SMALL_BUFFER_SIZE(in_c, kernel_h, kernel_w, out_c, pool_h, pool_w, out_w)                 \
    (4 * ESC2C_CONV_SMALL_WORDS(in_c, kernel_h, kernel_w) * ((out_c) + (pool_h) * (pool_w)) +                \
     ((pool_h) * (pool_w) > 1 ? (out_w) * (out_c) : 0) + 3)

int32_t esc2c_conv_small_s8_buffer_size(int32_t in_c, int32_t kernel_h, int32_t kernel_w, int32_t out_c,
                                        int32_t pool_h, int32_t pool_w, int32_t out_w);

/* The kernel's parameters, and the same names to pass them on. */
#define ESC2C_CONV_SMALL_PARAMS                                                                                \
    const int8_t *in, int32_t in_h, int32_t in_w, int32_t in_c, const int8_t *weights, const int32_t *bias,     \
        int8_t *out, int32_t out_h, int32_t out_w, int32_t out_c, int32_t kernel_h, int32_t kernel_w,          \
        int32_t stride_h, int32_t stride_w, int32_t pad_h, int32_t pad_w, int32_t in_offset,                   \
        const esc2c_mult_t *mult, const int32_t *shift, int32_t out_offset, int32_t act_min, int32_t act_max,  \
        int32_t pool_h, int32_t pool_w, int32_t pool_stride_h, int32_t pool_stride_w, void *scratch
#define ESC2C_CONV_SMALL_ARGS                                                                                  \
    in, in_h, in_w, in_c, weights, bias, out, out_h, out_w, out_c, kernel_h, kernel_w, stride_h, stride_w,     \
        pad_h, pad_w, in_offset, mult, shift, out_offset, act_min, act_max, pool_h, pool_w, pool_stride_h,     \
        pool_stride_w, scratch

/* Convolution NHWC, no dilation, then (pool_h x pool_w > 1) a max pool. weights: int8 OHWI; bias may be NULL;
 * scratch: esc2c_conv_small_s8_buffer_size() bytes at any address; act_min <= act_max within [-128, 127]; the
 * caller keeps every pool window inside the convolution's output. Without pooling the output may start over
 * input bytes already consumed (pixels are read and written in raster order). Returns 0, or -1 on bad
 * arguments (including layers beyond ESC2C_CONV_SMALL_MAX_WORDS or ESC2C_CONV_SMALL_MAX_OUT).
 *
 * esc2c_conv_small_s8 runs any such layer. Its loops are compiled as copies, each a function of its own (same
 * parameters; -1 for a layer it does not run): esc2c_conv_small_s8_w<N>_p4 for a 2x2 window at N = 6, 12, 18
 * words per channel (ESC2C_CONV_SMALL_WORDS: 3x3 on 1, 2, 3-4 channels), straight-line dot products, and
 * esc2c_conv_small_s8_any for every layer. Emitted code calls the copy its layer needs, so firmware links
 * only those. */
int esc2c_conv_small_s8(ESC2C_CONV_SMALL_PARAMS);
int esc2c_conv_small_s8_w6_p4(ESC2C_CONV_SMALL_PARAMS);
int esc2c_conv_small_s8_w12_p4(ESC2C_CONV_SMALL_PARAMS);
int esc2c_conv_small_s8_w18_p4(ESC2C_CONV_SMALL_PARAMS);
int esc2c_conv_small_s8_any(ESC2C_CONV_SMALL_PARAMS);

#ifdef __cplusplus
}
#endif

#endif /* ESC2C_CONV_SMALL_H */
