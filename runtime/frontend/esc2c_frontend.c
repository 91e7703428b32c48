/* Log-mel front end (see esc2c_frontend.h). */
#include "esc2c_frontend.h"

#include <math.h>
#include <string.h>

#if ESC2C_FE_BUF_LENGTH % ESC2C_FE_HOP_LENGTH != 0 || ESC2C_FE_BUF_LENGTH < ESC2C_FE_WIN_LENGTH
#error "ESC2C_FE_BUF_LENGTH must be whole hops covering one window"
#endif
#if ESC2C_FE_WIN_LENGTH > ESC2C_FE_N_FFT
#error "ESC2C_FE_WIN_LENGTH must not exceed ESC2C_FE_N_FFT"
#endif

int esc2c_frontend_init(esc2c_frontend_t *st)
{
    memset(st, 0, sizeof(*st));
    return ESC2C_FE_RFFT_INIT(&st->fft) == ARM_MATH_SUCCESS ? 0 : -1;
}

/* frame[i] = src[i] * window[first + i] for n samples. */
static void window_samples(float32_t *frame, const int16_t *src, int32_t first, int32_t n)
{
    const float *w = &esc2c_fe_window[first];
    for (int32_t i = 0; i < n; i++)
    {
        frame[i] = (float32_t)src[i] * w[i];
    }
}

/* The windowed, zero-padded frame in st->frame -> one int8 column, element m at column[m * stride]. */
static void frame_to_column(esc2c_frontend_t *st, int8_t *column, int32_t stride)
{
    float32_t *p = st->frame;
    const float32_t *s = st->spectrum;
    arm_rfft_fast_f32(&st->fft, st->frame, st->spectrum, 0);
    /* packed output: s[0] = X[0], s[1] = X[N/2] (both real), then re, im of X[1 .. N/2 - 1] */
    p[0] = s[0] * s[0];
    p[ESC2C_FE_N_BINS - 1] = s[1] * s[1];
    for (int32_t k = 1; k < ESC2C_FE_N_BINS - 1; k++)
    {
        p[k] = s[2 * k] * s[2 * k] + s[2 * k + 1] * s[2 * k + 1];
    }
#if ESC2C_FE_POWER == 1
    for (int32_t k = 0; k < ESC2C_FE_N_BINS; k++)
    {
        p[k] = sqrtf(p[k]);
    }
#elif ESC2C_FE_POWER != 2
#error "ESC2C_FE_POWER must be 1 or 2"
#endif
    for (int32_t m = 0; m < ESC2C_FE_N_MELS; m++)
    {
        const float *w = &esc2c_fe_mel_weights[esc2c_fe_mel_offset[m]];
        const float32_t *bins = &p[esc2c_fe_mel_start[m]];
        const int32_t len = esc2c_fe_mel_len[m];
        float32_t mel = 0.0f;
        for (int32_t j = 0; j < len; j++)
        {
            mel += w[j] * bins[j];
        }
        if (!(mel > ESC2C_FE_LOG_FLOOR))
        {
            mel = ESC2C_FE_LOG_FLOOR;
        }
        const float32_t x = (10.0f * log10f(mel) - ESC2C_FE_MEAN) / ESC2C_FE_STD;
        /* QuantizeLinear: round half to even (rintf in the default rounding mode), add the zero point,
         * saturate */
        float32_t q = rintf(x / ESC2C_FE_INPUT_SCALE) + (float32_t)ESC2C_FE_INPUT_ZERO_POINT;
        q = q < -128.0f ? -128.0f : (q > 127.0f ? 127.0f : q);
        column[m * stride] = (int8_t)q;
    }
}

int esc2c_frontend_push(esc2c_frontend_t *st, const int16_t *hop)
{
    memcpy(&st->ring[st->ring_pos], hop, sizeof(int16_t) * ESC2C_FE_HOP_LENGTH);
    st->ring_pos = (st->ring_pos + ESC2C_FE_HOP_LENGTH) % ESC2C_FE_BUF_LENGTH;
    if (st->buffered < ESC2C_FE_BUF_LENGTH)
    {
        st->buffered += ESC2C_FE_HOP_LENGTH;
        if (st->buffered < ESC2C_FE_BUF_LENGTH)
        {
            return 0;
        }
    }
    /* the frame is the oldest WIN_LENGTH samples of the ring, starting at ring_pos */
    const int32_t tail = ESC2C_FE_BUF_LENGTH - st->ring_pos;
    const int32_t first = tail < ESC2C_FE_WIN_LENGTH ? tail : ESC2C_FE_WIN_LENGTH;
    window_samples(st->frame, &st->ring[st->ring_pos], 0, first);
    window_samples(&st->frame[first], st->ring, first, ESC2C_FE_WIN_LENGTH - first);
    memset(&st->frame[ESC2C_FE_WIN_LENGTH], 0, sizeof(float32_t) * (ESC2C_FE_N_FFT - ESC2C_FE_WIN_LENGTH));
    frame_to_column(st, st->columns[st->column_pos], 1);
    st->column_pos = (st->column_pos + 1) % ESC2C_FE_FRAMES;
    st->n_columns++;
    return 1;
}

const int8_t *esc2c_frontend_last_column(const esc2c_frontend_t *st)
{
    if (st->n_columns == 0u)
    {
        return NULL;
    }
    return st->columns[(st->column_pos + ESC2C_FE_FRAMES - 1) % ESC2C_FE_FRAMES];
}

int esc2c_frontend_window(const esc2c_frontend_t *st, int8_t *model_input)
{
    if (st->n_columns < (uint32_t)ESC2C_FE_FRAMES)
    {
        return -1;
    }
    for (int32_t f = 0; f < ESC2C_FE_FRAMES; f++)
    {
        const int8_t *col = st->columns[(st->column_pos + f) % ESC2C_FE_FRAMES];
        for (int32_t m = 0; m < ESC2C_FE_N_MELS; m++)
        {
            model_input[m * ESC2C_FE_FRAMES + f] = col[m];
        }
    }
    return 0;
}

int esc2c_frontend_clip(esc2c_frontend_t *st, const int16_t *pcm, int32_t n, int8_t *model_input)
{
    if (esc2c_frontend_init(st) != 0)
    {
        return -1;
    }
    if (n > ESC2C_FE_N_SAMPLES)
    {
        n = ESC2C_FE_N_SAMPLES;
    }
    if (n < 0)
    {
        n = 0;
    }
    for (int32_t t = 0; t < ESC2C_FE_FRAMES; t++)
    {
        const int32_t start = t * ESC2C_FE_HOP_LENGTH;
        int32_t have = n - start;
        have = have < 0 ? 0 : (have > ESC2C_FE_WIN_LENGTH ? ESC2C_FE_WIN_LENGTH : have);
        if (have > 0)
        {
            window_samples(st->frame, &pcm[start], 0, have);
        }
        memset(&st->frame[have], 0, sizeof(float32_t) * (ESC2C_FE_N_FFT - have));
        frame_to_column(st, &model_input[t], ESC2C_FE_FRAMES);
    }
    return 0;
}
