# Firmware for QEMU mps2-an500 (Cortex-M7), held to the STM32F746ZG's flash and RAM budget.
set(ESC2C_BOARD_NAME "mps2-an500")
set(ESC2C_FLASH_LIMIT 1048576)
set(ESC2C_RAM_LIMIT 327680)
include(${CMAKE_CURRENT_LIST_DIR}/common/firmware.cmake)
