"""Bridges from zp_ref's in-memory API to other runtimes: ``zp_ref.bridges.torch``
(PyTorch samplers and tensors) and ``zp_ref.bridges.dask`` (chunked and out-of-core
pools on Dask, zarr stores); they import the public API (the listed exceptions are in
tests/test_imports.py)."""
