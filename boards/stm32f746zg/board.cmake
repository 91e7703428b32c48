# Firmware for the Nucleo-F746ZG (included by the emitted CMakeLists.txt when cross-compiling).
set(ESC2C_BOARD_NAME "stm32f746zg")
set(ESC2C_FLASH_LIMIT 1048576)  # 1 MB
set(ESC2C_RAM_LIMIT 327680)     # 320 KB: DTCM 64 + SRAM1 240 + SRAM2 16
include(${CMAKE_CURRENT_LIST_DIR}/common/firmware.cmake)
