"""The run loop's step as one ``jax.jit`` call (``physopt_ref.run(..., compile=True)``).

:func:`physopt_ref.runner.advance._advance` (an optimizer step, the evaluation, the per-run stop
decisions and bookkeeping) is written with array operations only, so it traces as it is: the
loop state travels as a tuple of arrays, and the step number as an ``int32`` array, so that the
function is traced once for the whole run. The host part of the loop (records, the "is anyone
still running?" checks, callbacks) is unchanged. Nothing is donated: the records keep
references to earlier values, and the per-step arrays of an ensemble are small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from physopt_ref.runner.advance import _advance, _Runs

__all__ = ["jit_advance"]


def jit_advance(optimizer: Any, fun: Callable[..., Any], ens: Any, cfg: Any) -> Callable[..., Any]:
    """A drop-in replacement for ``_advance(optimizer, fun, ens, cfg, runs, k)``, jitted."""
    import jax
    import jax.numpy as jnp

    names = [f.name for f in fields(_Runs)]

    def body(values: tuple[Any, ...], k: Any) -> tuple[Any, ...]:
        runs = _advance(optimizer, fun, ens, cfg, _Runs(*values), k)
        return tuple(getattr(runs, name) for name in names)

    jitted = jax.jit(body)

    def settled(v: Any) -> Any:
        # The starting values may be weakly typed or not committed to a device where the
        # step's outputs are: made like those, so that the second step does not trace again.
        if getattr(v, "weak_type", False):
            v = jnp.asarray(v, dtype=v.dtype)
        if not getattr(v, "committed", True):
            v = jax.device_put(v, next(iter(v.devices())))
        return v

    def advance(optimizer: Any, fun: Any, ens: Any, cfg: Any, runs: Any, k: int) -> Any:
        values = jax.tree.map(settled, tuple(getattr(runs, name) for name in names))
        return _Runs(*jitted(values, jnp.asarray(k, dtype=jnp.int32)))

    return advance
