"""The numerics core: NumPy only (the solvers, the fit, initialisation, projection, noise, metrics)."""
