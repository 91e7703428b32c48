/* Startup shared by the Cortex-M7 boards: the symbols linker.ld defines and the reset sequence.
 * Each board's startup.c holds its vector table and calls esc2c_reset() from Reset_Handler. */
#ifndef ESC2C_STARTUP_M7_H
#define ESC2C_STARTUP_M7_H

#include <stdint.h>

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

#endif
