#include "audio_check.h"

#include <string.h>

#include "audio_vectors.h"
#include "esc2c_frontend.h"
#include "model.h"

#if ESC2C_FE_INPUT_SIZE != ESC2C_INPUT_SIZE
#error "the front end's output size differs from the model's input size"
#endif

static esc2c_frontend_t fe_state;
static int8_t clip_input[ESC2C_INPUT_SIZE];
static int8_t stream_input[ESC2C_INPUT_SIZE];
static int8_t logits[ESC2C_OUTPUT_SIZE];
static int16_t last_hop[ESC2C_FE_HOP_LENGTH];

static void put_int(const esc2c_audio_io_t *io, int32_t v)
{
    char text[13];
    int i = 12;
    uint32_t u = v < 0 ? (uint32_t)0 - (uint32_t)v : (uint32_t)v;
    text[i] = '\0';
    do
    {
        text[--i] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u != 0u);
    if (v < 0)
    {
        text[--i] = '-';
    }
    io->write(" ");
    io->write(&text[i]);
}

static void mark(const esc2c_audio_io_t *io, int tag)
{
    if (io->mark != 0)
    {
        io->mark(tag);
    }
}

static int argmax(const int8_t *v, int32_t n)
{
    int best = 0;
    for (int32_t i = 1; i < n; i++)
    {
        if (v[i] > v[best])
        {
            best = (int)i;
        }
    }
    return best;
}

/* The clip hop by hop (zero-padded past its end) until the streaming ring has produced FRAMES columns. */
static int stream_clip(const esc2c_audio_io_t *io, const int16_t *pcm, int32_t n)
{
    if (esc2c_frontend_init(&fe_state) != 0)
    {
        return -1;
    }
    for (int32_t s = 0; fe_state.n_columns < (uint32_t)ESC2C_FE_FRAMES; s += ESC2C_FE_HOP_LENGTH)
    {
        const int16_t *hop = last_hop;
        if (s + ESC2C_FE_HOP_LENGTH <= n)
        {
            hop = &pcm[s];
        }
        else
        {
            const int32_t have = n - s > 0 ? n - s : 0;
            memset(last_hop, 0, sizeof(last_hop));
            if (have > 0)
            {
                memcpy(last_hop, &pcm[s], sizeof(int16_t) * (size_t)have);
            }
        }
        mark(io, 10);
        (void)esc2c_frontend_push(&fe_state, hop);
        mark(io, 11);
    }
    const int rc = esc2c_frontend_window(&fe_state, stream_input);
    mark(io, 12);
    return rc;
}

int esc2c_audio_self_test(const esc2c_audio_io_t *io)
{
    int failures = 0;
    for (int v = 0; v < ESC2C_NUM_AUDIO_VECTORS; v++)
    {
        const int16_t *pcm = esc2c_audio_pcm[v];
        const int32_t n = esc2c_audio_lengths[v];
        mark(io, 0);
        int status = esc2c_frontend_clip(&fe_state, pcm, n, clip_input);
        mark(io, 1);
        if (status == 0)
        {
            status = esc2c_model_run(clip_input, logits);
        }
        mark(io, 2);
        int32_t same = 0, max_diff = 0;
        for (int32_t i = 0; i < ESC2C_INPUT_SIZE; i++)
        {
            int32_t d = (int32_t)clip_input[i] - (int32_t)esc2c_audio_expect_input[v][i];
            d = d < 0 ? -d : d;
            same += d == 0;
            max_diff = d > max_diff ? d : max_diff;
        }
        const int cls = argmax(logits, ESC2C_OUTPUT_SIZE);
        const int stream_ok = stream_clip(io, pcm, n) == 0 && memcmp(stream_input, clip_input, ESC2C_INPUT_SIZE) == 0;
        const int ok = status == 0 && (int64_t)same * 100 >= (int64_t)ESC2C_INPUT_SIZE * 99 && max_diff <= 1 &&
                       cls == esc2c_audio_expect_class[v] && stream_ok;
        failures += !ok;
        io->write("@audio");
        put_int(io, v);
        put_int(io, same);
        put_int(io, ESC2C_INPUT_SIZE);
        put_int(io, max_diff);
        put_int(io, cls);
        put_int(io, esc2c_audio_expect_class[v]);
        put_int(io, stream_ok);
        put_int(io, status);
        io->write(ok ? " PASS\n" : " FAIL\n");
    }
    io->write("@audio_done");
    put_int(io, ESC2C_NUM_AUDIO_VECTORS - failures);
    put_int(io, ESC2C_NUM_AUDIO_VECTORS);
    io->write("\n");
    return failures;
}
