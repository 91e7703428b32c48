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
    esc2c_fault_report();
    board_exit(3);
    for (;;) {
    }
}

/* 16 system exceptions + 32 device interrupts (none enabled by the firmware). */
ESC2C_VECTOR_TABLE(32, Reset_Handler, Fault_Handler);
