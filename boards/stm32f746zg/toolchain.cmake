# CMake toolchain file for this board: arm-none-eabi-gcc for the Cortex-M7 (see common/cortex-m7.cmake).
include(${CMAKE_CURRENT_LIST_DIR}/common/cortex-m7.cmake)
