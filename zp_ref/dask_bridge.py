"""Alias of :mod:`zp_ref.bridges.dask` (the module's former place): its public names."""
from .bridges.dask import *  # noqa: F401,F403
from .bridges.dask import __all__  # noqa: F401
