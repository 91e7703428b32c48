# The raw-audio firmware `firmware_audio` (audio_firmware.c): the same board files and linker script as
# `firmware` (boards/common/firmware.cmake, included first), the PCM test clips of audio_vectors.h, and the
# same flash/RAM check (size_report_audio.txt).
set(ESC2C_FRONTEND_DIR ${CMAKE_CURRENT_LIST_DIR})
add_executable(firmware_audio
    ${ESC2C_BOARD_DIR}/startup.c
    ${ESC2C_BOARD_DIR}/board.c
    ${ESC2C_FRONTEND_DIR}/audio_firmware.c
    ${ESC2C_FRONTEND_DIR}/audio_check.c
    ${ESC2C_COMMON_DIR}/profile_mark.c)
set_target_properties(firmware_audio PROPERTIES SUFFIX ".elf" LINK_DEPENDS ${ESC2C_BOARD_DIR}/linker.ld)
target_include_directories(firmware_audio PRIVATE ${CMAKE_CURRENT_SOURCE_DIR} ${ESC2C_COMMON_DIR} ${ESC2C_BOARD_DIR})
target_compile_options(firmware_audio PRIVATE -Wall -Wextra -Werror)
target_link_libraries(firmware_audio PRIVATE esc2c_model)
target_link_options(firmware_audio PRIVATE -L${ESC2C_COMMON_DIR} -T${ESC2C_BOARD_DIR}/linker.ld
    -Wl,-Map=${CMAKE_CURRENT_BINARY_DIR}/firmware_audio.map)
add_custom_command(TARGET firmware_audio POST_BUILD
    COMMAND ${CMAKE_OBJCOPY} -O binary $<TARGET_FILE:firmware_audio> ${CMAKE_CURRENT_BINARY_DIR}/firmware_audio.bin
    COMMAND ${CMAKE_COMMAND} -DSIZE_TOOL=${CMAKE_SIZE} -DELF=$<TARGET_FILE:firmware_audio>
            -DBIN=${CMAKE_CURRENT_BINARY_DIR}/firmware_audio.bin
            -DBOARD=${ESC2C_BOARD_NAME} -DFLASH_LIMIT=${ESC2C_FLASH_LIMIT} -DRAM_LIMIT=${ESC2C_RAM_LIMIT}
            -DREPORT=${CMAKE_CURRENT_BINARY_DIR}/size_report_audio.txt
            -P ${ESC2C_COMMON_DIR}/size_check.cmake
    VERBATIM)
