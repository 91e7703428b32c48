/* esc2c fast int8 convolution (NHWC, groups = 1): the project's own kernel beside CMSIS-NN's
 * arm_convolve_wrapper_s8, bit-exact to the same integer contract (DESIGN.md section 3): per output channel
 * acc = bias + sum((x + in_offset) * w), requantized exactly like arm_nn_requantize (single rounding when
 * CMSIS_NN_USE_SINGLE_ROUNDING is defined; under ESC2C_REQUANT_FLOAT, the onnxruntime contract, mult holds
 * float32 scales: round half to even of float(acc) * scale), plus out_offset, clamped to [act_min, act_max].
 *
 * Speed comes from work done once at compile time: the weights are stored pre-widened to int16 in the
 * order the inner loop reads them (see esc2c/compiler/passes/conv_fast.py, which writes them), so the
 * inner loop only loads and multiplies (SMLAD on cores with the DSP extension; portable C elsewhere, same
 * bits). Each step computes 2 output channels for 3 output pixels.
 *
 * Packed weight layout (int16): taps in [kh][kw][c] order, each kernel row's kernel_w * in_c taps padded
 * with zero taps to a multiple of 4 (so a row of input is read 4 bytes at a time), Kp = kernel_h * that
 * many taps, NW = Kp / 2 and P = (out_c + 1) / 2 channel pairs (a missing odd channel is zero):
 *   for pair p < P, for word j < NW (quad q = j / 2, s = j % 2), for channel c in (2p, 2p + 1):
 *     W[c][4q + s], W[c][4q + s + 2]
 * i.e. esc2c_conv_fast_s8_weights_len() = P * NW * 4 int16 values.
 *
 * esc2c_conv_fast_s8_w8 reads the same values as int8, half the flash, each word j of a pair ordered
 *     W[2p][4q + s], W[2p + 1][4q + s], W[2p][4q + s + 2], W[2p + 1][4q + s + 2]
 * (SXTB16 and SXTB16 ROR 8 widen it into the two int16 words above): 2 more instructions per 12 MACs.
 */
#ifndef ESC2C_CONV_FAST_H
#define ESC2C_CONV_FAST_H

#include <stdint.h>

#include "esc2c_runtime.h" /* esc2c_mult_t, esc2c_round_f32 */

#ifdef __cplusplus
extern "C" {
#endif

/* Output pixels computed per step (columns of the scratch buffer). */
#define ESC2C_CONV_FAST_PIXELS 3

/* Taps per output channel after padding each kernel row to a multiple of 4. */
#define ESC2C_CONV_FAST_KP(in_c, kernel_h, kernel_w) ((kernel_h) * ((((in_c) * (kernel_w)) + 3) / 4 * 4))

/* Scratch bytes esc2c_conv_fast_s8 needs: 3 interleaved int16 columns of Kp taps, plus room for one row of
 * int16 taps when in_c is not a multiple of 4, plus 3 bytes to align the columns to 4 bytes (any scratch address).
 * The kernel also keeps a table of up to 128 channels' requantization constants on the stack (3 KB). */
#define ESC2C_CONV_FAST_BUFFER_SIZE(in_c, kernel_h, kernel_w) \
    (2 * ESC2C_CONV_FAST_KP(in_c, kernel_h, kernel_w) * (ESC2C_CONV_FAST_PIXELS + (((in_c) % 4) != 0)) + 3)

int32_t esc2c_conv_fast_s8_buffer_size(int32_t in_c, int32_t kernel_h, int32_t kernel_w);

/* Number of weight values in the packed weights (int16 values, or int8 ones for esc2c_conv_fast_s8_w8). */
int32_t esc2c_conv_fast_s8_weights_len(int32_t in_c, int32_t out_c, int32_t kernel_h, int32_t kernel_w);

/* Convolution NHWC, no dilation. weights: packed as above (4-byte aligned); bias may be NULL; scratch:
 * esc2c_conv_fast_s8_buffer_size() bytes at any address; act_min/act_max within [-128, 127]. The output may start over input bytes already
 * consumed (pixels are read and written in raster order, 3 at a time). Returns 0, or -1 on bad arguments. */
int esc2c_conv_fast_s8(const int8_t *in, int32_t in_h, int32_t in_w, int32_t in_c,
                       const int16_t *weights, const int32_t *bias,
                       int8_t *out, int32_t out_h, int32_t out_w, int32_t out_c,
                       int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                       int32_t pad_h, int32_t pad_w, int32_t in_offset,
                       const esc2c_mult_t *mult, const int32_t *shift, int32_t out_offset,
                       int32_t act_min, int32_t act_max, void *scratch);

/* The same convolution reading int8 weights (the W8 layout above, esc2c_conv_fast_s8_weights_len() bytes,
 * 4-byte aligned); same arguments, result and bits. */
int esc2c_conv_fast_s8_w8(const int8_t *in, int32_t in_h, int32_t in_w, int32_t in_c,
                          const int8_t *weights, const int32_t *bias,
                          int8_t *out, int32_t out_h, int32_t out_w, int32_t out_c,
                          int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                          int32_t pad_h, int32_t pad_w, int32_t in_offset,
                          const esc2c_mult_t *mult, const int32_t *shift, int32_t out_offset,
                          int32_t act_min, int32_t act_max, void *scratch);

#ifdef __cplusplus
}
#endif

#endif /* ESC2C_CONV_FAST_H */
