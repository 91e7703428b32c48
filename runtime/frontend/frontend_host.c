/*
 * Host runner of the front end: int16 PCM clips on stdin -> int8 model inputs on stdout.
 *   frontend_host clip N      N-sample clips (little-endian int16), one ESC2C_FE_INPUT_SIZE-byte input each
 *                             (esc2c_frontend_clip)
 *   frontend_host stream N    the same clips through the streaming API: each clip's first N samples
 *                             (rounded down to whole hops) pushed hop by hop after a reset; writes the
 *                             window after the last hop (esc2c_frontend_window)
 * Exit status 0, 2 on a usage or I/O error, 3 on a front-end error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esc2c_frontend.h"

static esc2c_frontend_t st;
static int8_t input[ESC2C_FE_INPUT_SIZE];

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "clip") != 0 && strcmp(argv[1], "stream") != 0) || atol(argv[2]) <= 0)
    {
        fprintf(stderr, "usage: %s clip|stream N < pcm.s16 > inputs.s8\n", argv[0]);
        return 2;
    }
    const int stream = strcmp(argv[1], "stream") == 0;
    const long n = atol(argv[2]);
    int16_t *pcm = (int16_t *)malloc(sizeof(int16_t) * (size_t)n);
    if (pcm == NULL)
    {
        return 2;
    }
    int clips = 0;
    while (fread(pcm, sizeof(int16_t), (size_t)n, stdin) == (size_t)n)
    {
        if (stream)
        {
            if (esc2c_frontend_init(&st) != 0)
            {
                return 3;
            }
            for (long s = 0; s + ESC2C_FE_HOP_LENGTH <= n; s += ESC2C_FE_HOP_LENGTH)
            {
                (void)esc2c_frontend_push(&st, &pcm[s]);
            }
            if (esc2c_frontend_window(&st, input) != 0)
            {
                fprintf(stderr, "clip %d: fewer than %d columns after %ld samples\n", clips, ESC2C_FE_FRAMES, n);
                return 3;
            }
        }
        else if (esc2c_frontend_clip(&st, pcm, (int32_t)n, input) != 0)
        {
            return 3;
        }
        if (fwrite(input, 1, sizeof(input), stdout) != sizeof(input))
        {
            return 2;
        }
        clips++;
    }
    free(pcm);
    return clips > 0 ? 0 : 2;
}
