/*
 * QEMU mps2-an500 board: console and exit through semihosting, the serial protocol on CMSDK APB
 * UART0, milliseconds from CMSDK APB timer 0 (25 MHz). QEMU models no cycle counter (DWT), so
 * cycles are reported unavailable; the instruction-count plugin measures the work instead.
 */
#include <stdint.h>

#include "board.h"
#include "cortex_m7.h"

const char board_name[] = "mps2-an500 (QEMU Cortex-M7)";

#define UART0_DATA ESC2C_REG32(0x40004000u)
#define UART0_STATE ESC2C_REG32(0x40004004u)
#define UART0_CTRL ESC2C_REG32(0x40004008u)
#define UART0_BAUDDIV ESC2C_REG32(0x40004010u)
#define UART_STATE_TXFULL (1u << 0)
#define UART_STATE_RXFULL (1u << 1)
#define UART_CTRL_TXEN (1u << 0)
#define UART_CTRL_RXEN (1u << 1)

#define TIMER0_CTRL ESC2C_REG32(0x40000000u)
#define TIMER0_VALUE ESC2C_REG32(0x40000004u)
#define TIMER0_RELOAD ESC2C_REG32(0x40000008u)
#define TIMER_CTRL_EN (1u << 0)
#define TIMER_HZ 25000000u

#define SEMIHOST_SYS_WRITE0 0x04
#define SEMIHOST_SYS_EXIT_EXTENDED 0x20
#define SEMIHOST_ADP_STOPPED_APPLICATION_EXIT 0x20026u

static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void SystemInit(void) { SCB_VTOR = 0x00000000u; }

void board_init(void)
{
    UART0_BAUDDIV = 16u; /* the smallest legal divider; QEMU does not pace the line */
    UART0_CTRL = UART_CTRL_TXEN | UART_CTRL_RXEN;
    TIMER0_RELOAD = 0xFFFFFFFFu;
    TIMER0_VALUE = 0xFFFFFFFFu;
    TIMER0_CTRL = TIMER_CTRL_EN;
}

void board_console_write(const char *text) { (void)semihost(SEMIHOST_SYS_WRITE0, text); }

int board_serial_getc(void)
{
    if (UART0_STATE & UART_STATE_RXFULL) {
        return (int)(UART0_DATA & 0xFFu);
    }
    return -1;
}

void board_serial_putc(uint8_t byte)
{
    while (UART0_STATE & UART_STATE_TXFULL) {
    }
    UART0_DATA = byte;
}

uint32_t board_millis(void)
{
    /* The timer counts down from 2^32-1 at 25 MHz; fold the elapsed ticks into milliseconds. */
    static uint32_t last_value = 0xFFFFFFFFu, ticks, millis;
    uint32_t value = TIMER0_VALUE;
    ticks += last_value - value;
    last_value = value;
    millis += ticks / (TIMER_HZ / 1000u);
    ticks %= (TIMER_HZ / 1000u);
    return millis;
}

int board_cycles_available(void) { return 0; }
uint32_t board_cycles(void) { return 0u; }
uint32_t board_core_hz(void) { return TIMER_HZ; }

void board_exit(int status)
{
    uint32_t block[2] = {SEMIHOST_ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
    (void)semihost(SEMIHOST_SYS_EXIT_EXTENDED, block);
    for (;;) {
    }
}
