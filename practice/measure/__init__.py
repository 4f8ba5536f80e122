"""The measurements: the running correlation, the theory's quantities, the live measurer, kNN and probe."""
