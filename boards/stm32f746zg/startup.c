/* Vector table and reset for the STM32F746ZG. Faults print their status registers on the console
 * (USART3, the Nucleo's virtual COM port) and stop. */
#include <stdint.h>

#include "board.h"
#include "startup_m7.h"

void Reset_Handler(void);
void Fault_Handler(void);

void Reset_Handler(void) { esc2c_reset(); }

void Fault_Handler(void)
{
    esc2c_fault_report();
    for (;;) {
    }
}

/* 16 system exceptions + the STM32F746's 98 interrupt lines (none enabled by the firmware). */
ESC2C_VECTOR_TABLE(98, Reset_Handler, Fault_Handler);
