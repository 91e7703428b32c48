/* esc2c fast int8 convolution: see include/esc2c_conv_fast.h for the contract and the weight layout.
 *
 * Per step of 3 output pixels:
 *   1. im2col: each pixel's receptive field, plus in_offset, widened to int16 and stored as words of two
 *      taps (tap 4q+s, tap 4q+s+2), the 3 pixels' words interleaved so one load fetches all three;
 *   2. for every pair of output channels, 6 dot products over NW words (SMLAD: 2 MACs per instruction);
 *      esc2c_conv_fast_s8_w8 reads int8 weights instead, one word per step, widened by two SXTB16;
 *   3. requantization of the 6 accumulators (arm_nn_requantize arithmetic, both rounding modes): with double
 *      rounding and every channel's shift <= -1 (checked once per call against the layer's largest
 *      accumulator, esc2c_conv_common.h: chan_setup_lean), the lean form, ~10 instructions per output.
 */
#include "esc2c_conv_fast.h"
#include "esc2c_conv_common.h"

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

typedef struct
{
    const int8_t *in;
    const int8_t *in_end; /* one past the input tensor */
    int32_t in_h, in_w, in_c, kh, kw, row_taps, row_quads, off;
    uint32_t off2;
    int16_t *lin;
} geom_t;

/* One pixel's column (window origin y0, x0) into col[0], col[NPIX], col[2 * NPIX], ...: per kernel row,
 * KW * C_in taps padded to row_quads quads. Inlined into each entry point (a call per pixel costs ~1 %). */
static inline __attribute__((always_inline)) void im2col_pixel(const geom_t *g, uint32_t *col, int32_t y0,
                                                               int32_t x0)
{
    const int32_t cin = g->in_c;
    const int32_t rq = g->row_quads;
    const int full_row = x0 >= 0 && x0 + g->kw <= g->in_w;
    for (int32_t dy = 0; dy < g->kh; dy++)
    {
        const int32_t y = y0 + dy;
        if (y < 0 || y >= g->in_h)
        {
            for (int32_t q = 0; q < rq; q++)
            {
                col[0] = 0;
                col[NPIX] = 0;
                col += 2 * NPIX;
            }
            continue;
        }
        const int8_t *row = g->in + (y * g->in_w + x0) * cin;
        /* a whole row by 4-byte loads; bytes past row_taps (still inside the tensor) meet zero weights */
        if (full_row && row + 4 * rq <= g->in_end)
        {
            int32_t q = 0;
            for (; q + 2 <= rq; q += 2)
            {
                widen4(row, g->off2, g->off, &col[0], &col[NPIX]);
                widen4(row + 4, g->off2, g->off, &col[2 * NPIX], &col[3 * NPIX]);
                row += 8;
                col += 4 * NPIX;
            }
            if (q < rq)
            {
                widen4(row, g->off2, g->off, &col[0], &col[NPIX]);
                col += 2 * NPIX;
            }
            continue;
        }
        if (cin % 4 == 0) /* left/right edge, whole quads per tap position */
        {
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
            continue;
        }
        /* left/right edge (or the tensor's last bytes): taps one by one into int16, then paired */
        int16_t *d = g->lin;
        for (int32_t dx = 0; dx < g->kw; dx++)
        {
            const int32_t x = x0 + dx;
            const int inside = x >= 0 && x < g->in_w;
            for (int32_t c = 0; c < cin; c++)
            {
                *d++ = inside ? (int16_t)(row[dx * cin + c] + g->off) : 0;
            }
        }
        for (int32_t t = g->row_taps; t < 4 * rq; t++)
        {
            *d++ = 0;
        }
        /* taps (t0, t1), (t2, t3) -> words (t0, t2), (t1, t3) */
        const uint32_t *lw = (const uint32_t *)(const void *)g->lin;
        for (int32_t q = 0; q < rq; q++)
        {
            const uint32_t t01 = lw[2 * q];
            const uint32_t t23 = lw[2 * q + 1];
            col[0] = (t01 & 0xFFFFu) | (t23 << 16);
            col[NPIX] = (t01 >> 16) | (t23 & 0xFFFF0000u);
            col += 2 * NPIX;
        }
    }
}

/* The columns of a whole step when its three pixels lie side by side in one output row with every window
 * inside the input (p: the first window's origin; pstep: bytes between the windows): per kernel row, quad q
 * of the three windows is read together and widened into the six consecutive column words of that quad
 * (even words of pixels 0-2, then odd words), one loop for the three pixels. */
static inline __attribute__((always_inline)) void im2col_step3(const geom_t *g, uint32_t *col, const int8_t *p,
                                                               int32_t pstep)
{
    const int32_t rq = g->row_quads, row_stride = g->in_w * g->in_c, off = g->off;
    const uint32_t off2 = g->off2;
    for (int32_t dy = 0; dy < g->kh; dy++)
    {
        const int8_t *r = p;
        for (int32_t q = 0; q < rq; q++)
        {
            widen4(r, off2, off, &col[0], &col[NPIX]);
            widen4(r + pstep, off2, off, &col[1], &col[NPIX + 1]);
            widen4(r + 2 * pstep, off2, off, &col[2], &col[NPIX + 2]);
            r += 4;
            col += 2 * NPIX;
        }
        p += row_stride;
    }
}

/* The six products of a step: channel c0's weight pair (wa) and c1's (wb) with the 3 pixels' column words. */
#define ESC2C_SMLAD6                                   \
    "smlad %[a00], %[wa], %[x0], %[a00]\n\t"           \
    "smlad %[a01], %[wa], %[x1], %[a01]\n\t"           \
    "smlad %[a02], %[wa], %[x2], %[a02]\n\t"           \
    "smlad %[a10], %[wb], %[x0], %[a10]\n\t"           \
    "smlad %[a11], %[wb], %[x1], %[a11]\n\t"           \
    "smlad %[a12], %[wb], %[x2], %[a12]\n\t"
#define ESC2C_LOAD_X "ldmia.w %[xp]!, {%[x0], %[x1], %[x2]}\n\t"
/* One step: 2 weight words x 3 column words, 12 MACs in 8 instructions of 4 bytes each (32 bytes). */
#define ESC2C_DOT_STEP ESC2C_LOAD_X "ldrd %[wa], %[wb], [%[wp]], #8\n\t" ESC2C_SMLAD6
/* The int8-weight step: one word holds both channels' taps (c0 t, c1 t, c0 t+2, c1 t+2); SXTB16 takes bytes 0
 * and 2 (channel c0's pair), SXTB16 ROR 8 bytes 1 and 3 (c1's). 12 MACs in 10 instructions (40 bytes). */
#define ESC2C_DOT_STEP8                                \
    ESC2C_LOAD_X                                       \
    "ldr.w %[wb], [%[wp]], #4\n\t"                     \
    "sxtb16 %[wa], %[wb]\n\t"                          \
    "sxtb16 %[wb], %[wb], ror #8\n\t" ESC2C_SMLAD6
/* Two int8-weight steps with one LDRD for both weight words (the second waits in lr): 24 MACs in 19
 * instructions (76 bytes) instead of 20. Column words per channel always come in pairs (padded_taps is a
 * multiple of 4), so a run of these units covers every column. */
#define ESC2C_DOT_STEP8X2                              \
    ESC2C_LOAD_X                                       \
    "ldrd %[wb], lr, [%[wp]], #8\n\t"                  \
    "sxtb16 %[wa], %[wb]\n\t"                          \
    "sxtb16 %[wb], %[wb], ror #8\n\t" ESC2C_SMLAD6     \
    ESC2C_LOAD_X                                       \
    "sxtb16 %[wa], lr\n\t"                             \
    "sxtb16 %[wb], lr, ror #8\n\t" ESC2C_SMLAD6
/* Steps unrolled in one straight run (one copy: not inlined, so all 14 registers are free for the asm); a
 * call with n <= ESC2C_DOT_RUN steps jumps to the n-th step from the
 * end (no loop counter, no compare and branch per step). 96 steps = 3 KB of code, reachable by ADR.W. */
#define ESC2C_DOT_RUN 96
#define ESC2C_STR2(x) #x
#define ESC2C_STR(x) ESC2C_STR2(x)

/* All pairs of a step in one asm loop when nw <= ESC2C_DOT_LONG: per pair, the accumulators (r0-r5) are
 * cleared, the straight run of ESC2C_DOT_LONG steps is entered at step ESC2C_DOT_LONG - nw, and the six sums
 * are stored with one STM; the loop state lives in memory operands, leaving 13 registers and lr to the run. */
#define ESC2C_DOT_LONG 288
#if ESC2C_FAST_DSP
#define ESC2C_DOT_PAIRS_LONG(NAME, UNIT, UNITS, EXTRA) \
__attribute__((noinline)) static void NAME(const uint32_t *cols, const void *weights, int32_t nw, \
                                                     int32_t n_pairs, int32_t *acc) \
{ \
    register int32_t a00 __asm__("r0"); \
    register int32_t a01 __asm__("r1"); \
    register int32_t a02 __asm__("r2"); \
    register int32_t a10 __asm__("r3"); \
    register int32_t a11 __asm__("r4"); \
    register int32_t a12 __asm__("r5"); \
    register uint32_t x0 __asm__("r10"); \
    register uint32_t x1 __asm__("r11"); \
    register uint32_t x2 __asm__("r12"); \
    const uint32_t *wp = (const uint32_t *)(const void *)weights; \
    const uint32_t *xp; \
    uint32_t wa, wb; \
    uint32_t entry; \
    int32_t count = n_pairs; \
    int32_t *accp = acc; \
    const uint32_t *colsm = cols; \
    const int32_t nwm = nw; \
    __asm__ volatile( \
        "b 5f\n\t" \
        "1:\n\t" \
        "movs %[a00], #0\n\t" \
        "movs %[a01], #0\n\t" \
        "movs %[a02], #0\n\t" \
        "movs %[a10], #0\n\t" \
        "movs %[a11], #0\n\t" \
        "movs %[a12], #0\n\t" \
        "ldr %[xp], %[colsm]\n\t" \
        "ldr %[wa], %[entry]\n\t" \
        "bx %[wa]\n\t" \
        ".p2align 2\n\t" \
        ".rept " ESC2C_STR(UNITS) "\n\t" UNIT ".endr\n" \
        "3:\n\t" \
        "ldr %[wa], %[accp]\n\t" \
        "stmia %[wa]!, {r0, r1, r2, r3, r4, r5}\n\t" \
        "str %[wa], %[accp]\n\t" \
        "ldr %[wa], %[count]\n\t" \
        "subs %[wa], %[wa], #1\n\t" \
        "str %[wa], %[count]\n\t" \
        "bne 1b\n\t" \
        "b 6f\n\t" \
        "5:\n\t" \
        "adr %[wa], 3b\n\t" \
        "ldr %[wb], %[nwm]\n\t" \
        "sub %[wa], %[wa], %[wb], lsl #5\n\t" EXTRA \
        "orr %[wa], %[wa], #1\n\t" \
        "str %[wa], %[entry]\n\t" \
        "b 1b\n\t" \
        "6:\n\t" \
        : [a00] "=&r"(a00), [a01] "=&r"(a01), [a02] "=&r"(a02), [a10] "=&r"(a10), [a11] "=&r"(a11), \
          [a12] "=&r"(a12), [xp] "=&r"(xp), [wp] "+r"(wp), [x0] "=&r"(x0), [x1] "=&r"(x1), [x2] "=&r"(x2), \
          [wa] "=&r"(wa), [wb] "=&r"(wb), [entry] "=m"(entry), [count] "+m"(count), [accp] "+m"(accp) \
        : [colsm] "m"(colsm), [nwm] "m"(nwm) \
        : "cc", "memory", "lr"); \
}
/* int16 weights: 32-byte steps; int8 weights: 76-byte units of two steps (the entry goes back 32 + 4 + 2 bytes
 * per step) */
ESC2C_DOT_PAIRS_LONG(dot_pairs_long, ESC2C_DOT_STEP, ESC2C_DOT_LONG, "")
ESC2C_DOT_PAIRS_LONG(dot_pairs_long8, ESC2C_DOT_STEP8X2, ESC2C_DOT_LONG / 2,
                     "sub %[wa], %[wa], %[wb], lsl #2\n\tsub %[wa], %[wa], %[wb], lsl #1\n\t")
#endif

/* acc[6 * pair + 3 * c + p] = dot product of channel c of the pair with column p, for n_pairs consecutive
 * channel pairs; nw words per column. One call per step of 3 pixels. W8: int8 weights (one word per column
 * word j: c0 t, c1 t, c0 t+2, c1 t+2), else int16 (two words: c0's taps t, t+2, then c1's). */
#if ESC2C_FAST_DSP
/* At -Os GCC keeps the loop state in registers across the asm, which needs 14 of them: these two are
 * compiled at -O2 whatever the build type (MinSizeRel builds too). */
#if defined(__OPTIMIZE_SIZE__)
#define ESC2C_DOT_PAIRS_OPT __attribute__((optimize("O2")))
#else
#define ESC2C_DOT_PAIRS_OPT
#endif
#define ESC2C_DOT_PAIRS(NAME, STEP, EXTRA, RUN) \
__attribute__((noinline)) ESC2C_DOT_PAIRS_OPT static void NAME(const uint32_t *cols, const void *weights, int32_t nw, \
                                           int32_t n_pairs, int32_t *acc) \
{ \
    const uint32_t *wp = (const uint32_t *)weights; \
    register uint32_t x0 __asm__("r10"); \
    register uint32_t x1 __asm__("r11"); \
    register uint32_t x2 __asm__("r12"); \
    uint32_t wa, wb; \
    for (int32_t pc = 0; pc < n_pairs; pc++) \
    { \
        int32_t a00 = 0, a01 = 0, a02 = 0, a10 = 0, a11 = 0, a12 = 0; \
        const uint32_t *xp = cols; \
        int32_t left = nw; \
        while (left > 0) \
        { \
            int32_t n = left < RUN ? left : RUN; \
            left -= n; \
            /* wa holds the entry address until the first step loads it */ \
            __asm__ volatile("adr.w %[wa], 3f\n\t" \
                             "sub.w %[wa], %[wa], %[n], lsl #5\n\t" EXTRA \
                             "orr.w %[wa], %[wa], #1\n\t" \
                             "bx %[wa]\n\t" \
                             ".p2align 2\n\t" \
                             ".rept " ESC2C_STR(RUN) "\n\t" STEP ".endr\n" \
                             "3:\n\t" \
                             : [a00] "+r"(a00), [a01] "+r"(a01), [a02] "+r"(a02), [a10] "+r"(a10), \
                               [a11] "+r"(a11), [a12] "+r"(a12), [xp] "+r"(xp), [wp] "+r"(wp), [x0] "=&r"(x0), \
                               [x1] "=&r"(x1), [x2] "=&r"(x2), [wa] "=&r"(wa), [wb] "=&r"(wb), [n] "+r"(n) \
                             : \
                             : "memory"); \
        } \
        acc[0] = a00; \
        acc[1] = a01; \
        acc[2] = a02; \
        acc[3] = a10; \
        acc[4] = a11; \
        acc[5] = a12; \
        acc += 6; \
    } \
}
/* the int8 run is shorter: it only serves layers past ESC2C_DOT_LONG words, and int8 weights are chosen to
 * save flash (32 steps: 1.4 KB of code instead of 3.9 KB; the entry computation and the loop test then come
 * every 32 steps, 320 instructions, instead of every 96) */
#define ESC2C_DOT_RUN8 32
ESC2C_DOT_PAIRS(dot_pairs, ESC2C_DOT_STEP, "", ESC2C_DOT_RUN)
ESC2C_DOT_PAIRS(dot_pairs8, ESC2C_DOT_STEP8, "sub.w %[wa], %[wa], %[n], lsl #3\n\t", ESC2C_DOT_RUN8)
#else
/* Portable C, the same sums: for column word j (taps t, t + 2 in its low and high halves), the pair's four
 * weights sit at 4j..4j+3 of its block, ordered as the comment in the loop says for each width. */
static inline int32_t w_at(const void *weights, int w8, int32_t i)
{
    return w8 ? ((const int8_t *)weights)[i] : ((const int16_t *)weights)[i];
}

static void dot_pairs_c(const uint32_t *cols, const void *weights, int w8, int32_t nw, int32_t n_pairs,
                        int32_t *acc)
{
    for (int32_t pc = 0; pc < n_pairs; pc++)
    {
        const int32_t base = pc * 4 * nw;
        int32_t a[2][NPIX] = {{0}};
        for (int32_t j = 0; j < nw; j++)
        {
            const uint32_t *x = cols + NPIX * j;
            /* int16: c0 lo, c0 hi, c1 lo, c1 hi; int8: c0 lo, c1 lo, c0 hi, c1 hi */
            const int32_t w0l = w_at(weights, w8, base + 4 * j), w0h = w_at(weights, w8, base + 4 * j + (w8 ? 2 : 1));
            const int32_t w1l = w_at(weights, w8, base + 4 * j + (w8 ? 1 : 2)), w1h = w_at(weights, w8, base + 4 * j + 3);
            for (int p = 0; p < NPIX; p++)
            {
                const int32_t lo = (int16_t)(x[p] & 0xFFFF);
                const int32_t hi = (int16_t)(x[p] >> 16);
                a[0][p] += w0l * lo + w0h * hi;
                a[1][p] += w1l * lo + w1h * hi;
            }
        }
        memcpy(acc + 6 * pc, a, sizeof(a));
    }
}

__attribute__((noinline)) static void dot_pairs(const uint32_t *cols, const void *weights, int32_t nw,
                                                int32_t n_pairs, int32_t *acc)
{
    dot_pairs_c(cols, weights, 0, nw, n_pairs, acc);
}

__attribute__((noinline)) static void dot_pairs8(const uint32_t *cols, const void *weights, int32_t nw,
                                                 int32_t n_pairs, int32_t *acc)
{
    dot_pairs_c(cols, weights, 1, nw, n_pairs, acc);
}
#endif

#define ESC2C_FAST_TABLE 128 /* channels per table (3 KB of stack, and 1.5 KB of accumulators) */

typedef struct
{
    const void *weights;    /* first channel pair of the block (int16 or int8) */
    const chan_t *chan;     /* its table */
    int32_t n_ch;           /* channels in the block (even unless it is the last) */
    int32_t *acc;           /* (ESC2C_FAST_TABLE + 1) * NPIX accumulators */
    int32_t nw, out_c, out_offset, act_min, act_max;
} out_t;

/* All output channels of one step: the columns are in place, dst is the first pixel's output. Everything
 * the requantization reads is copied to locals first: the int8 stores could alias any memory. lean: every
 * channel of the table takes chan_lean (sat_only: the clamp is the int8 range, one SSAT). */
static inline __attribute__((always_inline)) void step_channels(const out_t *o, const uint32_t *cols, int8_t *dst,
                                                                int32_t n, const int full, const int lean,
                                                                const int sat_only, const int w8)
{
    int32_t *const acc = o->acc;
    const int32_t n_ch = o->n_ch, out_c = o->out_c, out_offset = o->out_offset;
    const int32_t act_min = o->act_min, act_max = o->act_max;
    const chan_t *c = o->chan;
#if ESC2C_FAST_DSP
    if (o->nw <= ESC2C_DOT_LONG)
    {
        (w8 ? dot_pairs_long8 : dot_pairs_long)(cols, o->weights, o->nw, (n_ch + 1) / 2, acc);
    }
    else
#endif
    {
        (w8 ? dot_pairs8 : dot_pairs)(cols, o->weights, o->nw, (n_ch + 1) / 2, acc);
    }
    const int32_t *a = acc;
#if ESC2C_LEAN
    if (lean)
    {
        for (int32_t ch = 0; ch < n_ch; ch++)
        {
            const chan_t cc = *c++;
            const int32_t a0 = a[0], a1 = a[1], a2 = a[2];
            const int8_t r0 = sat_clamp8(chan_lean(&cc, a0), act_min, act_max, sat_only);
            const int8_t r1 = sat_clamp8(chan_lean(&cc, a1), act_min, act_max, sat_only);
            const int8_t r2 = sat_clamp8(chan_lean(&cc, a2), act_min, act_max, sat_only);
            dst[0] = r0;
            dst[out_c] = r1;
            dst[2 * out_c] = r2;
            a += NPIX;
            dst++;
        }
        return;
    }
#else
    (void)lean;
    (void)sat_only;
#endif
    for (int32_t ch = 0; ch < n_ch; ch++)
    {
        const chan_t cc = *c++;
        if (full)
        {
            const int32_t a0 = a[0], a1 = a[1], a2 = a[2];
            const int8_t r0 = clamp_out(chan_requant(&cc, a0), out_offset, act_min, act_max, 0);
            const int8_t r1 = clamp_out(chan_requant(&cc, a1), out_offset, act_min, act_max, 0);
            const int8_t r2 = clamp_out(chan_requant(&cc, a2), out_offset, act_min, act_max, 0);
            dst[0] = r0;
            dst[out_c] = r1;
            dst[2 * out_c] = r2;
        }
        else
        {
            for (int32_t i = 0; i < n; i++)
            {
                dst[i * out_c] = clamp_out(chan_requant(&cc, a[i]), out_offset, act_min, act_max, 0);
            }
        }
        a += NPIX;
        dst++;
    }
}

/* The steps in their own functions: small stack frames (the table and the accumulators live in the
 * caller's), so spilled values are one load away. One set per weight width, so a firmware links only the
 * dot loops of the widths its layers use. The lean steps exist with the double-rounding contract only. */
#if ESC2C_LEAN
#define ESC2C_LEAN_STEPS(SUFFIX, W8)                                                                     \
    __attribute__((noinline)) static void step_lean_sat##SUFFIX(const out_t *o, const uint32_t *cols,   \
                                                                int8_t *dst)                            \
    {                                                                                                    \
        step_channels(o, cols, dst, NPIX, 1, 1, 1, W8);                                                  \
    }                                                                                                    \
    __attribute__((noinline)) static void step_lean##SUFFIX(const out_t *o, const uint32_t *cols, int8_t *dst) \
    {                                                                                                    \
        step_channels(o, cols, dst, NPIX, 1, 1, 0, W8);                                                  \
    }
ESC2C_LEAN_STEPS(16, 0)
ESC2C_LEAN_STEPS(8, 1)
#endif
#define ESC2C_STEPS(SUFFIX, W8)                                                                          \
    __attribute__((noinline)) static void step_full##SUFFIX(const out_t *o, const uint32_t *cols, int8_t *dst) \
    {                                                                                                    \
        step_channels(o, cols, dst, NPIX, 1, 0, 0, W8);                                                  \
    }                                                                                                    \
    __attribute__((noinline)) static void step_part##SUFFIX(const out_t *o, const uint32_t *cols, int8_t *dst, \
                                                            int32_t n)                                  \
    {                                                                                                    \
        step_channels(o, cols, dst, n, 0, 0, 0, W8);                                                     \
    }
ESC2C_STEPS(16, 0)
ESC2C_STEPS(8, 1)

int32_t esc2c_conv_fast_s8_buffer_size(int32_t in_c, int32_t kernel_h, int32_t kernel_w)
{
    return ESC2C_CONV_FAST_BUFFER_SIZE(in_c, kernel_h, kernel_w);
}

/* Table for channels [c0, c0 + n). Returns 1 when every channel may take the lean requantization for
 * accumulators within bound (see chan_setup_lean). */
static int fill_table(chan_t *tab, int32_t c0, int32_t n, const int32_t *bias, const esc2c_mult_t *mult,
                      const int32_t *shift, int32_t out_offset, int64_t bound)
{
    int lean = 1;
    for (int32_t o = 0; o < n; o++)
    {
        chan_setup(&tab[o], bias != NULL ? bias[c0 + o] : 0, mult[c0 + o], shift[c0 + o]);
        lean &= chan_setup_lean(&tab[o], out_offset, bound);
    }
    return lean;
}

int32_t esc2c_conv_fast_s8_weights_len(int32_t in_c, int32_t out_c, int32_t kernel_h, int32_t kernel_w)
{
    return (out_c + 1) / 2 * ESC2C_CONV_FAST_KP(in_c, kernel_h, kernel_w) * 2;
}

/* Both entry points: W8 (a constant) picks the weight width, and with it the step functions. */
static inline __attribute__((always_inline)) int conv_fast(
    const int8_t *in, int32_t in_h, int32_t in_w, int32_t in_c, const void *weights, const int32_t *bias,
    int8_t *out, int32_t out_h, int32_t out_w, int32_t out_c, int32_t kernel_h, int32_t kernel_w,
    int32_t stride_h, int32_t stride_w, int32_t pad_h, int32_t pad_w, int32_t in_offset, const esc2c_mult_t *mult,
    const int32_t *shift, int32_t out_offset, int32_t act_min, int32_t act_max, void *scratch, const int w8)
{
    if (in == NULL || weights == NULL || out == NULL || mult == NULL || shift == NULL || scratch == NULL ||
        ((uintptr_t)weights & 3u) != 0 || in_c <= 0 || out_c <= 0 ||
        kernel_h <= 0 || kernel_w <= 0 || stride_h <= 0 || stride_w <= 0 || act_max > 127 || act_min < -128)
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
    g.in_end = in + in_h * in_w * in_c;
    g.row_taps = kernel_w * in_c;
    g.row_quads = (g.row_taps + 3) / 4;
    g.off = in_offset;
    g.off2 = pack16(in_offset, in_offset);
    const int32_t nw = ESC2C_CONV_FAST_KP(in_c, kernel_h, kernel_w) / 2;
    uint32_t *const cols = (uint32_t *)(void *)((int8_t *)scratch + ((4u - ((uintptr_t)scratch & 3u)) & 3u));
    g.lin = (int16_t *)(void *)(cols + NPIX * nw);
    chan_t table[ESC2C_FAST_TABLE];
    int32_t acc[(ESC2C_FAST_TABLE + 1) * NPIX];
    const int one_table = out_c <= ESC2C_FAST_TABLE;
    const int64_t bound = acc_bound(in_c * kernel_h * kernel_w, in_offset);
    int lean = 0;
    if (one_table)
    {
        lean = fill_table(table, 0, out_c, bias, mult, shift, out_offset, bound);
    }
    out_t oc;
    oc.weights = weights;
    oc.chan = table;
    oc.acc = acc;
    oc.n_ch = out_c;
    oc.nw = nw;
    oc.out_c = out_c;
    oc.out_offset = out_offset;
    oc.act_min = act_min;
    oc.act_max = act_max;
    const int sat_only = act_min == -128 && act_max == 127;
#if !ESC2C_LEAN
    (void)lean;
    (void)sat_only;
#endif
    const int32_t n_pix = out_h * out_w;

    /* bytes the last window's 4-byte row reads span from its first tap, less those to the tensor's end from
     * the window's origin (in_c * ((in_h - y0) * in_w - x0)): <= 0 when the reads stay inside */
    const int32_t last_quads = ((kernel_h - 1) * in_w + (NPIX - 1) * stride_w) * in_c + 4 * g.row_quads;
    int32_t oy = 0, ox = 0; /* position of the step's first pixel */
    for (int32_t p0 = 0; p0 < n_pix; p0 += NPIX)
    {
        const int32_t n = n_pix - p0 < NPIX ? n_pix - p0 : NPIX;
        const int32_t y0 = oy * stride_h - pad_h, x0 = ox * stride_w - pad_w;
        if (n == NPIX && ox + NPIX <= out_w && y0 >= 0 && y0 + kernel_h <= in_h && x0 >= 0 &&
            x0 + (NPIX - 1) * stride_w + kernel_w <= in_w &&
            last_quads - in_c * ((in_h - y0) * in_w - x0) <= 0)
        {
            /* one output row, every window inside: the three pixels' columns together */
            im2col_step3(&g, cols, in + (y0 * in_w + x0) * in_c, stride_w * in_c);
            ox += NPIX;
            if (ox == out_w)
            {
                ox = 0;
                oy++;
            }
        }
        else
        {
            for (int32_t i = 0; i < NPIX; i++)
            {
                if (i < n)
                {
                    im2col_pixel(&g, cols + i, oy * stride_h - pad_h, ox * stride_w - pad_w);
                    if (++ox == out_w)
                    {
                        ox = 0;
                        oy++;
                    }
                }
                else
                {
                    for (int32_t j = 0; j < nw; j++)
                    {
                        cols[NPIX * j + i] = 0;
                    }
                }
            }
        }
        int8_t *const dst = out + p0 * out_c;
        if (!one_table)
        {
            for (int32_t c0 = 0; c0 < out_c; c0 += ESC2C_FAST_TABLE)
            {
                out_t ob = oc;
                ob.n_ch = out_c - c0 < ESC2C_FAST_TABLE ? out_c - c0 : ESC2C_FAST_TABLE;
                /* pair c0 / 2 starts 4 * nw weights in (int16 or int8 values) */
                ob.weights = (const int8_t *)weights + (size_t)(c0 / 2) * 4 * nw * (w8 ? 1 : 2);
                (void)fill_table(table, c0, ob.n_ch, bias, mult, shift, out_offset, bound);
                (w8 ? step_part8 : step_part16)(&ob, cols, dst + c0, n);
            }
        }
        else if (n != NPIX)
        {
            (w8 ? step_part8 : step_part16)(&oc, cols, dst, n);
        }
#if ESC2C_LEAN
        else if (lean && sat_only)
        {
            (w8 ? step_lean_sat8 : step_lean_sat16)(&oc, cols, dst);
        }
        else if (lean)
        {
            (w8 ? step_lean8 : step_lean16)(&oc, cols, dst);
        }
#endif
        else
        {
            (w8 ? step_full8 : step_full16)(&oc, cols, dst);
        }
    }
    return 0;
}

int esc2c_conv_fast_s8(const int8_t *in, int32_t in_h, int32_t in_w, int32_t in_c,
                       const int16_t *weights, const int32_t *bias,
                       int8_t *out, int32_t out_h, int32_t out_w, int32_t out_c,
                       int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                       int32_t pad_h, int32_t pad_w, int32_t in_offset,
                       const esc2c_mult_t *mult, const int32_t *shift, int32_t out_offset,
                       int32_t act_min, int32_t act_max, void *scratch)
{
    return conv_fast(in, in_h, in_w, in_c, weights, bias, out, out_h, out_w, out_c, kernel_h, kernel_w, stride_h,
                     stride_w, pad_h, pad_w, in_offset, mult, shift, out_offset, act_min, act_max, scratch, 0);
}

int esc2c_conv_fast_s8_w8(const int8_t *in, int32_t in_h, int32_t in_w, int32_t in_c,
                          const int8_t *weights, const int32_t *bias,
                          int8_t *out, int32_t out_h, int32_t out_w, int32_t out_c,
                          int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                          int32_t pad_h, int32_t pad_w, int32_t in_offset,
                          const esc2c_mult_t *mult, const int32_t *shift, int32_t out_offset,
                          int32_t act_min, int32_t act_max, void *scratch)
{
    return conv_fast(in, in_h, in_w, in_c, weights, bias, out, out_h, out_w, out_c, kernel_h, kernel_w, stride_h,
                     stride_w, pad_h, pad_w, in_offset, mult, shift, out_offset, act_min, act_max, scratch, 1);
}
