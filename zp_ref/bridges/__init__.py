"""Bridges from zp_ref's in-memory API to other runtimes (``zp_ref.bridges.torch``:
PyTorch samplers and tensors); they import only the public API."""
