"""Bridges from zp_ref's in-memory API to other runtimes: ``zp_ref.bridges.dask``
(chunked and out-of-core pools on Dask, zarr stores)."""
