/* esc2c runtime: the onnxruntime contract's float32 kernels (include/esc2c_runtime.h, esc2c.quant.ortparams).
 * Every float operation rounds where written (built with -ffp-contract=off); the fused multiply-adds are the
 * explicit fmaf calls (VFMA.F32 on the Cortex-M7). */
#include "esc2c_runtime.h"

#include <math.h>

static int8_t clamp_s8(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

int esc2c_add_ort_s8(const int8_t *in1, const int8_t *in2, int8_t *out, int32_t size,
                     float ra, float rb, float k, int32_t offset, int32_t act_min, int32_t act_max)
{
    for (int32_t i = 0; i < size; i++)
    {
        const float v = fmaf(ra, (float)(in1[i] + offset), fmaf(rb, (float)(in2[i] + offset), k));
        out[i] = clamp_s8(esc2c_round_f32(v) - offset, act_min, act_max);
    }
    return 0;
}

int esc2c_avgpool_ort_s8(const int8_t *in, int32_t in_h, int32_t in_w, int32_t ch,
                         int8_t *out, int32_t out_h, int32_t out_w,
                         int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                         int32_t pad_h, int32_t pad_w, int32_t in_offset, float in_scale, float out_scale,
                         int32_t out_offset, int32_t offset, int32_t act_min, int32_t act_max)
{
    const float zp_out = (float)(out_offset + offset); /* the raw zero point: uint8 models' for offset 128 */
    for (int32_t oy = 0; oy < out_h; oy++)
    {
        for (int32_t ox = 0; ox < out_w; ox++)
        {
            const esc2c_window_t w = esc2c_pool_window(oy, ox, in_h, in_w, kernel_h, kernel_w, stride_h, stride_w,
                                                       pad_h, pad_w);
            if (w.count <= 0)
            {
                return -1;
            }
            int8_t *dst = out + (oy * out_w + ox) * ch;
            for (int32_t c = 0; c < ch; c++)
            {
                float sum = 0.0f; /* row-major over the window, as onnxruntime sums */
                for (int32_t ky = w.ky0; ky < w.ky1; ky++)
                {
                    const int8_t *row = in + ((w.y0 + ky) * in_w + w.x0) * ch + c;
                    for (int32_t kx = w.kx0; kx < w.kx1; kx++)
                    {
                        sum = sum + (float)(row[kx * ch] + in_offset) * in_scale;
                    }
                }
                const float avg = sum / (float)w.count;
                const float q = avg / out_scale + zp_out;
                dst[c] = clamp_s8(esc2c_round_f32(q) - offset, act_min, act_max);
            }
        }
    }
    return 0;
}

int esc2c_global_avgpool_ort_s8(const int8_t *in, int32_t n, int32_t ch, int8_t *out, int32_t in_offset,
                                float scale, int32_t out_offset, int32_t act_min, int32_t act_max)
{
    for (int32_t c = 0; c < ch; c++)
    {
        int32_t sum = 0;
        for (int32_t i = 0; i < n; i++)
        {
            sum += in[i * ch + c] + in_offset;
        }
        out[c] = clamp_s8(esc2c_round_f32((float)sum * scale) + out_offset, act_min, act_max);
    }
    return 0;
}

int esc2c_rescale_ort_s8(const int8_t *in, int8_t *out, int32_t size, int32_t in_offset, float in_scale,
                         float out_scale, int32_t out_offset, int32_t act_min, int32_t act_max)
{
    for (int32_t i = 0; i < size; i++)
    {
        const float x = (float)(in[i] + in_offset) * in_scale;
        out[i] = clamp_s8(esc2c_round_f32(x / out_scale) + out_offset, act_min, act_max);
    }
    return 0;
}
