"""FP32 compression: teacher training, CUP pruning, distillation losses (PoKD and baselines), stage runner."""
