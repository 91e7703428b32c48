"""The on-device log-mel front end: tables and C configuration generated from :mod:`esc2c.features` (the same
code that computes the training features), the CMSIS-DSP sources it builds with, and the Python reference of
the int8 model input it must reproduce."""
