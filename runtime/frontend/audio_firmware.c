/*
 * Raw-audio firmware: the PCM clips of audio_vectors.h through the front end and the model on the board
 * (audio_check.h), with profiling marks for the QEMU instruction-count plugin around the whole-clip front
 * end, the model and every streamed hop. Exits (QEMU: semihosting) with the number of failing clips.
 */
#include "audio_check.h"
#include "board.h"
#include "esc2c_frontend.h"
#include "model.h"
#include "profile_mark.h"

int main(void)
{
    const esc2c_audio_io_t io = {board_console_write, esc2c_profile_mark};
    board_init();
    board_console_write("esc2c raw-audio firmware on ");
    board_console_write(board_name);
    board_console_write("\n");
    const int failures = esc2c_audio_self_test(&io);
    for (;;)
    {
        board_exit(failures != 0 ? 1 : 0); /* returns on a real board */
    }
}
