/* esc2c runtime kernels: see include/esc2c_runtime.h for the contract. */
#include "esc2c_runtime.h"

#include <stddef.h>
#include <string.h>

static int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

#if !defined(ESC2C_REQUANT_FLOAT) /* the tflite contract's fixed-point kernels */

#if !defined(CMSIS_NN_USE_SINGLE_ROUNDING)
/* arm_nn_doubling_high_mult_no_sat */
static int64_t doubling_high_mult(int64_t a, int32_t b)
{
    return (a * (int64_t)b + ((int64_t)1 << 30)) >> 31;
}

/* arm_nn_divide_by_power_of_two: arithmetic shift, ties away from zero */
static int64_t divide_by_power_of_two(int64_t x, int32_t exponent)
{
    const int64_t mask = ((int64_t)1 << exponent) - 1;
    const int64_t remainder = x & mask;
    int64_t result = x >> exponent;
    int64_t threshold = mask >> 1;
    if (result < 0)
    {
        threshold++;
    }
    if (remainder > threshold)
    {
        result++;
    }
    return result;
}
#endif

int32_t esc2c_requantize(int32_t val, int32_t multiplier, int32_t shift)
{
#if defined(CMSIS_NN_USE_SINGLE_ROUNDING)
    const int32_t total_shift = 31 - shift;
    const int64_t prod = (int64_t)val * (int64_t)multiplier;
    const int64_t result = prod >> (total_shift - 1);
    return (int32_t)((result + 1) >> 1);
#else
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int64_t high = doubling_high_mult((int64_t)val * ((int64_t)1 << left), multiplier);
    return (int32_t)divide_by_power_of_two(high, right);
#endif
}

int esc2c_add_s8(const int8_t *in1, const int8_t *in2, int8_t *out, int32_t size,
                 int32_t in1_offset, int32_t in1_mult, int32_t in1_shift,
                 int32_t in2_offset, int32_t in2_mult, int32_t in2_shift, int32_t left_shift,
                 int32_t out_offset, int32_t out_mult, int32_t out_shift,
                 int32_t act_min, int32_t act_max)
{
    for (int32_t i = 0; i < size; i++)
    {
        const int32_t a = esc2c_requantize((in1[i] + in1_offset) * (1 << left_shift), in1_mult, in1_shift);
        const int32_t b = esc2c_requantize((in2[i] + in2_offset) * (1 << left_shift), in2_mult, in2_shift);
        const int32_t sum = esc2c_requantize(a + b, out_mult, out_shift) + out_offset;
        out[i] = (int8_t)clamp_i32(sum, act_min, act_max);
    }
    return 0;
}

int esc2c_requantize_s8(const int8_t *in, int8_t *out, int32_t size, int32_t in_offset,
                        int32_t mult, int32_t shift, int32_t out_offset, int32_t act_min, int32_t act_max)
{
    for (int32_t i = 0; i < size; i++)
    {
        const int32_t v = esc2c_requantize(in[i] + in_offset, mult, shift) + out_offset;
        out[i] = (int8_t)clamp_i32(v, act_min, act_max);
    }
    return 0;
}

int esc2c_avgpool_rescale_s8(const int8_t *in, int32_t in_h, int32_t in_w, int32_t ch,
                             int8_t *out, int32_t out_h, int32_t out_w,
                             int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                             int32_t pad_h, int32_t pad_w, int32_t in_offset,
                             const int32_t *mult, const int32_t *shift, int32_t out_offset,
                             int32_t act_min, int32_t act_max)
{
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
                int32_t sum = 0;
                for (int32_t ky = w.ky0; ky < w.ky1; ky++)
                {
                    const int8_t *row = in + ((w.y0 + ky) * in_w + w.x0) * ch + c;
                    for (int32_t kx = w.kx0; kx < w.kx1; kx++)
                    {
                        sum += row[kx * ch] + in_offset;
                    }
                }
                const int32_t v = esc2c_requantize(sum, mult[w.count], shift[w.count]) + out_offset;
                dst[c] = (int8_t)clamp_i32(v, act_min, act_max);
            }
        }
    }
    return 0;
}

#endif /* !ESC2C_REQUANT_FLOAT */

int esc2c_group_conv_s8(const int8_t *in, int32_t in_h, int32_t in_w, int32_t in_c,
                        const int8_t *weights, const int32_t *bias,
                        int8_t *out, int32_t out_h, int32_t out_w, int32_t out_c, int32_t groups,
                        int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                        int32_t pad_h, int32_t pad_w, int32_t in_offset,
                        const esc2c_mult_t *mult, const int32_t *shift, int32_t out_offset,
                        int32_t act_min, int32_t act_max)
{
    if (groups <= 0 || in_c % groups != 0 || out_c % groups != 0)
    {
        return -1;
    }
    const int32_t cig = in_c / groups;
    const int32_t cog = out_c / groups;
    for (int32_t oy = 0; oy < out_h; oy++)
    {
        const int32_t y0 = oy * stride_h - pad_h;
        for (int32_t ox = 0; ox < out_w; ox++)
        {
            const int32_t x0 = ox * stride_w - pad_w;
            int8_t *dst = out + (oy * out_w + ox) * out_c;
            for (int32_t o = 0; o < out_c; o++)
            {
                const int32_t c0 = (o / cog) * cig;
                const int8_t *w = weights + o * kernel_h * kernel_w * cig;
                int32_t acc = bias != NULL ? bias[o] : 0;
                for (int32_t ky = 0; ky < kernel_h; ky++)
                {
                    const int32_t y = y0 + ky;
                    if (y < 0 || y >= in_h)
                    {
                        continue;
                    }
                    for (int32_t kx = 0; kx < kernel_w; kx++)
                    {
                        const int32_t x = x0 + kx;
                        if (x < 0 || x >= in_w)
                        {
                            continue;
                        }
                        const int8_t *src = in + (y * in_w + x) * in_c + c0;
                        const int8_t *wk = w + (ky * kernel_w + kx) * cig;
                        for (int32_t c = 0; c < cig; c++)
                        {
                            acc += (src[c] + in_offset) * wk[c];
                        }
                    }
                }
                const int32_t v = esc2c_requantize(acc, mult[o], shift[o]) + out_offset;
                dst[o] = (int8_t)clamp_i32(v, act_min, act_max);
            }
        }
    }
    return 0;
}

/* 4 signed bytes at once: the larger of a and b in each byte lane */
static inline uint32_t max_s8x4(uint32_t a, uint32_t b)
{
#if defined(__ARM_FEATURE_DSP)
    uint32_t r;
    __asm__("ssub8 %0, %1, %2\n\t"
            "sel %0, %1, %2"
            : "=&r"(r)
            : "r"(a), "r"(b)
            : "cc");
    return r;
#else
    uint32_t r = 0;
    for (int k = 0; k < 32; k += 8)
    {
        const int8_t x = (int8_t)(a >> k), y = (int8_t)(b >> k);
        r |= (uint32_t)(uint8_t)(x > y ? x : y) << k;
    }
    return r;
#endif
}

static inline uint32_t load4(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4); /* one LDR on Cortex-M7, aligned or not */
    return v;
}

int esc2c_max_pool_2x2_s8(const int8_t *in, int32_t in_h, int32_t in_w, int32_t ch,
                          int8_t *out, int32_t out_h, int32_t out_w, int32_t act_min, int32_t act_max)
{
    if (in == NULL || out == NULL || ch <= 0 || out_h < 0 || out_w < 0 || 2 * out_h > in_h || 2 * out_w > in_w ||
        act_min < -128 || act_max > 127 || act_min > act_max)
    {
        return -1;
    }
    const int clamp = act_min > -128 || act_max < 127;
    const uint32_t lo4 = 0x01010101u * (uint8_t)act_min;
    const uint32_t hi4 = 0x01010101u * (uint8_t)act_max;
    const int32_t quads = ch / 4;
    const int32_t row = in_w * ch;
    for (int32_t y = 0; y < out_h; y++)
    {
        const int8_t *r0 = in + 2 * y * row;
        int8_t *dst = out + y * out_w * ch;
        for (int32_t x = 0; x < out_w; x++)
        {
            const int8_t *a = r0 + 2 * x * ch;
            for (int32_t q = 0; q < quads; q++)
            {
                uint32_t m = max_s8x4(max_s8x4(load4(a), load4(a + ch)), max_s8x4(load4(a + row), load4(a + row + ch)));
                if (clamp)
                {
                    m = max_s8x4(m, lo4);
                    m = ~max_s8x4(~m, ~hi4); /* min(m, hi): bytewise ~ reverses the signed order */
                }
                memcpy(dst, &m, 4);
                a += 4;
                dst += 4;
            }
            for (int32_t c = 4 * quads; c < ch; c++)
            {
                int32_t m = a[0];
                m = a[ch] > m ? a[ch] : m;
                m = a[row] > m ? a[row] : m;
                m = a[row + ch] > m ? a[row + ch] : m;
                *dst++ = (int8_t)clamp_i32(m, act_min, act_max);
                a++;
            }
        }
    }
    return 0;
}
