"""Tensor in, tensor out: the boundary between torch tensors and zp_ref's float64 NumPy.

torch stays optional: it is imported only when an argument already is a tensor
(``type(x).__module__`` starts with ``"torch"``). Rules (docs/compat.md):

- a tensor argument of any dtype, on any device, with or without ``requires_grad`` is
  detached, copied to the host and converted to float64 NumPy (integers and booleans
  keep their values; bfloat16/float16 are widened first); torch's lazy negative and
  conjugate bits are resolved; tensors without data (meta, sparse, fake) are refused
  naming the argument. :func:`to_numpy` is the package's one conversion;
- a 0-d tensor where a number is expected is that number (:func:`scalar_value`); a
  tensor of several elements there is refused naming the argument;
- Q of shape (N, 1) is squeezed to (N,) (also an ``np.matrix`` column and a list of
  one-element tensors); any other 2-D Q is refused;
- float outputs go back as tensors of the reference tensor's floating dtype (float64
  when it is not floating) on its device; indices and band ids as int64 tensors;
- NumPy (or list) in stays NumPy out.
"""
from __future__ import annotations

import functools

import numpy as np


def is_tensor(x) -> bool:
    """True for a torch tensor, decided without importing torch."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def first_tensor(*values):
    """The first torch tensor among ``values``, or None."""
    for v in values:
        if is_tensor(v):
            return v
    return None


def host_tensor(t, name: str = "value"):
    """``t`` detached on the host (its dtype kept; a view of a CPU tensor) with resolved
    negative/conjugate bits; TypeError naming ``name`` for tensors that hold no data
    zp_ref can read (meta, sparse and other layouts)."""
    import torch
    if t.is_meta or t.device.type == "meta":
        raise TypeError(f"{name} is a meta tensor (shape {tuple(t.shape)}, no data); pass a "
                        f"tensor with values (e.g. computed on 'cpu' or 'cuda')")
    if t.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {t.layout}; "
                        f"convert it with {name}.to_dense()")
    t = t.detach()
    try:
        t = t.cpu()                          # to the host first: some devices lack float64
        return t.resolve_neg().resolve_conj()
    except (RuntimeError, NotImplementedError) as exc:   # fake or functional tensors
        raise TypeError(f"{name} is a {type(t).__name__} torch cannot copy to the host "
                        f"({exc}); pass a materialised tensor") from None


def to_numpy(x, name: str = "value"):
    """A tensor as a host NumPy array (float64 for floating dtypes); anything else as
    is. The one conversion of the package (see the module doc); errors name ``name``."""
    if not is_tensor(x):
        return x
    t = host_tensor(x, name)
    if t.is_floating_point():
        import torch
        t = t.to(dtype=torch.float64)
    try:
        return t.numpy()
    except (RuntimeError, TypeError) as exc:
        raise TypeError(f"{name} is a {type(x).__name__} of dtype {t.dtype} that NumPy "
                        f"cannot hold ({exc})") from None


def scalar_value(x, name: str = "value"):
    """A 0-d tensor as its Python number (int, float or bool); a tensor of any other
    shape raises ValueError naming ``name``; anything else is returned as is."""
    if not is_tensor(x):
        return x
    if x.dim() != 0:
        raise ValueError(f"{name} must be a number or a 0-d tensor, got a tensor of shape "
                         f"{tuple(x.shape)} ({x.numel()} elements); reduce it first "
                         f"(e.g. {name}.mean() or {name}.min())")
    return host_tensor(x, name).item()


def _rows_of_one(q) -> bool:
    """A list/tuple whose entries all are one-element tensors or arrays (a (N, 1) Q)."""
    return (isinstance(q, (list, tuple)) and len(q) > 0 and
            all((is_tensor(v) or isinstance(v, np.ndarray)) and getattr(v, "ndim", 0) == 1
                and v.shape[0] == 1 for v in q))


def squeeze_q(q, name: str = "q"):
    """Q of shape (N, 1) -> (N,); other 2-D shapes raise ValueError; the rest as is.
    An ``np.matrix`` becomes an ndarray; a list of one-element tensors a list of numbers."""
    if isinstance(q, np.matrix):
        q = np.asarray(q)
    if _rows_of_one(q):
        return [to_numpy(v, f"{name}[{i}]")[0] for i, v in enumerate(q)]
    shape = getattr(q, "shape", None)
    if shape is None and isinstance(q, (list, tuple)) and q and isinstance(q[0], (list, tuple)):
        try:
            shape = np.shape(q)
        except ValueError:                   # ragged: refused later by the array checks
            return q
    if shape is not None and len(shape) == 2:
        if shape[1] != 1:
            raise ValueError(f"{name} must be (N,) or (N, 1), got shape {tuple(shape)}: "
                             f"a 2-D {name} needs exactly one column")
        return q[:, 0] if hasattr(q, "ndim") else [row[0] for row in q]
    return q


def q_to_numpy(q, name: str = "q"):
    """Q (NumPy, list or tensor; (N,) or (N, 1)) ready for the NumPy core."""
    return to_numpy(squeeze_q(q, name), name)


def float_like(a, ref):
    """Float array ``a`` as a tensor of ``ref``'s floating dtype (float64 otherwise) on
    ``ref``'s device."""
    import torch
    dtype = ref.dtype if ref.is_floating_point() else torch.float64
    return torch.as_tensor(np.asarray(a)).to(dtype=dtype).to(device=ref.device)


def index_like(idx, ref):
    """Integer array ``idx`` as an int64 tensor on ``ref``'s device."""
    import torch
    return torch.as_tensor(np.asarray(idx, dtype=np.int64)).to(device=ref.device)


def promoted_ref(*values):
    """A reference for mixed tensor inputs: the first tensor's device with the promoted
    floating dtype of all tensor inputs (torch's rule), or None without tensors."""
    tensors = [v for v in values if is_tensor(v)]
    if not tensors:
        return None
    import torch
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float64
    return torch.empty(0, dtype=dtype, device=tensors[0].device)


def tensor_io(q_args=(), other_args=(), returns="float"):
    """Decorate a function of arrays: the arguments named in ``q_args`` (Q-like:
    (N, 1) squeezed) and ``other_args`` (a dict argument: its values) accept tensors;
    when any of them is a tensor the result goes back through :func:`convert_result`
    with ``returns`` (None: the result is returned as is)."""
    def decorate(fn):
        import inspect
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = sig.bind_partial(*args, **kwargs)
            for name in q_args:
                if name in bound.arguments:
                    bound.arguments[name] = squeeze_q(bound.arguments[name], name)
            names = tuple(q_args) + tuple(other_args)
            ref = promoted_ref(*(bound.arguments.get(n) for n in names))
            if ref is None and returns is not None:
                return fn(*bound.args, **bound.kwargs)
            for name in names:
                value = bound.arguments.get(name)
                if isinstance(value, dict):
                    bound.arguments[name] = {k: to_numpy(v, f"{name}[{k!r}]")
                                             for k, v in value.items()}
                elif name in bound.arguments:
                    bound.arguments[name] = to_numpy(value, name)
            result = fn(*bound.args, **bound.kwargs)
            return result if ref is None or returns is None else convert_result(result, ref,
                                                                                returns)
        return wrapper
    return decorate


def convert_result(result, ref, returns):
    """``returns``: "float" (an array), "float64" (an array kept float64), "index" (an integer array), "index_info"
    ((indices, info) with info untouched), "index_tuple" (a tuple of integer arrays),
    "index_float" ((indices, float array), e.g. hybrid_indices' (idx, lr))."""
    if returns == "float":
        return float_like(result, ref)
    if returns == "float64":
        import torch
        return torch.as_tensor(np.asarray(result, dtype=np.float64)).to(device=ref.device)
    if returns == "index":
        return index_like(result, ref)
    if returns == "index_info":
        idx, info = result
        return index_like(idx, ref), info
    if returns == "index_tuple":
        return tuple(index_like(a, ref) for a in result)
    if returns == "index_float":
        idx, values = result
        return index_like(idx, ref), float_like(values, ref)
    raise ValueError(f"returns must be 'float', 'float64', 'index', 'index_info', 'index_tuple' or "
                     f"'index_float', got {returns!r}")


def host_pool(x_pool, name: str = "x_pool"):
    """A NumPy pool that a tensor batch can be made from: native byte order (a
    big-endian array is converted), real or bool values; TypeError naming ``name``
    otherwise. A list or tuple pool becomes an array first; other pools are returned
    as is."""
    if isinstance(x_pool, (list, tuple)):
        try:
            x_pool = np.asarray(x_pool)
        except (ValueError, TypeError) as exc:        # ragged or mixed rows
            raise TypeError(f"{name} must be an array-like of equal-length real rows to "
                            f"give a tensor batch, got a {type(x_pool).__name__} NumPy "
                            f"cannot make an array of ({exc})") from None
    if not isinstance(x_pool, np.ndarray):
        return x_pool
    if x_pool.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers to give a tensor batch, got dtype "
                        f"{x_pool.dtype}")
    if not x_pool.dtype.isnative:
        return x_pool.astype(x_pool.dtype.newbyteorder("="))
    return x_pool


def pool_io(method):
    """Decorate a sampler method ``(self, x_pool, q_pool, batch_size, ...)`` returning
    ``(batch_x, idx)`` or ``(batch_x, info)`` with ``info["indices"]``: tensor pools
    (x_pool or q_pool) give ``batch_x`` and the int64 indices as tensors on the pool's
    device; a tensor x_pool is indexed directly (dtype, device and autograd kept). A
    NumPy x_pool that cannot become a tensor is refused before anything is drawn."""
    @functools.wraps(method)
    def wrapper(self, x_pool, q_pool, batch_size, *args, **kwargs):
        q_pool = squeeze_q(q_pool, "q_pool")
        ref = first_tensor(x_pool, q_pool)
        if ref is None:
            return method(self, x_pool, q_pool, batch_size, *args, **kwargs)
        x_host = host_pool(to_numpy(x_pool, "x_pool"))
        batch_x, second = method(self, x_host, to_numpy(q_pool, "q_pool"), batch_size,
                                 *args, **kwargs)
        idx = second.get("indices") if isinstance(second, dict) else second
        if idx is None:                       # new points (ACTIVE): no pool indices
            return float_like(batch_x, ref), second
        idx_t = index_like(idx, ref)
        if is_tensor(x_pool):
            batch_x = x_pool[idx_t.to(x_pool.device)]
        else:
            batch_x = float_like(batch_x, ref)
        if isinstance(second, dict):
            second = {**second, "indices": idx_t}
            return batch_x, second
        return batch_x, idx_t
    return wrapper
