"""Seeded, counter-based random draws that give the same numbers on every backend.

The Array API standard has no random-number generator (data-apis/array-api#431). We follow the
dominant pattern of SciPy and scikit-learn: draw on the host with NumPy in float64, then move the
result with ``xp.asarray(..., dtype=..., device=...)``. To keep optimizer steps pure, the draws
are *counter-based*: every number is a hash of ``(seed, counter, stream, element)``, so a step
needs only its seed and step count, not a generator object in its state.

The hash is the SplitMix64 finaliser (Steele, Lea & Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014; constants 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
applied once per key component, chained. Uniforms take the top 53 bits; normals use the
Box-Muller transform on two uniforms.

Ensembles: the leading ``batch_ndim`` axes of a draw index independent runs. Member ``k`` (flat,
C order) of an ensemble drawn with seed ``s`` receives exactly the numbers a single run with seed
``s + k`` receives, so K runs in one array reproduce K separate runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["host_normal", "host_uniform", "normal", "uniform"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK = (1 << 64) - 1


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64: add the golden gamma, then the finaliser (uint64 arithmetic wraps)."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _check_key(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a Python int, got {type(value).__name__}")
    value = int(value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _bits(
    seed: int, counter: int, stream: int, batch_shape: tuple[int, ...], n_event: int
) -> np.ndarray:
    """64-bit hashes of shape ``(n_members, n_event)``."""
    seed = _check_key("seed", seed)
    counter = _check_key("counter", counter)
    stream = _check_key("stream", stream)
    n_members = math.prod(batch_shape)
    with np.errstate(over="ignore"):
        members = np.arange(n_members, dtype=np.uint64) + np.uint64(seed & _MASK)
        h = _mix(members)
        h = _mix(h ^ np.uint64(counter & _MASK))
        h = _mix(h ^ np.uint64(stream & _MASK))
        elements = np.arange(n_event, dtype=np.uint64)
        return _mix(h[:, None] ^ _mix(elements)[None, :])


def _split(shape: Sequence[int], batch_ndim: int) -> tuple[tuple[int, ...], int]:
    shape = tuple(int(n) for n in shape)
    if not 0 <= batch_ndim <= len(shape):
        raise ValueError(
            f"batch_ndim must be in [0, {len(shape)}] for shape {shape}, got {batch_ndim}"
        )
    return shape[:batch_ndim], math.prod(shape[batch_ndim:])


def _to_unit(bits: np.ndarray) -> np.ndarray:
    """Top 53 bits -> float64 in [0, 1)."""
    return (bits >> np.uint64(11)).astype(np.float64) * (2.0**-53)


def host_uniform(
    seed: int, counter: int, shape: Sequence[int], *, batch_ndim: int = 0, stream: int = 0
) -> np.ndarray:
    """Uniform draws on [0, 1) as a NumPy float64 array of ``shape`` (see the module notes)."""
    batch_shape, n_event = _split(shape, batch_ndim)
    u = _to_unit(_bits(seed, counter, 2 * stream, batch_shape, n_event))
    return u.reshape(tuple(shape))


def host_normal(
    seed: int, counter: int, shape: Sequence[int], *, batch_ndim: int = 0, stream: int = 0
) -> np.ndarray:
    """Standard normal draws as a NumPy float64 array of ``shape`` (Box-Muller)."""
    batch_shape, n_event = _split(shape, batch_ndim)
    u1 = _to_unit(_bits(seed, counter, 2 * stream, batch_shape, n_event))
    u2 = _to_unit(_bits(seed, counter, 2 * stream + 1, batch_shape, n_event))
    z = np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
    return z.reshape(tuple(shape))


def _move(values: np.ndarray, like: Any) -> Any:
    from ._device import asarray_like

    return asarray_like(values, like)


def uniform(
    seed: int,
    counter: int,
    shape: Sequence[int],
    *,
    like: Any,
    batch_ndim: int = 0,
    stream: int = 0,
) -> Any:
    """Uniform [0, 1) draws as an array with the namespace, dtype and device of ``like``.

    Parameters
    ----------
    seed, counter, stream : int
        The key of the draw: the user's seed, the step count, and an index that separates the
        independent draws one step makes (one per parameter leaf, say).
    shape : sequence of int
        Shape of the result; its first ``batch_ndim`` axes index ensemble members.
    like : array
        Template array: the result has its namespace, floating dtype and device.
    batch_ndim : int
        Number of leading ensemble axes. Member ``k`` gets the numbers of seed ``seed + k``.
    """
    return _move(host_uniform(seed, counter, shape, batch_ndim=batch_ndim, stream=stream), like)


def normal(
    seed: int,
    counter: int,
    shape: Sequence[int],
    *,
    like: Any,
    batch_ndim: int = 0,
    stream: int = 0,
) -> Any:
    """Standard normal draws as an array like ``like`` (see :func:`uniform`)."""
    return _move(host_normal(seed, counter, shape, batch_ndim=batch_ndim, stream=stream), like)
