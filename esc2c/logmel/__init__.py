"""The on-device log-mel front end: int16 PCM -> the model's int8 input, in C (runtime/frontend/), computing
the features the model was trained on.

Modules:
  tables      FeatureSpec + input quantization -> esc2c_frontend_config.h / esc2c_frontend_tables.c (window
              and sparse mel weights from esc2c.features.window / mel_filterbank, the training code)
  cmsis_dsp   where the CMSIS-DSP sources of the FFT come from (cmsisdsp==1.10.3 sdist, $ESC2C_CMSIS_DSP)
  python_frontend  the Python pipeline the C must reproduce (logmel in float64, then QuantizeLinear)
  host        the C front end alone, built for this machine (tests, tables checks)
  project_files  what `esc2c emit` adds to a project for a model with a FeatureSpec
  (esc2c.compiler.audio_check: raw audio end to end on the host, C front end + C model vs the Python pipeline)
  firmware    the raw-audio firmware (firmware_audio): build, QEMU run, instruction counts, footprint

Numerical design. The C front end computes in IEEE single precision (the Cortex-M7's FPU): PCM times the
window table (which folds in the exact 1/32768 scaling), CMSIS-DSP arm_rfft_fast_f32, |X|^2, the sparse mel
sums, 10*log10f, (x - mean) / std and x / scale, then rintf (round half to even, like QuantizeLinear), the
zero point and saturation. No fixed point: a float32 FFT's relative error (~1e-6 of a band's power) moves a
log-mel value by ~1e-5 dB, far below one int8 step (a model's input scale is ~0.5 dB), so the int8 input
differs from the float64 pipeline only where a value lies within that error of a rounding boundary:
measured 99.99 %+ identical elements and never more than 1 LSB apart on UrbanSound8K and ESC-50 clips.
The streaming front end keeps a ring of whole hops covering one window and a ring of the last `frames`
int8 columns, so each hop costs one FFT; it supports center=False specs, power 1 or 2, n_fft 32..4096.
"""
