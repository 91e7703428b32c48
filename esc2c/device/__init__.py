"""Running emitted models on a Cortex-M7: the STM32F746ZG board and QEMU mps2-an500.

Public API:
  boards.copy_board(board, dest)          boards/<board>/ -> dest, boards/common/ -> dest/common
  build.build_firmware(out, board)        cmake + arm-none-eabi-gcc -> Firmware(elf, flash/RAM bytes and limits)
  build.build_host_runner(out)            the same model code built for this machine (reference)
  runner.run_qemu(out, vectors, profile, debug_layers, ...)    `esc2c run OUT --target qemu`
  runner.run_serial(out, port, vectors, debug_layers, ...)     `esc2c run OUT --port PORT`
  serial_runner.SerialRunner(port)        hello() / run(input, layers) / bye() over the framed protocol
  qemu.QemuSession(elf, ...)              one QEMU run: serial_url, connect(), finish()
  profile                                 marker log -> per-layer table, profile.json, profile.png
  flash.flash(out, probe)                 `esc2c flash OUT`
"""
