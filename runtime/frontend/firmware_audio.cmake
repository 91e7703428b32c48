# The raw-audio firmware `firmware_audio` (audio_firmware.c): the same board files, linker script and
# flash/RAM check as `firmware` (esc2c_add_firmware from boards/common/firmware.cmake, included first),
# with the PCM test clips of audio_vectors.h; its size report is size_report_audio.txt.
set(ESC2C_FRONTEND_DIR ${CMAKE_CURRENT_LIST_DIR})
esc2c_add_firmware(firmware_audio size_report_audio.txt
    ${ESC2C_FRONTEND_DIR}/audio_firmware.c
    ${ESC2C_FRONTEND_DIR}/audio_check.c
    ${ESC2C_COMMON_DIR}/profile_mark.c)
