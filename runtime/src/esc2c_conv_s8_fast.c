/* esc2c fast int8 convolution: see include/esc2c_conv_fast.h for the contract and the weight layout.
 *
 * Per step of 3 output pixels:
 *   1. im2col: each pixel's receptive field, plus in_offset, widened to int16 and stored as words of two
 *      taps (tap 4q+s, tap 4q+s+2), the 3 pixels' words interleaved so one load fetches all three;
 *   2. for every pair of output channels, 6 dot products over NW words (SMLAD: 2 MACs per instruction);
 *   3. requantization of the 6 accumulators (arm_nn_requantize arithmetic, both rounding modes).
 */
#include "esc2c_conv_fast.h"

#include <stddef.h>
#include <string.h>

#define NPIX ESC2C_CONV_FAST_PIXELS

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-loop-distribute-patterns") /* short zero runs: no memset calls */
#endif

#if defined(__ARM_FEATURE_DSP) && defined(__OPTIMIZE__)
#define ESC2C_FAST_DSP 1
#else
#define ESC2C_FAST_DSP 0
#endif

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

typedef struct
{
    const int8_t *in;
    int32_t in_h, in_w, in_c, kh, kw, k, kp, off;
    uint32_t off2;
    int16_t *lin;
} geom_t;

/* One pixel's column (window origin y0, x0) into col[0], col[NPIX], col[2 * NPIX], ... */
static void im2col_pixel(const geom_t *g, uint32_t *col, int32_t y0, int32_t x0)
{
    const int32_t cin = g->in_c;
    if (cin % 4 == 0)
    {
        const int32_t row_quads = g->kw * cin / 4;
        const int full_row = x0 >= 0 && x0 + g->kw <= g->in_w;
        for (int32_t dy = 0; dy < g->kh; dy++)
        {
            const int32_t y = y0 + dy;
            if (y < 0 || y >= g->in_h)
            {
                for (int32_t q = 0; q < row_quads; q++)
                {
                    col[0] = 0;
                    col[NPIX] = 0;
                    col += 2 * NPIX;
                }
                continue;
            }
            const int8_t *row = g->in + (y * g->in_w + x0) * cin;
            if (full_row)
            {
                for (int32_t q = 0; q < row_quads; q++)
                {
                    widen4(row + 4 * q, g->off2, g->off, &col[0], &col[NPIX]);
                    col += 2 * NPIX;
                }
                continue;
            }
            for (int32_t dx = 0; dx < g->kw; dx++)
            {
                const int32_t x = x0 + dx;
                const int inside = x >= 0 && x < g->in_w;
                for (int32_t c = 0; c < cin; c += 4)
                {
                    if (inside)
                    {
                        widen4(row + dx * cin + c, g->off2, g->off, &col[0], &col[NPIX]);
                    }
                    else
                    {
                        col[0] = 0;
                        col[NPIX] = 0;
                    }
                    col += 2 * NPIX;
                }
            }
        }
        return;
    }
    /* in_c not a multiple of 4: taps in [kh][kw][c] order into a linear int16 column first, then paired */
    const int32_t row_taps = g->kw * cin;
    const int full_row = x0 >= 0 && x0 + g->kw <= g->in_w;
    int16_t *d = g->lin;
    for (int32_t dy = 0; dy < g->kh; dy++)
    {
        const int32_t y = y0 + dy;
        if (y < 0 || y >= g->in_h)
        {
            for (int32_t t = 0; t < row_taps; t++)
            {
                *d++ = 0;
            }
            continue;
        }
        const int8_t *row = g->in + (y * g->in_w + x0) * cin;
        if (full_row)
        {
            for (int32_t t = 0; t < row_taps; t++)
            {
                *d++ = (int16_t)(row[t] + g->off);
            }
            continue;
        }
        for (int32_t dx = 0; dx < g->kw; dx++)
        {
            const int32_t x = x0 + dx;
            const int inside = x >= 0 && x < g->in_w;
            for (int32_t c = 0; c < cin; c++)
            {
                *d++ = inside ? (int16_t)(row[dx * cin + c] + g->off) : 0;
            }
        }
    }
    for (int32_t t = g->k; t < g->kp; t++)
    {
        *d++ = 0;
    }
    /* taps (t0, t1), (t2, t3) -> words (t0, t2), (t1, t3) */
    const uint32_t *lw = (const uint32_t *)(const void *)g->lin;
    for (int32_t q = 0; q < g->kp / 4; q++)
    {
        const uint32_t t01 = lw[2 * q];
        const uint32_t t23 = lw[2 * q + 1];
        col[0] = (t01 & 0xFFFFu) | (t23 << 16);
        col[NPIX] = (t01 >> 16) | (t23 & 0xFFFF0000u);
        col += 2 * NPIX;
    }
}

/* acc[c][p] = sum over nw words of the 2 int16 products of weight word (c) and column word (p). nw even. */
#define ESC2C_DOT_STEP                                 \
    "ldmia %[xp]!, {%[x0], %[x1], %[x2]}\n\t"          \
    "ldrd %[wa], %[wb], [%[wp]], #8\n\t"               \
    "smlad %[a00], %[wa], %[x0], %[a00]\n\t"           \
    "smlad %[a01], %[wa], %[x1], %[a01]\n\t"           \
    "smlad %[a02], %[wa], %[x2], %[a02]\n\t"           \
    "smlad %[a10], %[wb], %[x0], %[a10]\n\t"           \
    "smlad %[a11], %[wb], %[x1], %[a11]\n\t"           \
    "smlad %[a12], %[wb], %[x2], %[a12]\n\t"
#define ESC2C_DOT_OPERANDS                                                                                 \
    : [a00] "+r"(a00), [a01] "+r"(a01), [a02] "+r"(a02), [a10] "+r"(a10), [a11] "+r"(a11), [a12] "+r"(a12), \
      [xp] "+r"(xp), [wp] "+r"(wp), [x0] "=&r"(x0), [x1] "=&r"(x1), [x2] "=&r"(x2), [wa] "=&r"(wa),      \
      [wb] "=&r"(wb)

static inline void dot_2x3(const uint32_t *cols, const int16_t *weights, int32_t nw, int32_t acc[2][NPIX])
{
#if ESC2C_FAST_DSP
    int32_t a00 = 0, a01 = 0, a02 = 0, a10 = 0, a11 = 0, a12 = 0;
    const uint32_t *xp = cols;
    const uint32_t *const xend = cols + NPIX * nw;
    const uint32_t *wp = (const uint32_t *)(const void *)weights;
    register uint32_t x0 __asm__("r10");
    register uint32_t x1 __asm__("r11");
    register uint32_t x2 __asm__("r12");
    uint32_t wa, wb;
    if (nw & 2)
    {
        __asm__ volatile(ESC2C_DOT_STEP ESC2C_DOT_STEP ESC2C_DOT_OPERANDS : : "memory");
    }
    if (xp != xend)
    {
        __asm__ volatile("1:\n\t" ESC2C_DOT_STEP ESC2C_DOT_STEP ESC2C_DOT_STEP ESC2C_DOT_STEP
                         "cmp %[xp], %[xend]\n\t"
                         "bne 1b\n\t" ESC2C_DOT_OPERANDS
                         : [xend] "r"(xend)
                         : "cc", "memory");
    }
    acc[0][0] = a00;
    acc[0][1] = a01;
    acc[0][2] = a02;
    acc[1][0] = a10;
    acc[1][1] = a11;
    acc[1][2] = a12;
#else
    int32_t a[2][NPIX] = {{0}};
    for (int32_t j = 0; j < nw; j++)
    {
        const int16_t *w = weights + 4 * j;
        const uint32_t *x = cols + NPIX * j;
        for (int p = 0; p < NPIX; p++)
        {
            const int32_t lo = (int16_t)(x[p] & 0xFFFF);
            const int32_t hi = (int16_t)(x[p] >> 16);
            a[0][p] += w[0] * lo + w[1] * hi;
            a[1][p] += w[2] * lo + w[3] * hi;
        }
    }
    memcpy(acc, a, sizeof(a));
#endif
}

/* Per-channel requantization constants: arm_nn_requantize split into what depends on the channel only.
 * Double rounding: high = doubling_high_mult(val << left, mult), then divide by 2^right with ties away from
 * zero (remainder against mask/2, one more for negative values), all exact in 32 bits like CMSIS-NN.
 * Single rounding: (prod >> (30 - shift) + 1) >> 1 == (prod + 2^(30 - shift)) >> (31 - shift); for
 * shift <= -1 that is the high word of (prod + 2^(30 - shift)) shifted right by -shift - 1. */
typedef struct
{
    int32_t mult;
    int32_t shift;
#if defined(CMSIS_NN_USE_SINGLE_ROUNDING)
    int32_t high_only;
    int32_t hshift;
    int64_t round;
#else
    int32_t left, right, mask, half;
#endif
} rq_t;

static inline rq_t rq_setup(int32_t mult, int32_t shift)
{
    rq_t r;
    r.mult = mult;
    r.shift = shift;
#if defined(CMSIS_NN_USE_SINGLE_ROUNDING)
    r.high_only = shift <= -1;
    r.hshift = r.high_only ? -shift - 1 : 0;
    r.round = (int64_t)1 << (30 - shift);
#else
    r.left = shift > 0 ? shift : 0;
    r.right = shift > 0 ? 0 : -shift;
    r.mask = (int32_t)(((uint32_t)1 << r.right) - 1u);
    r.half = r.mask >> 1;
#endif
    return r;
}

static inline int32_t rq_apply(const rq_t *r, int32_t val)
{
#if defined(CMSIS_NN_USE_SINGLE_ROUNDING)
    const int64_t prod = (int64_t)val * (int64_t)r->mult;
    if (r->high_only)
    {
        return (int32_t)((prod + r->round) >> 32) >> r->hshift;
    }
    const int64_t res = prod >> (30 - r->shift);
    return (int32_t)((res + 1) >> 1);
#else
    const int32_t v = (int32_t)((uint32_t)val << r->left);
    const int32_t high = (int32_t)(((int64_t)v * (int64_t)r->mult + ((int64_t)1 << 30)) >> 31);
    const int32_t res = high >> r->right;
    const int32_t threshold = r->half + (int32_t)((uint32_t)high >> 31);
    return res + ((high & r->mask) > threshold);
#endif
}

static inline int8_t rq_out(const rq_t *r, int32_t acc, int32_t out_offset, int32_t act_min, int32_t act_max)
{
    int32_t v = rq_apply(r, acc) + out_offset;
    v = v < act_min ? act_min : v;
    v = v > act_max ? act_max : v;
    return (int8_t)v;
}

int32_t esc2c_conv_fast_s8_buffer_size(int32_t in_c, int32_t kernel_h, int32_t kernel_w)
{
    return ESC2C_CONV_FAST_BUFFER_SIZE(in_c, kernel_h, kernel_w);
}

int32_t esc2c_conv_fast_s8_weights_len(int32_t in_c, int32_t out_c, int32_t kernel_h, int32_t kernel_w)
{
    return (out_c + 1) / 2 * ESC2C_CONV_FAST_KP(in_c, kernel_h, kernel_w) * 2;
}

int esc2c_conv_fast_s8(const int8_t *in, int32_t in_h, int32_t in_w, int32_t in_c,
                       const int16_t *weights, const int32_t *bias,
                       int8_t *out, int32_t out_h, int32_t out_w, int32_t out_c,
                       int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                       int32_t pad_h, int32_t pad_w, int32_t in_offset,
                       const int32_t *mult, const int32_t *shift, int32_t out_offset,
                       int32_t act_min, int32_t act_max, void *scratch)
{
    if (in == NULL || weights == NULL || out == NULL || mult == NULL || shift == NULL || scratch == NULL ||
        ((uintptr_t)weights & 3u) != 0 || in_c <= 0 || out_c <= 0 ||
        kernel_h <= 0 || kernel_w <= 0 || stride_h <= 0 || stride_w <= 0)
    {
        return -1;
    }
    geom_t g;
    g.in = in;
    g.in_h = in_h;
    g.in_w = in_w;
    g.in_c = in_c;
    g.kh = kernel_h;
    g.kw = kernel_w;
    g.k = in_c * kernel_h * kernel_w;
    g.kp = ESC2C_CONV_FAST_KP(in_c, kernel_h, kernel_w);
    g.off = in_offset;
    g.off2 = pack16(in_offset, in_offset);
    const int32_t nw = g.kp / 2;
    uint32_t *const cols = (uint32_t *)(void *)((int8_t *)scratch + ((4u - ((uintptr_t)scratch & 3u)) & 3u));
    g.lin = (int16_t *)(void *)(cols + NPIX * nw);
    const int32_t n_pix = out_h * out_w;
    const int32_t pairs = (out_c + 1) / 2;

    for (int32_t p0 = 0; p0 < n_pix; p0 += NPIX)
    {
        const int32_t n = n_pix - p0 < NPIX ? n_pix - p0 : NPIX;
        for (int32_t i = 0; i < NPIX; i++)
        {
            if (i < n)
            {
                const int32_t oy = (p0 + i) / out_w;
                const int32_t ox = (p0 + i) - oy * out_w;
                im2col_pixel(&g, cols + i, oy * stride_h - pad_h, ox * stride_w - pad_w);
            }
            else
            {
                for (int32_t j = 0; j < nw; j++)
                {
                    cols[NPIX * j + i] = 0;
                }
            }
        }
        int8_t *const dst = out + p0 * out_c;
        const int16_t *w = weights;
        for (int32_t pc = 0; pc < pairs; pc++)
        {
            int32_t acc[2][NPIX];
            dot_2x3(cols, w, nw, acc);
            w += 4 * nw;
            for (int32_t c = 0; c < 2; c++)
            {
                const int32_t o = 2 * pc + c;
                if (o >= out_c)
                {
                    break;
                }
                const rq_t r = rq_setup(mult[o], shift[o]);
                const int32_t b = bias != NULL ? bias[o] : 0;
                if (n == NPIX)
                {
                    dst[o] = rq_out(&r, acc[c][0] + b, out_offset, act_min, act_max);
                    dst[out_c + o] = rq_out(&r, acc[c][1] + b, out_offset, act_min, act_max);
                    dst[2 * out_c + o] = rq_out(&r, acc[c][2] + b, out_offset, act_min, act_max);
                    continue;
                }
                for (int32_t i = 0; i < n; i++)
                {
                    dst[i * out_c + o] = rq_out(&r, acc[c][i] + b, out_offset, act_min, act_max);
                }
            }
        }
    }
    return 0;
}
