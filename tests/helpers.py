"""Assertions and small utilities shared by the tests.

Reference values are computed in NumPy float64; the array under test stays in its backend until
the final comparison, which checks namespace, dtype and shape before the values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace
from physopt_ref.backends import namespace_name, to_numpy

__all__ = ["assert_close", "assert_like", "to_numpy", "xp_array"]


def xp_array(xp: Any, values: Any, dtype: Any = None) -> Any:
    """``values`` (NumPy / lists) as an array of ``xp`` (float64 unless ``dtype`` says)."""
    return xp.asarray(
        np.asarray(values, dtype=np.float64), dtype=xp.float64 if dtype is None else dtype
    )


def assert_like(actual: Any, xp: Any, dtype: Any, shape: tuple[int, ...]) -> None:
    """``actual`` belongs to ``xp``, has ``dtype`` and ``shape``."""
    got = namespace_name(array_namespace(actual))
    assert got == namespace_name(xp), f"namespace {got} != {namespace_name(xp)}"
    assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype}"
    assert tuple(actual.shape) == tuple(shape), f"shape {tuple(actual.shape)} != {tuple(shape)}"


def assert_close(
    actual: Any,
    desired: Any,
    *,
    xp: Any = None,
    dtype: Any = None,
    rtol: float = 1e-12,
    atol: float = 0.0,
    err_msg: str = "",
) -> None:
    """Compare an array of any backend with NumPy reference values.

    When ``xp`` is given, also check that ``actual`` belongs to it, has ``dtype`` (default
    float64) and the reference's shape.
    """
    desired = np.asarray(desired)
    if xp is not None:
        assert_like(actual, xp, xp.float64 if dtype is None else dtype, desired.shape)
    np.testing.assert_allclose(to_numpy(actual), desired, rtol=rtol, atol=atol, err_msg=err_msg)
