"""The training engine: the loop, one step, the optimizer, the run folder, DDP and CUDA graphs."""
