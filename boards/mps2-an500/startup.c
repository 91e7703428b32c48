/* Vector table and reset for QEMU mps2-an500 (Cortex-M7). Faults report through semihosting and exit
 * non-zero, so a crashed run ends at once instead of QEMU stopping in "Lockup". */
#include <stdint.h>

#include "board.h"
#include "startup_m7.h"

void Reset_Handler(void);
void Fault_Handler(void);

void Reset_Handler(void) { esc2c_reset(); }

void Fault_Handler(void)
{
    static const char digits[] = "0123456789abcdef";
    char text[] = "fatal: fault exception, CFSR=0x........ HFSR=0x........\n";
    uint32_t cfsr = SCB_CFSR, hfsr = SCB_HFSR;
    for (int i = 0; i < 8; i++) {
        text[31 + i] = digits[(cfsr >> (28 - 4 * i)) & 0xFu];
        text[47 + i] = digits[(hfsr >> (28 - 4 * i)) & 0xFu];
    }
    board_console_write(text);
    board_exit(3);
    for (;;) {
    }
}

typedef void (*vector_t)(void);

/* 16 system exceptions + 32 device interrupts (none enabled by the firmware). */
__attribute__((section(".isr_vector"), used)) static const vector_t vector_table[16 + 32] = {
    (vector_t)(uintptr_t)_estack,
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    0, 0, 0, 0,
    Fault_Handler, /* SVCall */
    Fault_Handler, /* DebugMonitor */
    0,
    Fault_Handler, /* PendSV */
    Fault_Handler, /* SysTick */
    [16 ... 47] = Fault_Handler,
};
