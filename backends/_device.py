"""Device and conversion helpers that work for every backend."""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, device, is_cupy_array, is_torch_array

__all__ = ["asarray_like", "device_of", "namespace_of", "to_numpy"]


def namespace_of(*arrays: Any) -> Any:
    """The Array API namespace of ``arrays`` (``array_api_compat.array_namespace``)."""
    return array_namespace(*arrays)


def device_of(x: Any) -> Any:
    """The device ``x`` lives on (``'cpu'`` for NumPy, a ``Device`` object elsewhere)."""
    return device(x)


def asarray_like(values: Any, like: Any) -> Any:
    """Convert host data to an array with the namespace, dtype and device of ``like``.

    Host data is cast to ``like``'s dtype *before* it moves, so a float32 run never carries
    float64 temporaries onto the device.
    """
    xp = array_namespace(like)
    host = np.asarray(values)
    if host.dtype.kind == "f" and xp.finfo(like.dtype).bits == 32:
        host = host.astype(np.float32, copy=False)
    return xp.asarray(host, dtype=like.dtype, device=device(like))


def to_numpy(x: Any) -> np.ndarray:
    """Copy an array from any backend to a NumPy array on the host (for reports and tests).

    Library steps never call this on user data: it forces a device synchronisation. A torch
    ``bfloat16`` tensor (NumPy has no bfloat16) comes back as float32, which holds every
    bfloat16 value exactly.
    """
    if isinstance(x, np.ndarray | np.generic):
        return np.asarray(x)
    if is_torch_array(x):
        import torch  # loaded already: x is a tensor

        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    if is_cupy_array(x):
        return x.get()
    try:
        return np.asarray(x)
    except (TypeError, ValueError, RuntimeError):
        return np.from_dlpack(x)
