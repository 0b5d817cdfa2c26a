"""NumPy kernels: the reference implementation every other device is tested against."""
