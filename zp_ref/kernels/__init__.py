"""Compiled kernels. ``cpu_*`` modules hold Numba CPU kernels, ``gpu_*`` modules
their numba.cuda twins (imported only when the cuda backend is used). The NumPy
oracle of each algorithm lives beside its public API (weighting.py, sampling.py,
...), where it doubles as the specification."""
