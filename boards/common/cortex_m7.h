/* The few Cortex-M7 core registers the boards use (addresses from the ARMv7-M architecture manual). */
#ifndef ESC2C_CORTEX_M7_H
#define ESC2C_CORTEX_M7_H

#include <stdint.h>

#define ESC2C_REG32(addr) (*(volatile uint32_t *)(addr))

/* System control block */
#define SCB_VTOR ESC2C_REG32(0xE000ED08u)
#define SCB_CCR ESC2C_REG32(0xE000ED14u)
#define SCB_CCR_DC (1u << 16) /* data cache enable */
#define SCB_CCR_IC (1u << 17) /* instruction cache enable */
#define SCB_CFSR ESC2C_REG32(0xE000ED28u)
#define SCB_HFSR ESC2C_REG32(0xE000ED2Cu)
#define SCB_BFAR ESC2C_REG32(0xE000ED38u)
#define SCB_CCSIDR ESC2C_REG32(0xE000ED80u)
#define SCB_CSSELR ESC2C_REG32(0xE000ED84u)
#define SCB_CPACR ESC2C_REG32(0xE000ED88u)
#define SCB_ICIALLU ESC2C_REG32(0xE000EF50u)
#define SCB_DCISW ESC2C_REG32(0xE000EF60u)

/* Debug: trace enable and the cycle counter */
#define DEMCR ESC2C_REG32(0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL ESC2C_REG32(0xE0001000u)
#define DWT_CTRL_CYCCNTENA (1u << 0)
#define DWT_CYCCNT ESC2C_REG32(0xE0001004u)
#define DWT_LAR ESC2C_REG32(0xE0001FB0u)
#define DWT_LAR_UNLOCK 0xC5ACCE55u

static inline void esc2c_dsb(void) { __asm__ volatile("dsb 0xF" ::: "memory"); }
static inline void esc2c_isb(void) { __asm__ volatile("isb 0xF" ::: "memory"); }

/* Full access to CP10 and CP11 (the FPU) for privileged and user code. */
static inline void esc2c_fpu_enable(void)
{
    SCB_CPACR |= (0xFu << 20);
    esc2c_dsb();
    esc2c_isb();
}

/* Invalidate then enable the instruction cache. */
static inline void esc2c_icache_enable(void)
{
    esc2c_dsb();
    esc2c_isb();
    SCB_ICIALLU = 0u;
    esc2c_dsb();
    esc2c_isb();
    SCB_CCR |= SCB_CCR_IC;
    esc2c_dsb();
    esc2c_isb();
}

/* Invalidate the L1 data cache by set/way (its contents are undefined after reset), then enable it. */
static inline void esc2c_dcache_enable(void)
{
    uint32_t ccsidr, sets, ways, line_shift, way_shift;
    SCB_CSSELR = 0u; /* level 1, data */
    esc2c_dsb();
    ccsidr = SCB_CCSIDR;
    line_shift = (ccsidr & 0x7u) + 4u;            /* log2(line bytes) */
    ways = ((ccsidr >> 3) & 0x3FFu) + 1u;
    sets = ((ccsidr >> 13) & 0x7FFFu) + 1u;
    way_shift = ways > 1u ? (uint32_t)__builtin_clz(ways - 1u) : 0u;
    for (uint32_t set = 0; set < sets; set++) {
        for (uint32_t way = 0; way < ways; way++) {
            SCB_DCISW = (set << line_shift) | (way << way_shift);
        }
    }
    esc2c_dsb();
    SCB_CCR |= SCB_CCR_DC;
    esc2c_dsb();
    esc2c_isb();
}

#endif
