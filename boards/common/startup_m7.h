/* Startup shared by the Cortex-M7 boards: the symbols linker.ld defines and the reset sequence.
 * Each board's startup.c holds its vector table and calls esc2c_reset() from Reset_Handler. */
#ifndef ESC2C_STARTUP_M7_H
#define ESC2C_STARTUP_M7_H

#include <stdint.h>

#include "board.h"
#include "cortex_m7.h"

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];
int main(void);
void SystemInit(void);

/* FPU on first (the compiler may use FP registers anywhere), copy .data from flash, zero .bss
 * (arena included), then SystemInit (clocks, caches) and main. */
static inline __attribute__((noreturn)) void esc2c_reset(void)
{
    esc2c_fpu_enable();
    for (uint32_t *src = _sidata, *dst = _sdata; dst < _edata;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = _sbss; dst < _ebss;) {
        *dst++ = 0u;
    }
    SystemInit();
    (void)main();
    for (;;) {
    }
}

/* The fault report every board prints before it stops: CFSR and HFSR in hex. */
static inline void esc2c_fault_report(void)
{
    static const char digits[] = "0123456789abcdef";
    char text[] = "fatal: fault exception, CFSR=0x........ HFSR=0x........\n";
    uint32_t cfsr = SCB_CFSR, hfsr = SCB_HFSR;
    for (int i = 0; i < 8; i++) {
        text[31 + i] = digits[(cfsr >> (28 - 4 * i)) & 0xFu];
        text[47 + i] = digits[(hfsr >> (28 - 4 * i)) & 0xFu];
    }
    board_console_write(text);
}

typedef void (*esc2c_vector_t)(void);

/* The vector table: initial stack, reset, every system exception and the board's N_IRQ interrupt lines
 * on `fault` (the firmware enables no interrupt). */
#define ESC2C_VECTOR_TABLE(N_IRQ, reset, fault)                                                         \
    __attribute__((section(".isr_vector"), used)) static const esc2c_vector_t vector_table[16 + (N_IRQ)] = { \
        (esc2c_vector_t)(uintptr_t)_estack, reset,                                                      \
        fault, /* NMI */ fault, /* HardFault */ fault, /* MemManage */ fault, /* BusFault */           \
        fault, /* UsageFault */ 0, 0, 0, 0,                                                             \
        fault, /* SVCall */ fault, /* DebugMonitor */ 0, fault, /* PendSV */ fault, /* SysTick */       \
        [16 ... (15 + (N_IRQ))] = fault,                                                               \
    }

#endif
