# Shared part of boards/<board>/board.cmake: the `firmware` executable from the common sources plus the
# board's startup.c/board.c/linker.ld, .bin/.hex images and a size report checked against the limits.
# The including board.cmake sets ESC2C_BOARD_NAME, ESC2C_FLASH_LIMIT and ESC2C_RAM_LIMIT (bytes).
set(ESC2C_COMMON_DIR ${CMAKE_CURRENT_LIST_DIR})
get_filename_component(ESC2C_BOARD_DIR ${CMAKE_CURRENT_LIST_DIR} DIRECTORY)

add_executable(firmware
    ${ESC2C_BOARD_DIR}/startup.c
    ${ESC2C_BOARD_DIR}/board.c
    ${ESC2C_COMMON_DIR}/main.c
    ${ESC2C_COMMON_DIR}/protocol.c
    ${ESC2C_COMMON_DIR}/crc32.c
    ${ESC2C_COMMON_DIR}/profile_mark.c)
set_target_properties(firmware PROPERTIES SUFFIX ".elf" LINK_DEPENDS ${ESC2C_BOARD_DIR}/linker.ld)
target_include_directories(firmware PRIVATE ${CMAKE_CURRENT_SOURCE_DIR} ${ESC2C_COMMON_DIR} ${ESC2C_BOARD_DIR})
target_compile_options(firmware PRIVATE -Wall -Wextra -Werror)
target_link_libraries(firmware PRIVATE esc2c_model)
target_link_options(firmware PRIVATE -L${ESC2C_COMMON_DIR} -T${ESC2C_BOARD_DIR}/linker.ld
    -Wl,-Map=${CMAKE_CURRENT_BINARY_DIR}/firmware.map -Wl,--print-memory-usage)

add_custom_command(TARGET firmware POST_BUILD
    COMMAND ${CMAKE_OBJCOPY} -O binary $<TARGET_FILE:firmware> ${CMAKE_CURRENT_BINARY_DIR}/firmware.bin
    COMMAND ${CMAKE_OBJCOPY} -O ihex $<TARGET_FILE:firmware> ${CMAKE_CURRENT_BINARY_DIR}/firmware.hex
    COMMAND ${CMAKE_COMMAND} -DSIZE_TOOL=${CMAKE_SIZE} -DELF=$<TARGET_FILE:firmware> -DBIN=${CMAKE_CURRENT_BINARY_DIR}/firmware.bin
            -DBOARD=${ESC2C_BOARD_NAME} -DFLASH_LIMIT=${ESC2C_FLASH_LIMIT} -DRAM_LIMIT=${ESC2C_RAM_LIMIT}
            -DREPORT=${CMAKE_CURRENT_BINARY_DIR}/size_report.txt
            -P ${ESC2C_COMMON_DIR}/size_check.cmake
    VERBATIM)
