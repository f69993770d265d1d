"""Pools on disk as chunked 1-D dask arrays: ``.npy`` files and zarr stores (read in
the workers, never through the client), and writing any 1-D dask array to zarr.
Re-exported by :mod:`zp_ref.bridges.dask`; zarr is optional (``pip install
zp_ref[zarr]``)."""
from __future__ import annotations

import glob
import os

import numpy as np
import dask.array as da
from dask.base import tokenize

from ..checks import check_count

__all__ = ["pool_from_npy", "pool_from_zarr", "to_zarr"]


def _npy_header(path: str):
    """(length, dtype) of a 1-D .npy file, read from its header only."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(f)
    if len(shape) != 1:
        raise ValueError(f"paths: {path} holds an array of shape {shape}; pools are 1-D")
    if dtype.kind not in "fiu":
        raise TypeError(f"paths: {path} holds dtype {dtype}; pools hold real numbers")
    return shape[0], dtype


def _read_npy(path: str, lo: int, hi: int):
    """Entries lo:hi of a .npy file as a read-only memory map (pages load on use)."""
    return np.load(path, mmap_mode="r")[lo:hi]


def pool_from_npy(paths, *, chunk_size=None) -> "da.Array":
    """A pool stored as 1-D ``.npy`` files, as one lazy dask array (their concatenation).

    Only headers are read here; each chunk is a memory map opened by the worker that
    reads it, so no file is ever loaded whole and the pool never passes through the
    client. Files must share one real dtype; an empty file contributes no chunk.

    Parameters
    ----------
    paths : str, os.PathLike or list of them
        A glob pattern (files taken in sorted name order: zero-pad the numbers), a path,
        or a list of paths (taken in the given order).
    chunk_size : int or None, default None
        At most this many entries per chunk (files are split); None: one chunk per file.

    Returns
    -------
    dask.array.Array
        shape (N,) (N the total length), the files' dtype.
    """
    if isinstance(paths, (str, os.PathLike)):
        pattern = os.fspath(paths)
        files = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not files:
            raise ValueError(f"paths: no file matches {pattern!r}")
    elif isinstance(paths, (list, tuple)) and paths:
        files = [os.fspath(p) for p in paths]
    else:
        raise TypeError(f"paths must be a glob pattern, a path or a non-empty list of paths, "
                        f"got {paths!r}")
    if chunk_size is not None:
        chunk_size = check_count(chunk_size, "chunk_size", minimum=1)
    for f in files:
        if not os.path.isfile(f):
            raise ValueError(f"paths: {f!r} is not a file")
    headers = [_npy_header(f) for f in files]
    dtypes = {str(d) for _, d in headers}
    if len(dtypes) > 1:
        raise TypeError(f"paths: the files must share one dtype, got {sorted(dtypes)}")
    dtype = headers[0][1]
    reads = []                                       # (path, lo, hi) of every chunk
    for f, (size, _) in zip(files, headers):
        step = size if chunk_size is None else chunk_size
        bounds = list(range(0, size, step)) + [size] if size else [0, 0]
        reads += [(os.path.abspath(f), lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    if len(reads) > 1:                               # empty files add no chunk
        reads = [r for r in reads if r[2] > r[1]] or reads[:1]
    name = "pool-from-npy-" + tokenize(reads, [os.stat(r[0]).st_mtime_ns for r in reads])
    graph = {(name, c): (_read_npy, *r) for c, r in enumerate(reads)}   # one task a chunk
    return da.Array(graph, name, chunks=(tuple(hi - lo for _, lo, hi in reads),),
                    dtype=dtype)


def _zarr():
    try:
        import zarr
    except ImportError as exc:
        raise ImportError("zarr pools need zarr 3: install the extra with "
                          "`pip install zp_ref[zarr]`") from exc
    return zarr


def _check_store(path_or_store, zarr):
    """A filesystem path as str, or a zarr store object."""
    if isinstance(path_or_store, (str, os.PathLike)):
        return os.fspath(path_or_store)
    if isinstance(path_or_store, zarr.abc.store.Store):
        return path_or_store
    raise TypeError(f"path_or_store must be a path or a zarr store (zarr.abc.store.Store), "
                    f"got {type(path_or_store).__name__}")


def _check_component(component):
    if component is not None and not isinstance(component, str):
        raise TypeError(f"component must be None or the array's path in the store (str), "
                        f"got {component!r}")
    return component


def pool_from_zarr(path_or_store, *, chunk_size=None, component=None) -> "da.Array":
    """A pool stored as a 1-D zarr array, as one lazy dask array.

    Only the metadata is read here; each chunk is read by the worker that needs it.
    On a cluster, the path must be visible to the client and the workers alike.

    Parameters
    ----------
    path_or_store : str, os.PathLike or zarr store
        A directory path or a zarr store.
    chunk_size : int or None, default None
        Entries per dask chunk; None: the zarr chunk length (a multiple of it reads each
        zarr chunk once).
    component : str or None, default None
        The array's path inside the store (None when the store is the array itself).

    Returns
    -------
    dask.array.Array
        shape (N,), the zarr array's dtype.
    """
    zarr = _zarr()
    store = _check_store(path_or_store, zarr)
    component = _check_component(component)
    if chunk_size is not None:
        chunk_size = check_count(chunk_size, "chunk_size", minimum=1)
    try:
        arr = zarr.open_array(store=store, path=component, mode="r")
    except FileNotFoundError as exc:
        raise ValueError(f"path_or_store: no zarr array at {path_or_store!r}"
                         + (f", component {component!r}" if component else "")) from exc
    except zarr.errors.BaseZarrError as exc:
        raise ValueError(f"path_or_store: {path_or_store!r}"
                         + (f", component {component!r}," if component else "")
                         + f" does not hold a zarr array ({exc})") from exc
    dtype = np.dtype(arr.dtype)
    if len(arr.shape) != 1:
        raise ValueError(f"path_or_store: the zarr array has shape {arr.shape}; pools are 1-D")
    if dtype.kind not in "fiu":
        raise TypeError(f"path_or_store: the zarr array holds dtype {dtype}; pools hold real "
                        "numbers")
    chunks = arr.chunks if chunk_size is None else (chunk_size,)
    return da.from_zarr(arr, chunks=chunks)


def to_zarr(array, path_or_store, *, component=None, chunk_size=None, overwrite=False,
            compressors="auto", compute=True):
    """Write a 1-D dask array (weights, band ids, a pool) to a zarr array, chunk by chunk
    in the workers (nothing passes through the client).

    The array is rechunked to the regular grid of the zarr chunks first when its chunks
    are not already on it, so every zarr chunk has one writer.

    Parameters
    ----------
    array : dask.array.Array, shape (N,)
    path_or_store : str, os.PathLike or zarr store
    component : str or None, default None
        The array's path inside the store.
    chunk_size : int or None, default None
        Length of the zarr chunks (None: the array's largest chunk).
    overwrite : bool, default False
        False refuses an existing array (ValueError).
    compressors : "auto", None or zarr codecs, default "auto"
        zarr's ("auto": its default codec; None: none, fastest for incompressible floats).
    compute : bool, default True
        Write now; False returns the dask object that writes when computed (pass it to
        ``distributed.progress``).

    Returns
    -------
    dask.delayed.Delayed or None
        None when ``compute``; else the object that writes.
    """
    zarr = _zarr()
    if not isinstance(array, da.Array) or array.ndim != 1:
        raise TypeError(f"array must be a 1-D dask.array.Array, got "
                        f"{type(array).__name__} of shape {getattr(array, 'shape', None)}")
    if any(np.isnan(c) for c in array.chunks[0]):
        raise ValueError("array has unknown chunk sizes; call array.compute_chunk_sizes() "
                         "first")
    store = _check_store(path_or_store, zarr)
    component = _check_component(component)
    if not isinstance(overwrite, (bool, np.bool_)):
        raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
    if chunk_size is None:
        chunk_size = max(max(array.chunks[0], default=1), 1)
    chunk_size = check_count(chunk_size, "chunk_size", minimum=1)
    sizes = array.chunks[0]
    if not all(c == chunk_size for c in sizes[:-1]) or (sizes and sizes[-1] > chunk_size):
        array = array.rechunk((chunk_size,))
    try:
        return da.to_zarr(array, store, component=component, mode="w" if overwrite else "w-",
                          compute=compute, compressors=compressors, chunks=(chunk_size,))
    except zarr.errors.ContainsArrayError as exc:
        raise ValueError(f"path_or_store: an array exists at {path_or_store!r}"
                         + (f", component {component!r}" if component else "")
                         + "; pass overwrite=True to replace it") from exc
