# Shared part of boards/<board>/board.cmake: firmware executables from the board's startup.c/board.c/
# linker.ld plus given sources, .bin/.hex images and a size report checked against the limits.
# The including board.cmake sets ESC2C_BOARD_NAME, ESC2C_FLASH_LIMIT and ESC2C_RAM_LIMIT (bytes).
set(ESC2C_COMMON_DIR ${CMAKE_CURRENT_LIST_DIR})
get_filename_component(ESC2C_BOARD_DIR ${CMAKE_CURRENT_LIST_DIR} DIRECTORY)

# esc2c_add_firmware(NAME REPORT source...): NAME.elf/.bin/.hex/.map linking esc2c_model; the size check
# writes REPORT in the build directory and fails the build when the image exceeds the board's limits.
function(esc2c_add_firmware name report)
  add_executable(${name} ${ESC2C_BOARD_DIR}/startup.c ${ESC2C_BOARD_DIR}/board.c ${ARGN})
  set_target_properties(${name} PROPERTIES SUFFIX ".elf" LINK_DEPENDS ${ESC2C_BOARD_DIR}/linker.ld)
  target_include_directories(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR} ${ESC2C_COMMON_DIR} ${ESC2C_BOARD_DIR})
  target_compile_options(${name} PRIVATE -Wall -Wextra -Werror)
  target_link_libraries(${name} PRIVATE esc2c_model)
  target_link_options(${name} PRIVATE -L${ESC2C_COMMON_DIR} -T${ESC2C_BOARD_DIR}/linker.ld
      -Wl,-Map=${CMAKE_CURRENT_BINARY_DIR}/${name}.map -Wl,--print-memory-usage)
  add_custom_command(TARGET ${name} POST_BUILD
      COMMAND ${CMAKE_OBJCOPY} -O binary $<TARGET_FILE:${name}> ${CMAKE_CURRENT_BINARY_DIR}/${name}.bin
      COMMAND ${CMAKE_OBJCOPY} -O ihex $<TARGET_FILE:${name}> ${CMAKE_CURRENT_BINARY_DIR}/${name}.hex
      COMMAND ${CMAKE_COMMAND} -DSIZE_TOOL=${CMAKE_SIZE} -DELF=$<TARGET_FILE:${name}>
              -DBIN=${CMAKE_CURRENT_BINARY_DIR}/${name}.bin
              -DBOARD=${ESC2C_BOARD_NAME} -DFLASH_LIMIT=${ESC2C_FLASH_LIMIT} -DRAM_LIMIT=${ESC2C_RAM_LIMIT}
              -DREPORT=${CMAKE_CURRENT_BINARY_DIR}/${report}
              -P ${ESC2C_COMMON_DIR}/size_check.cmake
      VERBATIM)
endfunction()

esc2c_add_firmware(firmware size_report.txt
    ${ESC2C_COMMON_DIR}/main.c
    ${ESC2C_COMMON_DIR}/protocol.c
    ${ESC2C_COMMON_DIR}/crc32.c
    ${ESC2C_COMMON_DIR}/profile_mark.c)
