/* Profiling marker: the QEMU instruction-count plugin is given this function's address (from the ELF
 * symbol table) and records the running instruction count each time it is entered. The firmware calls
 * it before an inference, after each layer (from the layer hook) and after the inference, so the
 * instructions between two marks are exactly those of one layer. On a real board it costs a call. */
#ifndef ESC2C_PROFILE_MARK_H
#define ESC2C_PROFILE_MARK_H

void esc2c_profile_mark(int tag);

#endif
