/* Raw-audio self-test shared by the host runner and the firmware: every PCM clip of audio_vectors.h through
 * the C front end (whole clip and streaming) and the model, checked against the Python pipeline. */
#ifndef ESC2C_AUDIO_CHECK_H
#define ESC2C_AUDIO_CHECK_H

#include <stdint.h>

/* Text output and profiling marks (mark may be NULL). Per clip the marks are: before the front end, after it,
 * after the model; then for streaming, before and after each pushed hop, and after the final window. */
typedef struct
{
    void (*write)(const char *text);
    void (*mark)(int tag);
} esc2c_audio_io_t;

/* Prints "@audio V SAME SIZE MAXDIFF CLASS EXPECTED STREAM_OK STATUS" per clip and "@audio_done PASSED N";
 * a clip passes when >= 99 % of its int8 input elements equal the Python pipeline's, none differs by more
 * than 1, the predicted class is the reference's and the streaming window equals the whole-clip input.
 * Returns the number of failing clips. */
int esc2c_audio_self_test(const esc2c_audio_io_t *io);

#endif
