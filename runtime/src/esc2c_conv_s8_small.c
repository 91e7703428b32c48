/* esc2c int8 convolution for few taps per output, with max pooling in the epilogue: see
 * include/esc2c_conv_small.h for the contract and the weight order.
 *
 * Per output (pooled) pixel:
 *   1. one column per pixel of the pool window: its receptive field plus in_offset, widened to int16 words
 *      (tap 4q, tap 4q + 2), (tap 4q + 1, tap 4q + 3), 4 input bytes per SXTAB16 pair;
 *   2. per output channel, its weight words in registers: a dot product with every column (SMLAD, 2 MACs per
 *      instruction), the largest kept;
 *   3. one requantization of that accumulator, + out_offset, clamped, stored (the lean form when the
 *      layer allows it, as in the fast kernel).
 * The loops are compiled for 2x2 windows at 6, 12 and 18 words per channel, so those dot products are
 * straight-line code, and once for any layer.
 */
#include "esc2c_conv_small.h"

#include <stddef.h>
#include <string.h>

#include "esc2c_conv_common.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-loop-distribute-patterns") /* short zero runs: no memset calls */
#endif

#define MAX_ROW_TAPS (2 * ESC2C_CONV_SMALL_MAX_WORDS) /* 4 taps per quad, at most NW / 2 quads per row */

typedef struct
{
    const int8_t *in;
    int32_t in_size, in_h, in_w, in_c, kh, kw, sh, sw, pad_h, pad_w, rq, off;
    uint32_t off2;
    int32_t out_h, out_w, out_c, pool_h, pool_w, psh, psw, n_pool, out_offset, act_min, act_max, nw;
    const uint32_t *wide; /* out_c x NW words */
    uint32_t *cols;       /* n_pool x NW words */
    int8_t *rowbuf;       /* a pooled output row (NULL without pooling) */
    int8_t *out;
    const chan_t *tab;
    int lean;     /* every channel takes chan_lean */
    int lean_sat; /* and the clamp is the int8 range */
} small_t;

static inline int32_t smlad(uint32_t w, uint32_t x, int32_t acc)
{
#if defined(__ARM_FEATURE_DSP)
    int32_t r;
    __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(w), "r"(x), "r"(acc));
    return r;
#else
    return acc + (int16_t)(w & 0xFFFFu) * (int16_t)(x & 0xFFFFu) + (int16_t)(w >> 16) * (int16_t)(x >> 16);
#endif
}

/* One pixel's column (window origin y0, x0): per kernel row, rq quads of taps as 2 words each. */
static void column(const small_t *k, uint32_t *col, int32_t y0, int32_t x0)
{
    const int32_t cin = k->in_c, kw = k->kw, rq = k->rq;
    const int inside_x = x0 >= 0 && x0 + kw <= k->in_w;
    for (int32_t dy = 0; dy < k->kh; dy++)
    {
        const int32_t y = y0 + dy;
        if (y < 0 || y >= k->in_h)
        {
            for (int32_t j = 0; j < 2 * rq; j++)
            {
                col[j] = 0;
            }
            col += 2 * rq;
            continue;
        }
        const int32_t base = (y * k->in_w + x0) * cin; /* the row's first tap, when inside */
        if (inside_x && base + 4 * rq <= k->in_size)
        {
            /* whole quads by 4-byte loads; bytes past the row's taps (inside the tensor) meet zero weights */
            const int8_t *r = k->in + base;
            for (int32_t q = 0; q < rq; q++)
            {
                widen4(r, k->off2, k->off, &col[0], &col[1]);
                r += 4;
                col += 2;
            }
            continue;
        }
        /* left/right edge (or the tensor's last bytes): tap by tap, padding taps 0 */
        int16_t lin[MAX_ROW_TAPS];
        int32_t t = 0;
        for (int32_t dx = 0; dx < kw; dx++)
        {
            const int inside = x0 + dx >= 0 && x0 + dx < k->in_w;
            for (int32_t c = 0; c < cin; c++)
            {
                lin[t++] = inside ? (int16_t)(k->in[base + dx * cin + c] + k->off) : 0;
            }
        }
        for (; t < 4 * rq; t++)
        {
            lin[t] = 0;
        }
        for (int32_t q = 0; q < rq; q++)
        {
            col[0] = pack16(lin[4 * q], lin[4 * q + 2]);
            col[1] = pack16(lin[4 * q + 1], lin[4 * q + 3]);
            col += 2;
        }
    }
}

static inline int32_t smuad(uint32_t w, uint32_t x)
{
#if defined(__ARM_FEATURE_DSP)
    int32_t r;
    __asm__("smuad %0, %1, %2" : "=r"(r) : "r"(w), "r"(x));
    return r;
#else
    return (int16_t)(w & 0xFFFFu) * (int16_t)(x & 0xFFFFu) + (int16_t)(w >> 16) * (int16_t)(x >> 16);
#endif
}

static inline __attribute__((always_inline)) int32_t dot(const uint32_t *w, const uint32_t *x, const int32_t nw)
{
    int32_t acc = smuad(w[0], x[0]);
    for (int32_t j = 1; j < nw; j++)
    {
        acc = smlad(w[j], x[j], acc);
    }
    return acc;
}

#if defined(__ARM_FEATURE_DSP) && defined(__OPTIMIZE__)
/* best[c] = the largest of the 4 dot products of channel c's 6 weight words with the 4 columns, for n
 * channels: per channel one LDM of its weights into r0-r5, then per column 3 LDRD and 6 SMUAD/SMLAD, the
 * maximum by compare and conditional move (50 instructions for 4 x 12 taps). */
#define ESC2C_SMALL_PIXEL(FIRST_ACC)                                                                          \
    "ldrd %[c0], %[c1], [%[x]], #8\n\t"                                                                     \
    "smuad " FIRST_ACC ", r0, %[c0]\n\t"                                                                     \
    "smlad " FIRST_ACC ", r1, %[c1], " FIRST_ACC "\n\t"                                                      \
    "ldrd %[c0], %[c1], [%[x]], #8\n\t"                                                                     \
    "smlad " FIRST_ACC ", r2, %[c0], " FIRST_ACC "\n\t"                                                      \
    "smlad " FIRST_ACC ", r3, %[c1], " FIRST_ACC "\n\t"                                                      \
    "ldrd %[c0], %[c1], [%[x]], #8\n\t"                                                                     \
    "smlad " FIRST_ACC ", r4, %[c0], " FIRST_ACC "\n\t"                                                      \
    "smlad " FIRST_ACC ", r5, %[c1], " FIRST_ACC "\n\t"
#define ESC2C_SMALL_MAX "cmp %[acc], %[best]\n\tit gt\n\tmovgt %[best], %[acc]\n\t"
static void max_dots_w6_p4(const uint32_t *w, const uint32_t *cols, int32_t n, int32_t *best_out)
{
    int32_t acc, best;
    uint32_t c0, c1;
    const uint32_t *x = cols;
    __asm__ volatile("1:\n\t"
                     "ldm %[w]!, {r0, r1, r2, r3, r4, r5}\n\t"
                     ESC2C_SMALL_PIXEL("%[best]")
                     ESC2C_SMALL_PIXEL("%[acc]") ESC2C_SMALL_MAX
                     ESC2C_SMALL_PIXEL("%[acc]") ESC2C_SMALL_MAX
                     ESC2C_SMALL_PIXEL("%[acc]") ESC2C_SMALL_MAX
                     "str %[best], [%[out]], #4\n\t"
                     "sub %[x], %[x], #96\n\t"
                     "subs %[n], %[n], #1\n\t"
                     "bne 1b\n\t"
                     : [w] "+r"(w), [x] "+r"(x), [n] "+r"(n), [out] "+r"(best_out), [acc] "=&r"(acc),
                       [best] "=&r"(best), [c0] "=&r"(c0), [c1] "=&r"(c1)
                     :
                     : "r0", "r1", "r2", "r3", "r4", "r5", "cc", "memory");
}
/* The same for a window whose four columns share their widened rows (window_rows): pixel (i, j)'s six words
 * start at word 8j + 2i, read in place (no pointer steps: 49 instructions for 4 x 12 taps). */
#define ESC2C_SMALL_PIXEL_AT(FIRST_ACC, O0, O1, O2)                                                           \
    "ldrd %[c0], %[c1], [%[x], #" #O0 "]\n\t"                                                               \
    "smuad " FIRST_ACC ", r0, %[c0]\n\t"                                                                     \
    "smlad " FIRST_ACC ", r1, %[c1], " FIRST_ACC "\n\t"                                                      \
    "ldrd %[c0], %[c1], [%[x], #" #O1 "]\n\t"                                                               \
    "smlad " FIRST_ACC ", r2, %[c0], " FIRST_ACC "\n\t"                                                      \
    "smlad " FIRST_ACC ", r3, %[c1], " FIRST_ACC "\n\t"                                                      \
    "ldrd %[c0], %[c1], [%[x], #" #O2 "]\n\t"                                                               \
    "smlad " FIRST_ACC ", r4, %[c0], " FIRST_ACC "\n\t"                                                      \
    "smlad " FIRST_ACC ", r5, %[c1], " FIRST_ACC "\n\t"
static void max_dots_w6_p4_shared(const uint32_t *w, const uint32_t *rows, int32_t n, int32_t *best_out)
{
    int32_t acc, best;
    uint32_t c0, c1;
    __asm__ volatile("1:\n\t"
                     "ldm %[w]!, {r0, r1, r2, r3, r4, r5}\n\t"
                     ESC2C_SMALL_PIXEL_AT("%[best]", 0, 8, 16)
                     ESC2C_SMALL_PIXEL_AT("%[acc]", 8, 16, 24) ESC2C_SMALL_MAX
                     ESC2C_SMALL_PIXEL_AT("%[acc]", 32, 40, 48) ESC2C_SMALL_MAX
                     ESC2C_SMALL_PIXEL_AT("%[acc]", 40, 48, 56) ESC2C_SMALL_MAX
                     "str %[best], [%[out]], #4\n\t"
                     "subs %[n], %[n], #1\n\t"
                     "bne 1b\n\t"
                     : [w] "+r"(w), [n] "+r"(n), [out] "+r"(best_out), [acc] "=&r"(acc), [best] "=&r"(best),
                       [c0] "=&r"(c0), [c1] "=&r"(c1)
                     : [x] "r"(rows)
                     : "r0", "r1", "r2", "r3", "r4", "r5", "cc", "memory");
}
/* The same window for one input channel and a 3x3 kernel, from the rows at position 0 alone: row r's words
 * are A = (t0, t2) and B = (t1, t3) (taps x0 .. x0 + 3) and the channel's kernel row k holds W_A = (w0, w2),
 * W_B = (w1, 0), so pixel x0 takes SMLAD(W_A, A) + SMLAD(W_B, B) and pixel x0 + 1 (taps t1, t2, t3) takes
 * SMLAD(W_A, B) + SMLABT(W_B, A) (w1 * t2): the two horizontal pixels share each row's load. Top pair (rows
 * 0-2), its maximum, then the bottom pair (rows 1-3): 44 instructions for 4 x 9 taps. */
#define ESC2C_K3C1_ROW(ACC0, ACC1, WA, WB, OFF, FIRST)                                                      \
    "ldrd %[c0], %[c1], [%[x], #" #OFF "]\n\t"                                                              \
    FIRST                                                                                                  \
    "smlad " ACC0 ", " WB ", %[c1], " ACC0 "\n\t"                                                           \
    "smlabt " ACC1 ", " WB ", %[c0], " ACC1 "\n\t"
#define ESC2C_K3C1_FIRST(ACC0, ACC1, WA) "smuad " ACC0 ", " WA ", %[c0]\n\tsmuad " ACC1 ", " WA ", %[c1]\n\t"
#define ESC2C_K3C1_NEXT(ACC0, ACC1, WA)                                                                      \
    "smlad " ACC0 ", " WA ", %[c0], " ACC0 "\n\tsmlad " ACC1 ", " WA ", %[c1], " ACC1 "\n\t"
#define ESC2C_K3C1_PAIR(ACC0, ACC1, O0, O1, O2)                                                             \
    ESC2C_K3C1_ROW(ACC0, ACC1, "r0", "r1", O0, ESC2C_K3C1_FIRST(ACC0, ACC1, "r0"))                          \
    ESC2C_K3C1_ROW(ACC0, ACC1, "r2", "r3", O1, ESC2C_K3C1_NEXT(ACC0, ACC1, "r2"))                           \
    ESC2C_K3C1_ROW(ACC0, ACC1, "r4", "r5", O2, ESC2C_K3C1_NEXT(ACC0, ACC1, "r4"))
static void max_dots_k3c1_p4(const uint32_t *w, const uint32_t *rows, int32_t n, int32_t *best_out)
{
    int32_t acc, acc2, best;
    uint32_t c0, c1;
    const int32_t *const end = best_out + n;
    __asm__ volatile("1:\n\t"
                     "ldm %[w]!, {r0, r1, r2, r3, r4, r5}\n\t"
                     ESC2C_K3C1_PAIR("%[best]", "%[acc]", 0, 8, 16) ESC2C_SMALL_MAX
                     ESC2C_K3C1_PAIR("%[acc]", "%[acc2]", 8, 16, 24) ESC2C_SMALL_MAX
                     "cmp %[acc2], %[best]\n\tit gt\n\tmovgt %[best], %[acc2]\n\t"
                     "str %[best], [%[out]], #4\n\t"
                     "ldr %[c1], %[end]\n\t"
                     "cmp %[out], %[c1]\n\t"
                     "bne 1b\n\t"
                     : [w] "+r"(w), [out] "+r"(best_out), [acc] "=&r"(acc), [acc2] "=&r"(acc2), [best] "=&r"(best),
                       [c0] "=&r"(c0), [c1] "=&r"(c1)
                     : [x] "r"(rows), [end] "m"(end)
                     : "r0", "r1", "r2", "r3", "r4", "r5", "cc", "memory");
}
#undef ESC2C_K3C1_PAIR
#undef ESC2C_K3C1_NEXT
#undef ESC2C_K3C1_FIRST
#undef ESC2C_K3C1_ROW
#undef ESC2C_SMALL_PIXEL_AT
#undef ESC2C_SMALL_PIXEL
#undef ESC2C_SMALL_MAX
#define ESC2C_SMALL_ASM_W6_P4 1
#else
#define ESC2C_SMALL_ASM_W6_P4 0
/* Portable C, the same maxima as the asm above (the shared-load pairing of max_dots_k3c1_p4 written out) */
static void max_dots_k3c1_p4(const uint32_t *w, const uint32_t *rows, int32_t n, int32_t *best_out)
{
    for (int32_t ch = 0; ch < n; ch++)
    {
        int32_t best = INT32_MIN;
        for (int32_t i = 0; i < 2; i++)
        {
            int32_t a0 = 0, a1 = 0;
            for (int32_t kr = 0; kr < 3; kr++)
            {
                const uint32_t A = rows[2 * (i + kr)], B = rows[2 * (i + kr) + 1];
                const uint32_t wa = w[2 * kr], wb = w[2 * kr + 1];
                a0 = smlad(wb, B, smlad(wa, A, a0));
                a1 = smlad(wa, B, a1) + (int16_t)(wb & 0xFFFFu) * (int16_t)(A >> 16);
            }
            best = a0 > best ? a0 : best;
            best = a1 > best ? a1 : best;
        }
        best_out[ch] = best;
        w += 6;
    }
}

static void max_dots_w6_p4_shared(const uint32_t *w, const uint32_t *rows, int32_t n, int32_t *best_out)
{
    static const int32_t at[4] = {0, 2, 8, 10};
    for (int32_t ch = 0; ch < n; ch++)
    {
        int32_t best = dot(w, rows, 6);
        for (int32_t p = 1; p < 4; p++)
        {
            const int32_t a = dot(w, rows + at[p], 6);
            best = a > best ? a : best;
        }
        best_out[ch] = best;
        w += 6;
    }
}
#endif

/* A 2x2 window of a stride-1 conv with 3 kernel rows of one quad each (kernel_w * in_c <= 4), wholly inside
 * the input (p: its top-left pixel's first byte): its four columns use 4 input rows at 2 positions, each
 * widened once into rows[8j + 2r], rows[8j + 2r + 1] (position j, row r), so pixel (i, j)'s column is the six
 * words from 8j + 2i. 8 loads instead of 12, 16 words written instead of 24; positions = 1: position 0 only
 * (one input channel, 3x3: max_dots_k3c1_p4). */
static inline __attribute__((always_inline)) void window_rows(const small_t *k, uint32_t *rows, const int8_t *p,
                                                              const int32_t positions)
{
    const int32_t rs = k->in_w * k->in_c, c = k->in_c, off = k->off;
    const uint32_t off2 = k->off2;
    for (int32_t r = 0; r < 4; r++)
    {
        widen4(p, off2, off, &rows[2 * r], &rows[2 * r + 1]);
        if (positions == 2)
        {
            widen4(p + c, off2, off, &rows[8 + 2 * r], &rows[8 + 2 * r + 1]);
        }
        p += rs;
    }
}

/* One output pixel's channels from their largest accumulators: requantized, + out_offset, clamped, stored
 * (the maximum commutes with the requantization, which never decreases). requant_row inlines the common case
 * (lean, the clamp the int8 range); this one copy does the others. */
__attribute__((noinline)) static void requant_row_other(const small_t *k, const int32_t *best, int8_t *dst)
{
    const chan_t *c = k->tab;
    const int32_t out_c = k->out_c, out_offset = k->out_offset, act_min = k->act_min, act_max = k->act_max;
    const int sat_only = act_min == -128 && act_max == 127;
#if ESC2C_LEAN
    if (k->lean)
    {
        for (int32_t ch = 0; ch < out_c; ch++)
        {
            dst[ch] = sat_clamp8(chan_lean(&c[ch], best[ch]), act_min, act_max, sat_only);
        }
        return;
    }
#endif
    for (int32_t ch = 0; ch < out_c; ch++)
    {
        dst[ch] = sat_clamp8(chan_requant(&c[ch], best[ch]) + out_offset, act_min, act_max, sat_only);
    }
}

static inline __attribute__((always_inline)) void requant_row(const small_t *k, const int32_t *best, int8_t *dst)
{
#if ESC2C_LEAN
    if (k->lean_sat)
    {
        const chan_t *c = k->tab;
        const int32_t out_c = k->out_c;
        for (int32_t ch = 0; ch < out_c; ch++)
        {
            dst[ch] = sat_clamp8(chan_lean(&c[ch], best[ch]), -128, 127, 1);
        }
        return;
    }
#endif
    requant_row_other(k, best, dst);
}

/* The columns of one output (pooled) pixel: the window's pixels in raster order, nw words each. */
static inline __attribute__((always_inline)) void columns(const small_t *k, int32_t py, int32_t px, const int32_t nw)
{
    uint32_t *col = k->cols;
    const int32_t row_stride = k->in_w * k->in_c, rq = k->rq;
    if (rq == 1) /* one quad per kernel row (kernel_w * in_c <= 4): kernel_h = nw / 2 rows, a constant here */
    {
        const int32_t y_first = py * k->psh * k->sh - k->pad_h, x_first = px * k->psw * k->sw - k->pad_w;
        const int32_t y_last = y_first + (k->pool_h - 1) * k->sh, x_last = x_first + (k->pool_w - 1) * k->sw;
        if (y_first >= 0 && x_first >= 0 && y_last + nw / 2 <= k->in_h && x_last + k->kw <= k->in_w &&
            ((y_last + nw / 2 - 1) * k->in_w + x_last) * k->in_c + 4 <= k->in_size)
        {
            /* the whole window inside the tensor: each row's quad by one 4-byte load */
            const int8_t *wrow = k->in + (y_first * k->in_w + x_first) * k->in_c;
            for (int32_t i = 0; i < k->pool_h; i++)
            {
                const int8_t *r0 = wrow;
                for (int32_t j = 0; j < k->pool_w; j++)
                {
                    const int8_t *r = r0;
                    for (int32_t dy = 0; dy < nw / 2; dy++)
                    {
                        widen4(r, k->off2, k->off, &col[0], &col[1]);
                        col += 2;
                        r += row_stride;
                    }
                    r0 += k->sw * k->in_c;
                }
                wrow += k->sh * row_stride;
            }
            return;
        }
    }
    for (int32_t i = 0; i < k->pool_h; i++)
    {
        const int32_t y0 = (py * k->psh + i) * k->sh - k->pad_h;
        for (int32_t j = 0; j < k->pool_w; j++)
        {
            const int32_t x0 = (px * k->psw + j) * k->sw - k->pad_w;
            const int32_t base = (y0 * k->in_w + x0) * k->in_c;
            if (y0 < 0 || y0 + k->kh > k->in_h || x0 < 0 || x0 + k->kw > k->in_w ||
                base + (k->kh - 1) * row_stride + 4 * rq > k->in_size)
            {
                column(k, col, y0, x0); /* a padded edge, or the tensor's last bytes */
                col += nw;
                continue;
            }
            /* whole quads by 4-byte loads; bytes past a row's taps (inside the tensor) meet zero weights */
            const int8_t *r = k->in + base;
            for (int32_t dy = 0; dy < k->kh; dy++)
            {
                for (int32_t q = 0; q < rq; q++)
                {
                    widen4(r + 4 * q, k->off2, k->off, &col[0], &col[1]);
                    col += 2;
                }
                r += row_stride;
            }
        }
    }
}

/* The whole layer for nw words per channel and n_pool pixels per window: constants in the 2x2-window copies
 * (nw = 6, 12 or 18, np = 4), read from k in the copy for any layer (nw = np = 0). */
static inline __attribute__((always_inline)) void layer(const small_t *k, const int32_t nw_c, const int32_t np)
{
    const int32_t nw = nw_c != 0 ? nw_c : k->nw;
    const int32_t out_c = k->out_c, n_pool = np != 0 ? np : k->n_pool, row_bytes = k->out_w * out_c;
    /* windows whose columns share their rows (window_rows): 2x2 pool of a stride-1 conv with 3 kernel rows of
     * one quad; inside the input from x = px * pool_stride_w - pad_w >= 0 to x + 1 + kernel_w <= in_w */
    const int shared = nw_c == 6 && np == 4 && k->kh == 3 && k->rq == 1 && k->sh == 1 && k->sw == 1 &&
                       k->pool_h == 2 && k->pool_w == 2;
    const int k3c1 = shared && k->in_c == 1 && k->kw == 3; /* rows at position 0 serve both columns */
    const int32_t px_lo = (k->pad_w + k->psw - 1) / k->psw;
    const int32_t px_hi = k->in_w - 1 - k->kw + k->pad_w >= 0 ? (k->in_w - 1 - k->kw + k->pad_w) / k->psw + 1 : 0;
    const int32_t last_read = (3 * k->in_w + 1) * k->in_c + 4; /* bytes from p to the last 4-byte read's end */
    for (int32_t py = 0; py < k->out_h; py++)
    {
        int8_t *const orow = k->out + py * row_bytes;
        int8_t *dst = k->rowbuf != NULL ? k->rowbuf : orow;
        /* the shared-rows windows of this row: [px_lo, px_hi) */
        const int32_t y0 = py * k->psh - k->pad_h;
        const int shared_row = shared && y0 >= 0 && y0 + 4 <= k->in_h;
        for (int32_t px = 0; px < k->out_w; px++)
        {
            int32_t best[ESC2C_CONV_SMALL_MAX_OUT];
            const int in_shared = nw_c == 6 && np == 4 && shared_row && px >= px_lo && px < px_hi;
            /* the window's first byte, and the last 4-byte read still inside the tensor */
            const int32_t p_at = (y0 * k->in_w + px * k->psw - k->pad_w) * k->in_c;
            if (in_shared && p_at + last_read <= k->in_size)
            {
                const int8_t *const p = k->in + p_at;
                if (k3c1)
                {
                    window_rows(k, k->cols, p, 1);
                    max_dots_k3c1_p4(k->wide, k->cols, out_c, best);
                }
                else
                {
                    window_rows(k, k->cols, p, 2);
                    max_dots_w6_p4_shared(k->wide, k->cols, out_c, best);
                }
            }
            else if (ESC2C_SMALL_ASM_W6_P4 && nw_c == 6 && np == 4)
            {
                /* the dot products and the maximum in one asm loop */
                columns(k, py, px, nw);
#if ESC2C_SMALL_ASM_W6_P4
                max_dots_w6_p4(k->wide, k->cols, out_c, best);
#endif
            }
            else
            {
                columns(k, py, px, nw);
                const uint32_t *w = k->wide;
                for (int32_t ch = 0; ch < out_c; ch++)
                {
                    /* a constant count: the channel's words copied to locals (registers); else read in place */
                    uint32_t wr_words[ESC2C_CONV_SMALL_MAX_WORDS];
                    const uint32_t *wr = w;
                    if (nw_c != 0)
                    {
                        for (int32_t j = 0; j < nw_c; j++)
                        {
                            wr_words[j] = w[j];
                        }
                        wr = wr_words;
                    }
                    const uint32_t *x = k->cols;
                    int32_t b = dot(wr, x, nw);
                    for (int32_t q = 1; q < n_pool; q++)
                    {
                        x += nw;
                        const int32_t a = dot(wr, x, nw);
                        b = a > b ? a : b;
                    }
                    best[ch] = b;
                    w += nw;
                }
            }
            requant_row(k, best, dst);
            dst += out_c;
        }
        if (k->rowbuf != NULL)
        {
            memcpy(orow, k->rowbuf, (size_t)row_bytes);
        }
    }
}

int32_t esc2c_conv_small_s8_buffer_size(int32_t in_c, int32_t kernel_h, int32_t kernel_w, int32_t out_c,
                                        int32_t pool_h, int32_t pool_w, int32_t out_w)
{
    return ESC2C_CONV_SMALL_BUFFER_SIZE(in_c, kernel_h, kernel_w, out_c, pool_h, pool_w, out_w);
}

/* The checks, the widened weights in the scratch and the requantization table: what every copy does before
 * its loops. Returns the words per channel, or -1 on bad arguments. */
__attribute__((noinline)) static int32_t setup(small_t *k, chan_t *tab, ESC2C_CONV_SMALL_PARAMS)
{
    if (in == NULL || weights == NULL || out == NULL || mult == NULL || shift == NULL || scratch == NULL ||
        in_h <= 0 || in_w <= 0 || in_c <= 0 || out_h < 0 || out_w < 0 || out_c <= 0 ||
        out_c > ESC2C_CONV_SMALL_MAX_OUT || kernel_h <= 0 || kernel_w <= 0 || stride_h <= 0 || stride_w <= 0 ||
        pool_h <= 0 || pool_w <= 0 || pool_stride_h <= 0 || pool_stride_w <= 0 || act_min > act_max ||
        act_max > 127 || act_min < -128)
    {
        return -1;
    }
    const int32_t nw = ESC2C_CONV_SMALL_WORDS(in_c, kernel_h, kernel_w);
    if (nw > ESC2C_CONV_SMALL_MAX_WORDS)
    {
        return -1;
    }
    *k = (small_t){.in = in, .in_size = in_h * in_w * in_c, .in_h = in_h, .in_w = in_w, .in_c = in_c,
                   .kh = kernel_h, .kw = kernel_w, .sh = stride_h, .sw = stride_w, .pad_h = pad_h, .pad_w = pad_w,
                   .rq = (kernel_w * in_c + 3) / 4, .off = in_offset, .off2 = pack16(in_offset, in_offset),
                   .out_h = out_h, .out_w = out_w, .out_c = out_c, .pool_h = pool_h, .pool_w = pool_w,
                   .psh = pool_stride_h, .psw = pool_stride_w, .n_pool = pool_h * pool_w, .out_offset = out_offset,
                   .act_min = act_min, .act_max = act_max, .nw = nw, .out = out};

    /* scratch: widened weights, the columns, the pooled row */
    uint32_t *const wide = (uint32_t *)(void *)((int8_t *)scratch + ((4u - ((uintptr_t)scratch & 3u)) & 3u));
    k->wide = wide;
    k->cols = wide + out_c * nw;
    k->rowbuf = k->n_pool > 1 ? (int8_t *)(k->cols + k->n_pool * nw) : NULL;
    const int32_t row_taps = kernel_w * in_c;
    uint32_t *wc = wide;
    for (int32_t ch = 0; ch < out_c; ch++)
    {
        for (int32_t dy = 0; dy < kernel_h; dy++)
        {
            const int8_t *src = weights + (ch * kernel_h + dy) * row_taps;
            for (int32_t q = 0; q < k->rq; q++)
            {
                int32_t t[4];
                for (int32_t s = 0; s < 4; s++)
                {
                    t[s] = 4 * q + s < row_taps ? src[4 * q + s] : 0;
                }
                wc[0] = pack16(t[0], t[2]);
                wc[1] = pack16(t[1], t[3]);
                wc += 2;
            }
        }
    }
    const int64_t bound = acc_bound(in_c * kernel_h * kernel_w, in_offset);
    k->lean = 1;
    for (int32_t ch = 0; ch < out_c; ch++)
    {
        chan_setup(&tab[ch], bias != NULL ? bias[ch] : 0, mult[ch], shift[ch]);
        k->lean &= chan_setup_lean(&tab[ch], out_offset, bound);
    }
    k->lean_sat = k->lean && act_min == -128 && act_max == 127;
    k->tab = tab;
    return nw;
}

/* The copies: 2x2 windows at 6, 12 and 18 words per channel (3x3 on 1, 2 and 3-4 channels), each its own
 * function and section, so firmware links only the copies its layers call; and one for any layer. */
#define ESC2C_SMALL_P4(N)                                                                                   \
    int esc2c_conv_small_s8_w##N##_p4(ESC2C_CONV_SMALL_PARAMS)                                              \
    {                                                                                                      \
        small_t k;                                                                                         \
        chan_t tab[ESC2C_CONV_SMALL_MAX_OUT];                                                              \
        if (setup(&k, tab, ESC2C_CONV_SMALL_ARGS) != N || k.n_pool != 4)                                   \
        {                                                                                                  \
            return -1;                                                                                     \
        }                                                                                                  \
        layer(&k, N, 4);                                                                                   \
        return 0;                                                                                          \
    }
ESC2C_SMALL_P4(6)
ESC2C_SMALL_P4(12)
ESC2C_SMALL_P4(18)

int esc2c_conv_small_s8_any(ESC2C_CONV_SMALL_PARAMS)
{
    small_t k;
    chan_t tab[ESC2C_CONV_SMALL_MAX_OUT];
    if (setup(&k, tab, ESC2C_CONV_SMALL_ARGS) < 0)
    {
        return -1;
    }
    layer(&k, 0, 0);
    return 0;
}

int esc2c_conv_small_s8(ESC2C_CONV_SMALL_PARAMS)
{
    const int32_t nw = ESC2C_CONV_SMALL_WORDS(in_c, kernel_h, kernel_w);
    if (pool_h * pool_w == 4)
    {
        switch (nw)
        {
        case 6: return esc2c_conv_small_s8_w6_p4(ESC2C_CONV_SMALL_ARGS);
        case 12: return esc2c_conv_small_s8_w12_p4(ESC2C_CONV_SMALL_ARGS);
        case 18: return esc2c_conv_small_s8_w18_p4(ESC2C_CONV_SMALL_ARGS);
        default: break;
        }
    }
    return esc2c_conv_small_s8_any(ESC2C_CONV_SMALL_ARGS);
}
