#!/usr/bin/env bash
# Set up (idempotent) and run the whole chain on the built-in synthetic sound set:
#   compress -> emit for the STM32F746ZG -> host bit-exact verify -> firmware on the emulated Cortex-M7.
# RUN_DIR / BUILD_DIR override where results go; extra arguments go to `esc2c compress`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RUN_DIR=${RUN_DIR:-runs/default}
BUILD_DIR=${BUILD_DIR:-build/default}
E=.venv/bin/esc2c
$E compress -o "$RUN_DIR" "$@"
$E emit "$RUN_DIR/model.onnx" --board stm32f746zg -o "$BUILD_DIR"
$E verify "$BUILD_DIR"
$E run "$BUILD_DIR" --target qemu --profile
