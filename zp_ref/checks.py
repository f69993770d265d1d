"""Argument checks of the public API, for bridges and other callers outside the core.

Each raises TypeError/ValueError naming the argument, the value and what is accepted
(the same checks and messages as the core's own arguments).
"""
from ._validation import (as_float_array, check_backend, check_choice, check_count, check_real,
                          check_seed)
from .bands import check_q

__all__ = ["as_float_array", "check_backend", "check_choice", "check_count", "check_q",
           "check_real", "check_seed"]
