/*
 * Nucleo-F746ZG board: 216 MHz from the ST-LINK's 8 MHz clock (HSE bypass) through the main PLL with
 * over-drive, I- and D-cache on, USART3 at 115200 8N1 on PD8 (TX) / PD9 (RX) = the ST-LINK virtual COM
 * port, used for both the console text and the serial protocol, and the DWT cycle counter.
 * Register addresses and bit positions are those of RM0385 (STM32F75xxx/74xxx reference manual).
 */
#include <stdint.h>

#include "board.h"
#include "cortex_m7.h"

const char board_name[] = "stm32f746zg (Nucleo-F746ZG)";

#define CORE_HZ 216000000u
#define APB1_HZ (CORE_HZ / 4u) /* 54 MHz, the USART3 kernel clock */
#define BAUD 115200u

/* RCC (reset and clock control) */
#define RCC_BASE 0x40023800u
#define RCC_CR ESC2C_REG32(RCC_BASE + 0x00u)
#define RCC_CR_HSEON (1u << 16)
#define RCC_CR_HSERDY (1u << 17)
#define RCC_CR_HSEBYP (1u << 18)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_PLLCFGR ESC2C_REG32(RCC_BASE + 0x04u)
#define RCC_PLLCFGR_PLLN_POS 6u
#define RCC_PLLCFGR_PLLP_POS 16u /* 00 = /2 */
#define RCC_PLLCFGR_PLLSRC_HSE (1u << 22)
#define RCC_PLLCFGR_PLLQ_POS 24u
#define RCC_CFGR ESC2C_REG32(RCC_BASE + 0x08u)
#define RCC_CFGR_SW_PLL 2u
#define RCC_CFGR_SWS_MASK (3u << 2)
#define RCC_CFGR_SWS_PLL (2u << 2)
#define RCC_CFGR_PPRE1_DIV4 (5u << 10)
#define RCC_CFGR_PPRE2_DIV2 (4u << 13)
#define RCC_AHB1ENR ESC2C_REG32(RCC_BASE + 0x30u)
#define RCC_AHB1ENR_GPIODEN (1u << 3)
#define RCC_APB1ENR ESC2C_REG32(RCC_BASE + 0x40u)
#define RCC_APB1ENR_USART3EN (1u << 18)
#define RCC_APB1ENR_PWREN (1u << 28)

/* PWR: voltage scale 1 and over-drive, needed above 180 MHz */
#define PWR_CR1 ESC2C_REG32(0x40007000u)
#define PWR_CR1_VOS_SCALE1 (3u << 14)
#define PWR_CR1_ODEN (1u << 16)
#define PWR_CR1_ODSWEN (1u << 17)
#define PWR_CSR1 ESC2C_REG32(0x40007004u)
#define PWR_CSR1_ODRDY (1u << 16)
#define PWR_CSR1_ODSWRDY (1u << 17)

/* Flash interface: 7 wait states at 216 MHz and 2.7-3.6 V */
#define FLASH_ACR ESC2C_REG32(0x40023C00u)
#define FLASH_ACR_LATENCY_7WS 7u
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ARTEN (1u << 9)

/* GPIO port D */
#define GPIOD_BASE 0x40020C00u
#define GPIOD_MODER ESC2C_REG32(GPIOD_BASE + 0x00u)
#define GPIOD_OSPEEDR ESC2C_REG32(GPIOD_BASE + 0x08u)
#define GPIOD_AFRH ESC2C_REG32(GPIOD_BASE + 0x24u)

/* USART3 */
#define USART3_BASE 0x40004800u
#define USART3_CR1 ESC2C_REG32(USART3_BASE + 0x00u)
#define USART_CR1_UE (1u << 0)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART3_BRR ESC2C_REG32(USART3_BASE + 0x0Cu)
#define USART3_ISR ESC2C_REG32(USART3_BASE + 0x1Cu)
#define USART_ISR_ORE (1u << 3)
#define USART_ISR_RXNE (1u << 5)
#define USART_ISR_TXE (1u << 7)
#define USART3_ICR ESC2C_REG32(USART3_BASE + 0x20u)
#define USART_ICR_ORECF (1u << 3)
#define USART3_RDR ESC2C_REG32(USART3_BASE + 0x24u)
#define USART3_TDR ESC2C_REG32(USART3_BASE + 0x28u)

/* PLL: 8 MHz / M=4 = 2 MHz VCO input, x N=216 = 432 MHz VCO, / P=2 = 216 MHz, / Q=9 = 48 MHz. */
#define PLL_M 4u
#define PLL_N 216u
#define PLL_Q 9u

void SystemInit(void)
{
    SCB_VTOR = 0x08000000u;

    RCC_APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC_APB1ENR;
    PWR_CR1 = (PWR_CR1 & ~(3u << 14)) | PWR_CR1_VOS_SCALE1;

    RCC_CR |= RCC_CR_HSEBYP | RCC_CR_HSEON;
    while (!(RCC_CR & RCC_CR_HSERDY)) {
    }
    RCC_PLLCFGR = PLL_M | (PLL_N << RCC_PLLCFGR_PLLN_POS) | (0u << RCC_PLLCFGR_PLLP_POS) | RCC_PLLCFGR_PLLSRC_HSE |
                  (PLL_Q << RCC_PLLCFGR_PLLQ_POS);
    RCC_CR |= RCC_CR_PLLON;
    while (!(RCC_CR & RCC_CR_PLLRDY)) {
    }

    PWR_CR1 |= PWR_CR1_ODEN;
    while (!(PWR_CSR1 & PWR_CSR1_ODRDY)) {
    }
    PWR_CR1 |= PWR_CR1_ODSWEN;
    while (!(PWR_CSR1 & PWR_CSR1_ODSWRDY)) {
    }

    FLASH_ACR = FLASH_ACR_LATENCY_7WS | FLASH_ACR_PRFTEN | FLASH_ACR_ARTEN;
    while ((FLASH_ACR & 0xFu) != FLASH_ACR_LATENCY_7WS) {
    }
    RCC_CFGR = RCC_CFGR_PPRE1_DIV4 | RCC_CFGR_PPRE2_DIV2; /* AHB /1; APB1 54 MHz, APB2 108 MHz (their maxima) */
    RCC_CFGR |= RCC_CFGR_SW_PLL;
    while ((RCC_CFGR & RCC_CFGR_SWS_MASK) != RCC_CFGR_SWS_PLL) {
    }

    esc2c_icache_enable();
    esc2c_dcache_enable();
}

void board_init(void)
{
    /* PD8 = USART3_TX, PD9 = USART3_RX: alternate function 7, high speed */
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIODEN;
    RCC_APB1ENR |= RCC_APB1ENR_USART3EN;
    (void)RCC_APB1ENR;
    GPIOD_MODER = (GPIOD_MODER & ~(0xFu << 16)) | (0xAu << 16);
    GPIOD_OSPEEDR |= 0xFu << 16;
    GPIOD_AFRH = (GPIOD_AFRH & ~0xFFu) | 0x77u;
    USART3_CR1 = 0u;
    USART3_BRR = (APB1_HZ + BAUD / 2u) / BAUD; /* oversampling by 16 */
    USART3_CR1 = USART_CR1_TE | USART_CR1_RE | USART_CR1_UE;

    DEMCR |= DEMCR_TRCENA;
    DWT_LAR = DWT_LAR_UNLOCK;
    DWT_CYCCNT = 0u;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
}

void board_serial_putc(uint8_t byte)
{
    while (!(USART3_ISR & USART_ISR_TXE)) {
    }
    USART3_TDR = byte;
}

void board_console_write(const char *text)
{
    for (; *text; text++) {
        if (*text == '\n') {
            board_serial_putc('\r');
        }
        board_serial_putc((uint8_t)*text);
    }
}

int board_serial_getc(void)
{
    uint32_t isr = USART3_ISR;
    if (isr & USART_ISR_ORE) {
        USART3_ICR = USART_ICR_ORECF; /* a lost byte shows up as a bad frame; the host retries */
    }
    if (isr & USART_ISR_RXNE) {
        return (int)(USART3_RDR & 0xFFu);
    }
    return -1;
}

uint32_t board_millis(void)
{
    static uint32_t last, cycles, millis;
    uint32_t now = DWT_CYCCNT;
    cycles += now - last;
    last = now;
    millis += cycles / (CORE_HZ / 1000u);
    cycles %= (CORE_HZ / 1000u);
    return millis;
}

int board_cycles_available(void) { return 1; }
uint32_t board_cycles(void) { return DWT_CYCCNT; }
uint32_t board_core_hz(void) { return CORE_HZ; }

void board_exit(int status) { (void)status; /* a real board keeps serving the host */ }
