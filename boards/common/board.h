/* What the common firmware needs from a board: each board directory implements these in board.c. */
#ifndef ESC2C_BOARD_H
#define ESC2C_BOARD_H

#include <stdint.h>

/* Clocks, caches, console, serial port and cycle counter. Called first thing in main. */
void board_init(void);

/* Human-readable text (USART3 on the Nucleo, semihosting on QEMU). */
void board_console_write(const char *text);

/* Protocol byte stream. getc returns -1 when no byte is waiting (never blocks). */
int board_serial_getc(void);
void board_serial_putc(uint8_t byte);

/* Monotonic milliseconds, used only for protocol timeouts. */
uint32_t board_millis(void);

/* Core cycle counter; board_cycles_available() is 0 where no real counter exists (QEMU). */
int board_cycles_available(void);
uint32_t board_cycles(void);
uint32_t board_core_hz(void);

/* End the program with a status (QEMU: semihosting exit; a real board keeps serving). */
void board_exit(int status);

extern const char board_name[];

#endif
