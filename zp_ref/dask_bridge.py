"""Alias of :mod:`zp_ref.bridges.dask` (the module's former place), kept importable."""
from .bridges.dask import (band_of, importance_weights, pool_from_npy, pool_from_zarr,
                           sample_indices, stratified_sample, to_zarr)

__all__ = ["importance_weights", "sample_indices", "band_of", "stratified_sample",
           "pool_from_npy", "pool_from_zarr", "to_zarr"]
