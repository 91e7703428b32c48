/*
 * Firmware main, shared by every board: runs the model on the test vectors compiled into
 * test_vectors.h (printing outputs, a pass/fail verdict against the expected outputs and the cycles of
 * each layer where the board has a cycle counter), then serves the serial protocol (protocol.h):
 * the host sends input tensors and gets the output tensor, the cycle counts and, on request, every
 * layer's output.
 */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "model.h"
#include "profile_mark.h"
#include "protocol.h"
#include "test_vectors.h"

#ifndef ESC2C_RX_TIMEOUT_MS
#define ESC2C_RX_TIMEOUT_MS 1000u /* a frame that stalls this long is dropped */
#endif

#define RESULT_HEAD_BYTES (12u + 4u * (uint32_t)ESC2C_NUM_LAYERS)

static int8_t output_buf[ESC2C_OUTPUT_SIZE];
static uint8_t rx_buf[ESC2C_HEADER_BYTES + ESC2C_INPUT_SIZE + ESC2C_CRC_BYTES];
static uint8_t result_head[RESULT_HEAD_BYTES];

static uint32_t layer_cycles[ESC2C_NUM_LAYERS];
static uint32_t layer_start;
static uint8_t debug_seq;
static int debug_send_layers;

/* ---- text output without printf ---------------------------------------------------------------- */

static void put_u32(uint32_t v)
{
    char text[11];
    int i = 10;
    text[i] = '\0';
    do {
        text[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    board_console_write(&text[i]);
}

static void put_i32(int32_t v)
{
    if (v < 0) {
        board_console_write("-");
        put_u32((uint32_t)0 - (uint32_t)v);
    } else {
        put_u32((uint32_t)v);
    }
}

static void put_hex_bytes(const int8_t *p, int32_t n)
{
    static const char digits[] = "0123456789abcdef";
    char chunk[65];
    int k = 0;
    for (int32_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)p[i];
        chunk[k++] = digits[b >> 4];
        chunk[k++] = digits[b & 0xFu];
        if (k == 64) {
            chunk[k] = '\0';
            board_console_write(chunk);
            k = 0;
        }
    }
    chunk[k] = '\0';
    board_console_write(chunk);
}

/* ---- one inference with per-layer timing and profile marks ------------------------------------- */

static void layer_hook(int layer, const char *name, const int8_t *out, int32_t out_size, void *user)
{
    uint32_t now = board_cycles();
    (void)name;
    (void)user;
    if (layer >= 0 && layer < ESC2C_NUM_LAYERS) {
        layer_cycles[layer] = now - layer_start;
    }
    esc2c_profile_mark(layer + 1);
    if (debug_send_layers) {
        uint8_t index[4];
        esc2c_put_u32le(index, (uint32_t)layer);
        esc2c_send_frame(ESC2C_MSG_LAYER, debug_seq, index, 4u, out, (uint32_t)out_size, 0, 0u);
    }
    layer_start = board_cycles(); /* the time spent sending is not the next layer's */
}

static int run_inference(const int8_t *input, int8_t *output, uint32_t *total_cycles)
{
    uint32_t start;
    int status;
    memset(layer_cycles, 0, sizeof(layer_cycles));
    esc2c_set_layer_hook(layer_hook, 0);
    esc2c_profile_mark(0);
    start = board_cycles();
    layer_start = start;
    status = esc2c_model_run(input, output);
    *total_cycles = board_cycles() - start;
    esc2c_profile_mark(-1);
    esc2c_set_layer_hook(0, 0);
    return status;
}

static int argmax(const int8_t *v, int32_t n)
{
    int best = 0;
    for (int32_t i = 1; i < n; i++) {
        if (v[i] > v[best]) {
            best = (int)i;
        }
    }
    return best;
}

/* Returns the number of vectors whose output differs from the expected one. */
static int self_test(void)
{
    int failures = 0;
    for (int v = 0; v < ESC2C_NUM_TEST_VECTORS; v++) {
        uint32_t cycles = 0;
        int status = run_inference(esc2c_test_inputs[v], output_buf, &cycles);
        int ok = status == 0 && memcmp(output_buf, esc2c_test_outputs[v], ESC2C_OUTPUT_SIZE) == 0;
        failures += !ok;
        board_console_write("@vec ");
        put_u32((uint32_t)v);
        board_console_write(" ");
        put_i32(status);
        board_console_write(" ");
        put_hex_bytes(output_buf, ESC2C_OUTPUT_SIZE);
        board_console_write("\nvector ");
        put_u32((uint32_t)v);
        board_console_write(ok ? ": PASS, class " : ": FAIL, class ");
        put_u32((uint32_t)argmax(output_buf, ESC2C_OUTPUT_SIZE));
        if (board_cycles_available()) {
            board_console_write(", ");
            put_u32(cycles);
            board_console_write(" cycles\n");
            for (int l = 0; l < ESC2C_NUM_LAYERS; l++) {
                board_console_write("  layer ");
                put_u32((uint32_t)l);
                board_console_write(" ");
                board_console_write(esc2c_layer_names[l]);
                board_console_write(": ");
                put_u32(layer_cycles[l]);
                board_console_write(" cycles\n");
            }
        } else {
            board_console_write(" (no cycle counter on this target)\n");
        }
    }
    board_console_write("@selftest ");
    put_u32((uint32_t)(ESC2C_NUM_TEST_VECTORS - failures));
    board_console_write(" ");
    put_u32((uint32_t)ESC2C_NUM_TEST_VECTORS);
    board_console_write("\n");
    return failures;
}

/* ---- serial protocol server -------------------------------------------------------------------- */

static void send_error(uint8_t seq, uint32_t code, const char *text)
{
    uint8_t head[4];
    esc2c_put_u32le(head, code);
    esc2c_send_frame(ESC2C_MSG_ERROR, seq, head, 4u, text, (uint32_t)strlen(text), 0, 0u);
}

static void send_info(const esc2c_rx_t *rx, uint8_t seq)
{
    uint32_t fields[11];
    uint8_t payload[sizeof(fields)];
    fields[0] = ESC2C_PROTOCOL_VERSION;
    fields[1] = ESC2C_INPUT_SIZE;
    fields[2] = ESC2C_OUTPUT_SIZE;
    fields[3] = ESC2C_NUM_LAYERS;
    fields[4] = ESC2C_NUM_TEST_VECTORS;
    fields[5] = ESC2C_ARENA_SIZE;
    fields[6] = board_core_hz();
    fields[7] = board_cycles_available() ? 1u : 0u;
    fields[8] = rx->bad_frames;
    fields[9] = rx->garbage_bytes;
    fields[10] = rx->timeouts;
    for (unsigned i = 0; i < sizeof(fields) / 4u; i++) {
        esc2c_put_u32le(payload + 4u * i, fields[i]);
    }
    esc2c_send_frame(ESC2C_MSG_INFO, seq, payload, sizeof(payload), board_name, (uint32_t)strlen(board_name),
                     0, 0u);
}

static void serve_run(const esc2c_rx_t *rx, uint8_t seq, int with_layers)
{
    uint32_t total = 0;
    int status;
    if (esc2c_rx_length(rx) != ESC2C_INPUT_SIZE) {
        send_error(seq, ESC2C_ERR_BAD_LENGTH, "input tensor has the wrong number of bytes");
        return;
    }
    debug_seq = seq;
    debug_send_layers = with_layers;
    status = run_inference((const int8_t *)esc2c_rx_payload(rx), output_buf, &total);
    debug_send_layers = 0;
    esc2c_put_u32le(result_head, (uint32_t)status);
    esc2c_put_u32le(result_head + 4, board_cycles_available() ? 1u : 0u);
    esc2c_put_u32le(result_head + 8, total);
    for (int l = 0; l < ESC2C_NUM_LAYERS; l++) {
        esc2c_put_u32le(result_head + 12 + 4 * l, layer_cycles[l]);
    }
    esc2c_send_frame(ESC2C_MSG_RESULT, seq, result_head, RESULT_HEAD_BYTES, output_buf, ESC2C_OUTPUT_SIZE, 0,
                     0u);
}

/* Serves requests until the host says BYE. */
static void serve(void)
{
    esc2c_rx_t rx;
    uint32_t last_byte_ms = board_millis();
    esc2c_rx_init(&rx, rx_buf, sizeof(rx_buf));
    for (;;) {
        int c = board_serial_getc();
        if (c < 0) {
            /* a frame that stalls is dropped; a whole frame inside its bytes is still served */
            if (!esc2c_rx_in_frame(&rx) || board_millis() - last_byte_ms <= ESC2C_RX_TIMEOUT_MS ||
                !esc2c_rx_abort(&rx)) {
                continue;
            }
        } else {
            last_byte_ms = board_millis();
            if (!esc2c_rx_feed(&rx, (uint8_t)c)) {
                continue;
            }
        }
        uint8_t seq = esc2c_rx_seq(&rx);
        switch (esc2c_rx_type(&rx)) {
        case ESC2C_MSG_PING:
            send_info(&rx, seq);
            break;
        case ESC2C_MSG_RUN:
            serve_run(&rx, seq, 0);
            break;
        case ESC2C_MSG_RUN_LAYERS:
            serve_run(&rx, seq, 1);
            break;
        case ESC2C_MSG_BYE:
            esc2c_send_frame(ESC2C_MSG_BYE_ACK, seq, 0, 0u, 0, 0u, 0, 0u);
            esc2c_rx_done(&rx);
            return;
        default:
            send_error(seq, ESC2C_ERR_UNKNOWN_TYPE, "unknown message type");
            break;
        }
        esc2c_rx_done(&rx);
    }
}

int main(void)
{
    int failures;
    board_init();
    board_console_write("esc2c firmware on ");
    board_console_write(board_name);
    board_console_write(": input ");
    put_u32(ESC2C_INPUT_SIZE);
    board_console_write(" B, output ");
    put_u32(ESC2C_OUTPUT_SIZE);
    board_console_write(" B, ");
    put_u32(ESC2C_NUM_LAYERS);
    board_console_write(" layers, arena ");
    put_u32(ESC2C_ARENA_SIZE);
    board_console_write(" B, core clock ");
    put_u32(board_core_hz());
    board_console_write(" Hz\n");
    failures = self_test();
    board_console_write("@serve\n");
    for (;;) {
        serve();
        board_exit(failures != 0 ? 1 : 0); /* returns on a real board: keep serving */
    }
}
