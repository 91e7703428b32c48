/*
 * esc2c serial protocol, device side (esc2c/device/protocol.py is the host side).
 *
 * Frame: 0xA5 0x5A | type u8 | seq u8 | length u32 LE | payload[length] | crc32 u32 LE
 * The CRC (zlib's CRC-32) covers type, seq, length and payload. A receiver skips bytes until the sync
 * pair, rejects a length above its buffer at once, and on a bad CRC re-examines the bytes it had taken
 * for a frame, so garbage before a frame costs nothing but the garbage.
 */
#ifndef ESC2C_PROTOCOL_H
#define ESC2C_PROTOCOL_H

#include <stdint.h>

#define ESC2C_SYNC0 0xA5u
#define ESC2C_SYNC1 0x5Au
#define ESC2C_HEADER_BYTES 8u /* sync x2, type, seq, length x4 */
#define ESC2C_CRC_BYTES 4u
#define ESC2C_PROTOCOL_VERSION 1u

/* host -> device */
#define ESC2C_MSG_PING 0x01u       /* empty; answered by INFO */
#define ESC2C_MSG_RUN 0x02u        /* input tensor; answered by RESULT */
#define ESC2C_MSG_RUN_LAYERS 0x03u /* input tensor; answered by one LAYER per layer, then RESULT */
#define ESC2C_MSG_BYE 0x04u        /* answered by BYE; QEMU then exits */
/* device -> host */
#define ESC2C_MSG_INFO 0x81u
#define ESC2C_MSG_RESULT 0x82u
#define ESC2C_MSG_LAYER 0x83u
#define ESC2C_MSG_BYE_ACK 0x84u
#define ESC2C_MSG_ERROR 0xFFu

#define ESC2C_ERR_BAD_LENGTH 1u
#define ESC2C_ERR_UNKNOWN_TYPE 2u
#define ESC2C_ERR_MODEL 3u

typedef struct {
    uint8_t *buf;      /* holds one frame: header + payload + crc */
    uint32_t capacity; /* bytes of buf */
    uint32_t pos;      /* bytes of the current candidate frame held in buf */
    uint32_t need;     /* total bytes of the candidate frame once its length is known, else 0 */
    uint32_t bad_frames;
    uint32_t garbage_bytes;
    uint32_t timeouts;
} esc2c_rx_t;

void esc2c_rx_init(esc2c_rx_t *rx, uint8_t *buf, uint32_t capacity);

/* Feed one received byte. Returns 1 when buf holds a complete frame with a good CRC (read it with the
 * accessors below, then call esc2c_rx_done), else 0. */
int esc2c_rx_feed(esc2c_rx_t *rx, uint8_t byte);
void esc2c_rx_done(esc2c_rx_t *rx);
/* The line went quiet in the middle of a frame: drop that frame's sync and look for a whole frame in the
 * bytes after it. Returns 1 when one is found (as for esc2c_rx_feed), else 0. */
int esc2c_rx_abort(esc2c_rx_t *rx);
int esc2c_rx_in_frame(const esc2c_rx_t *rx);

uint8_t esc2c_rx_type(const esc2c_rx_t *rx);
uint8_t esc2c_rx_seq(const esc2c_rx_t *rx);
uint32_t esc2c_rx_length(const esc2c_rx_t *rx);
const uint8_t *esc2c_rx_payload(const esc2c_rx_t *rx);

/* Send one frame whose payload is the concatenation of up to three parts (any may be NULL/0). */
void esc2c_send_frame(uint8_t type, uint8_t seq, const void *p0, uint32_t n0, const void *p1, uint32_t n1,
                      const void *p2, uint32_t n2);

void esc2c_put_u32le(uint8_t *dst, uint32_t v);

#endif
