/*
 * Host runner of the front end + model (the esc2c_model library built for this machine).
 *   esc2c_audio_host           self-test on the PCM clips of audio_vectors.h (ctest): see audio_check.h
 *   esc2c_audio_host N         N-sample int16 clips on stdin -> per clip the ESC2C_INPUT_SIZE-byte model input
 *                              the front end computes, then the ESC2C_OUTPUT_SIZE int8 logits, on stdout
 */
#include <stdio.h>
#include <stdlib.h>

#include "audio_check.h"
#include "esc2c_frontend.h"
#include "model.h"

static void write_text(const char *text)
{
    fputs(text, stdout);
}

static esc2c_frontend_t st;
static int8_t input[ESC2C_INPUT_SIZE];
static int8_t output[ESC2C_OUTPUT_SIZE];

int main(int argc, char **argv)
{
    if (argc == 1)
    {
        const esc2c_audio_io_t io = {write_text, 0};
        return esc2c_audio_self_test(&io) == 0 ? 0 : 1;
    }
    const long n = argc == 2 ? atol(argv[1]) : 0;
    if (n <= 0)
    {
        fprintf(stderr, "usage: %s [N < pcm.s16 > inputs_and_logits.s8]\n", argv[0]);
        return 2;
    }
    int16_t *pcm = (int16_t *)malloc(sizeof(int16_t) * (size_t)n);
    if (pcm == NULL)
    {
        return 2;
    }
    while (fread(pcm, sizeof(int16_t), (size_t)n, stdin) == (size_t)n)
    {
        if (esc2c_frontend_clip(&st, pcm, (int32_t)n, input) != 0 || esc2c_model_run(input, output) != 0)
        {
            return 3;
        }
        if (fwrite(input, 1, sizeof(input), stdout) != sizeof(input) ||
            fwrite(output, 1, sizeof(output), stdout) != sizeof(output))
        {
            return 2;
        }
    }
    free(pcm);
    return 0;
}
