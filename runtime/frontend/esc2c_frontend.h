/*
 * Log-mel front end: int16 PCM -> the model's int8 input, computing the features the model was trained on
 * (esc2c.features.logmel, then the model's input QuantizeLinear). Per frame of ESC2C_FE_WIN_LENGTH samples
 * taken every ESC2C_FE_HOP_LENGTH samples:
 *   x = pcm * window / 32768, zero-padded to ESC2C_FE_N_FFT -> real FFT (CMSIS-DSP arm_rfft_fast_f32)
 *   -> |X|^ESC2C_FE_POWER -> sparse mel filterbank -> 10 log10(max(mel, ESC2C_FE_LOG_FLOOR))
 *   -> (x - ESC2C_FE_MEAN) / ESC2C_FE_STD -> saturate(round_half_even(x / ESC2C_FE_INPUT_SCALE) + zero point)
 * in single precision (the Cortex-M7's FPU). The sizes, the normalisation and the quantization come from the
 * generated esc2c_frontend_config.h, the window and mel weights from the generated esc2c_frontend_tables.c.
 *
 * The model input is NHWC [ESC2C_FE_N_MELS][ESC2C_FE_FRAMES][1]: element (mel, frame) at mel * FRAMES + frame.
 *
 * Whole clip:  esc2c_frontend_clip(&st, pcm, n, input)       (clip length rule: zero-pad or cut to N_SAMPLES)
 * Streaming:   esc2c_frontend_init(&st); then per hop of ESC2C_FE_HOP_LENGTH samples
 *              if (esc2c_frontend_push(&st, hop)) { ... a new column; esc2c_frontend_window(&st, input) ... }
 *              The state keeps a ring of the last ESC2C_FE_BUF_LENGTH samples and one of the last
 *              ESC2C_FE_FRAMES int8 columns, so each hop costs one FFT and old frames are never recomputed.
 */
#ifndef ESC2C_FRONTEND_H
#define ESC2C_FRONTEND_H

#include <stdint.h>

#include "arm_math.h"
#include "esc2c_frontend_config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct
{
    arm_rfft_fast_instance_f32 fft;
    int16_t ring[ESC2C_FE_BUF_LENGTH];               /* last BUF_LENGTH samples; ring_pos = oldest */
    int32_t ring_pos;
    int32_t buffered;                                /* samples in the ring (up to BUF_LENGTH) */
    int8_t columns[ESC2C_FE_FRAMES][ESC2C_FE_N_MELS]; /* last FRAMES columns; column_pos = oldest */
    int32_t column_pos;
    uint32_t n_columns;                              /* columns produced since init */
    float32_t frame[ESC2C_FE_N_FFT];                 /* windowed frame, then its power spectrum */
    float32_t spectrum[ESC2C_FE_N_FFT];              /* packed real FFT output */
} esc2c_frontend_t;

/* Resets the streaming state and sets up the FFT: 0 on success, -1 if CMSIS-DSP refuses the FFT size. */
int esc2c_frontend_init(esc2c_frontend_t *st);

/* Appends ESC2C_FE_HOP_LENGTH samples. Returns 1 when they complete a frame (a new int8 column is in the
 * column ring and esc2c_frontend_last_column() points at it), 0 while the first window is still filling. */
int esc2c_frontend_push(esc2c_frontend_t *st, const int16_t *hop);

/* The newest column (ESC2C_FE_N_MELS int8 values), or NULL before the first one. */
const int8_t *esc2c_frontend_last_column(const esc2c_frontend_t *st);

/* Writes the last ESC2C_FE_FRAMES columns, oldest first, as the model's NHWC input
 * (ESC2C_FE_INPUT_SIZE bytes). Returns 0, or -1 (writing nothing) while fewer columns exist. */
int esc2c_frontend_window(const esc2c_frontend_t *st, int8_t *model_input);

/* The whole-clip features of n samples: the first ESC2C_FE_N_SAMPLES, zero-padded when n is shorter.
 * Uses st for its FFT and scratch (and resets its streaming state). Returns 0, or -1 as init does. */
int esc2c_frontend_clip(esc2c_frontend_t *st, const int16_t *pcm, int32_t n, int8_t *model_input);

/* Generated tables (esc2c_frontend_tables.c). */
extern const float esc2c_fe_window[ESC2C_FE_WIN_LENGTH];
extern const uint16_t esc2c_fe_mel_start[ESC2C_FE_N_MELS];
extern const uint16_t esc2c_fe_mel_len[ESC2C_FE_N_MELS];
extern const uint16_t esc2c_fe_mel_offset[ESC2C_FE_N_MELS];
extern const float esc2c_fe_mel_weights[ESC2C_FE_MEL_WEIGHTS];

#ifdef __cplusplus
}
#endif

#endif /* ESC2C_FRONTEND_H */
