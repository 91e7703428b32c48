/* esc2c runtime: the int8 kernels the CMSIS-NN v4.0.0 subset lacks, bit-exact to the integer contract
 * (TFLite / CMSIS-NN int8 arithmetic; requantization exactly like arm_nn_requantize, single rounding when
 * CMSIS_NN_USE_SINGLE_ROUNDING is defined). Offsets follow CMSIS-NN: input offset = -zero_point,
 * output offset = +zero_point. Shifts: positive = left. All kernels return 0 on success. */
#ifndef ESC2C_RUNTIME_H
#define ESC2C_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* arm_nn_requantize: val * multiplier * 2^(shift - 31), rounded like the selected CMSIS-NN mode. */
int32_t esc2c_requantize(int32_t val, int32_t multiplier, int32_t shift);

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

/* Grouped convolution (NHWC), 1 < groups < channels: weights [C_out][KH][KW][C_in / groups], output channel
 * o reads input channels of group o / (C_out / groups); int32 bias; per-channel requantization. */
int esc2c_group_conv_s8(const int8_t *in, int32_t in_h, int32_t in_w, int32_t in_c,
                        const int8_t *weights, const int32_t *bias,
                        int8_t *out, int32_t out_h, int32_t out_w, int32_t out_c, int32_t groups,
                        int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                        int32_t pad_h, int32_t pad_w, int32_t in_offset,
                        const int32_t *mult, const int32_t *shift, int32_t out_offset,
                        int32_t act_min, int32_t act_max);

#ifdef __cplusplus
}
#endif

#endif /* ESC2C_RUNTIME_H */
