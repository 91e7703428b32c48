/* CRC-32 as in zlib / IEEE 802.3 (reflected 0xEDB88320, init and final xor 0xFFFFFFFF). */
#ifndef ESC2C_CRC32_H
#define ESC2C_CRC32_H

#include <stdint.h>

/* Start with crc = 0; feed chunks in order; the result after the last chunk is the CRC. */
uint32_t esc2c_crc32_update(uint32_t crc, const void *data, uint32_t len);

#endif
