"""Bit-for-bit comparison of two :class:`physopt_ref.Trace` objects (the chunked-run tests)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from physopt_ref.backends import namespace_name, to_numpy

from physopt_ref import Trace

__all__ = ["assert_same_trace"]


def _same(a: Any, b: Any, path: str) -> None:
    if isinstance(a, tuple | list):
        assert type(a) is type(b) and len(a) == len(b), f"{path}: {type(a)} vs {type(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif hasattr(a, "shape") and hasattr(a, "dtype"):
        if not isinstance(a, np.ndarray):
            assert namespace_name(array_namespace(a)) == namespace_name(array_namespace(b)), path
        x, y = np.asarray(to_numpy(a)), np.asarray(to_numpy(b))
        assert x.dtype == y.dtype, f"{path}: dtype {x.dtype} vs {y.dtype}"
        assert x.shape == y.shape, f"{path}: shape {x.shape} vs {y.shape}"
        # bit for bit: the same bytes (so NaN == NaN, and -0.0 != 0.0)
        assert x.tobytes() == y.tobytes(), f"{path}: values differ"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def assert_same_trace(actual: Trace, expected: Trace) -> None:
    """Every field of the traces is identical, bit for bit (``wall_time`` aside)."""
    for f in dataclasses.fields(Trace):
        if f.name != "wall_time":
            _same(getattr(actual, f.name), getattr(expected, f.name), f.name)
