#include "protocol.h"

#include <string.h>

#include "board.h"
#include "crc32.h"

enum { STEP_MORE = 0, STEP_FRAME = 1, STEP_BAD = -1 };

static uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

void esc2c_put_u32le(uint8_t *dst, uint32_t v)
{
    dst[0] = (uint8_t)v;
    dst[1] = (uint8_t)(v >> 8);
    dst[2] = (uint8_t)(v >> 16);
    dst[3] = (uint8_t)(v >> 24);
}

void esc2c_rx_init(esc2c_rx_t *rx, uint8_t *buf, uint32_t capacity)
{
    memset(rx, 0, sizeof(*rx));
    rx->buf = buf;
    rx->capacity = capacity;
}

void esc2c_rx_done(esc2c_rx_t *rx)
{
    rx->pos = 0;
    rx->need = 0;
}

int esc2c_rx_in_frame(const esc2c_rx_t *rx) { return rx->pos != 0; }

/* One byte through the frame state machine; writes buf[pos] only, and pos never passes the byte's
 * own position in buf during a rescan, so a rescan can run in place. */
static int rx_step(esc2c_rx_t *rx, uint8_t b)
{
    if (rx->pos == 0) {
        if (b == ESC2C_SYNC0) {
            rx->buf[rx->pos++] = b;
        } else {
            rx->garbage_bytes++;
        }
        return STEP_MORE;
    }
    if (rx->pos == 1) {
        if (b == ESC2C_SYNC1) {
            rx->buf[rx->pos++] = b;
        } else if (b != ESC2C_SYNC0) {
            rx->garbage_bytes += 2;
            rx->pos = 0;
        } else {
            rx->garbage_bytes++; /* A5 A5: the second may start the frame */
        }
        return STEP_MORE;
    }
    rx->buf[rx->pos++] = b;
    if (rx->pos == ESC2C_HEADER_BYTES) {
        uint32_t len = get_u32le(rx->buf + 4);
        if (len > rx->capacity - ESC2C_HEADER_BYTES - ESC2C_CRC_BYTES) {
            return STEP_BAD;
        }
        rx->need = ESC2C_HEADER_BYTES + len + ESC2C_CRC_BYTES;
        return STEP_MORE;
    }
    if (rx->need != 0 && rx->pos == rx->need) {
        uint32_t body = rx->need - 2u - ESC2C_CRC_BYTES;
        uint32_t crc = esc2c_crc32_update(0, rx->buf + 2, body);
        return crc == get_u32le(rx->buf + rx->need - ESC2C_CRC_BYTES) ? STEP_FRAME : STEP_BAD;
    }
    return STEP_MORE;
}

/* The candidate in buf[0..pos) was not a frame: look for one starting after its first byte.
 * Bytes after a frame found this way are dropped (the host waits for a reply before sending more). */
static int rx_rescan(esc2c_rx_t *rx)
{
    uint32_t n = rx->pos;
    for (;;) {
        uint32_t i;
        int r = STEP_MORE;
        rx->bad_frames++;
        rx->garbage_bytes++;
        rx->pos = 0;
        rx->need = 0;
        for (i = 1; i < n; i++) {
            r = rx_step(rx, rx->buf[i]);
            if (r != STEP_MORE) {
                break;
            }
        }
        if (r != STEP_BAD) {
            return r == STEP_FRAME;
        }
        /* buf = [new failed candidate (pos bytes)] ... [unread bytes i+1 .. n): close the gap */
        memmove(rx->buf + rx->pos, rx->buf + i + 1, n - i - 1);
        n = rx->pos + (n - i - 1);
    }
}

int esc2c_rx_abort(esc2c_rx_t *rx)
{
    if (rx->pos == 0) {
        return 0;
    }
    rx->timeouts++;
    rx->bad_frames--; /* rx_rescan counts the dropped candidate as a bad frame; it was a stalled one */
    return rx_rescan(rx);
}

int esc2c_rx_feed(esc2c_rx_t *rx, uint8_t byte)
{
    int r = rx_step(rx, byte);
    if (r == STEP_BAD) {
        return rx_rescan(rx);
    }
    return r == STEP_FRAME;
}

uint8_t esc2c_rx_type(const esc2c_rx_t *rx) { return rx->buf[2]; }
uint8_t esc2c_rx_seq(const esc2c_rx_t *rx) { return rx->buf[3]; }
uint32_t esc2c_rx_length(const esc2c_rx_t *rx) { return get_u32le(rx->buf + 4); }
const uint8_t *esc2c_rx_payload(const esc2c_rx_t *rx) { return rx->buf + ESC2C_HEADER_BYTES; }

static void send_bytes(const uint8_t *p, uint32_t n, uint32_t *crc)
{
    uint32_t i;
    if (n == 0) {
        return;
    }
    *crc = esc2c_crc32_update(*crc, p, n);
    for (i = 0; i < n; i++) {
        board_serial_putc(p[i]);
    }
}

void esc2c_send_frame(uint8_t type, uint8_t seq, const void *p0, uint32_t n0, const void *p1, uint32_t n1,
                      const void *p2, uint32_t n2)
{
    uint8_t head[ESC2C_HEADER_BYTES];
    uint8_t tail[ESC2C_CRC_BYTES];
    uint32_t crc = 0;
    head[0] = ESC2C_SYNC0;
    head[1] = ESC2C_SYNC1;
    head[2] = type;
    head[3] = seq;
    esc2c_put_u32le(head + 4, (p0 ? n0 : 0u) + (p1 ? n1 : 0u) + (p2 ? n2 : 0u));
    board_serial_putc(head[0]);
    board_serial_putc(head[1]);
    send_bytes(head + 2, ESC2C_HEADER_BYTES - 2u, &crc);
    if (p0) {
        send_bytes((const uint8_t *)p0, n0, &crc);
    }
    if (p1) {
        send_bytes((const uint8_t *)p1, n1, &crc);
    }
    if (p2) {
        send_bytes((const uint8_t *)p2, n2, &crc);
    }
    esc2c_put_u32le(tail, crc);
    for (uint32_t i = 0; i < ESC2C_CRC_BYTES; i++) {
        board_serial_putc(tail[i]);
    }
}
