"""Quantization: the integer contract (intparams) and everything that trains or checks against it."""
