"""The run loop's step as one ``jax.jit`` call (``physopt_ref.run(..., compile=True)``).

:func:`physopt_ref.runner.advance._advance` (an optimizer step, the evaluation, the per-run stop
decisions and bookkeeping) is written with array operations only, so it traces as it is: the
loop state travels as a tuple of arrays, and the step number as an ``int32`` array, so that the
function is traced once for the whole run. The host part of the loop (records, the "is anyone
still running?" checks, callbacks) is unchanged. Nothing is donated: the records keep
references to earlier values, and the per-step arrays of an ensemble are small.

The compiled step is kept for the next runs: a small least-recently-used cache
(:data:`CACHE_SIZE` entries) under a key of everything the trace reads
(:func:`physopt_ref.runner.compile_key.settings_key`): the optimizer (its rules and every
hyperparameter, per-run arrays by a digest of their bytes), the objective (a problem's class
and attributes, data arrays by digest; a function's code, closure, defaults and the module
constants it names), the run settings the step reads (``target``, ``gtol``, ``grad_noise``,
``noise_seed``, ``noise_member``, ...), the debug switch, and the ensemble's namespace, tree,
shapes, dtype and device. So a run that reuses an entry traces the very program that a fresh
compilation would. The entry keeps no reference to a run's optimizer, objective or arrays:
those reach the traced function through a per-thread slot set for each call. Functions and
classes named at module level are keyed by identity, as ``jax.jit`` keys a function: rebinding
a module-level helper's globals between runs is not seen (:func:`clear_compile_cache`). What
cannot be keyed (a tracer, an object of unknown kind) compiles its own step, as before.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from physopt_ref.core.checks import checks_enabled
from physopt_ref.runner.advance import _advance, _Runs
from physopt_ref.runner.compile_key import Uncacheable, settings_key

__all__ = ["CACHE_SIZE", "clear_compile_cache", "compile_cache_info", "jit_advance"]

#: How many compiled loop steps are kept (least recently used first out).
CACHE_SIZE = 8

_NAMES = [f.name for f in fields(_Runs)]
_LOCK = threading.Lock()
_CACHE: OrderedDict[Any, tuple[Callable[..., Any], threading.local]] = OrderedDict()
_STATS = {"hits": 0, "misses": 0, "uncacheable": 0}


def clear_compile_cache() -> None:
    """Forget every compiled loop step (the next ``run(compile=True)`` compiles afresh)."""
    with _LOCK:
        _CACHE.clear()
        for name in _STATS:
            _STATS[name] = 0


def compile_cache_info() -> dict[str, int]:
    """``hits``, ``misses``, ``uncacheable`` (runs that compiled their own step), ``size``."""
    with _LOCK:
        return {**_STATS, "size": len(_CACHE), "maxsize": CACHE_SIZE}


def _traced_config(cfg: Any) -> Any:
    """``cfg`` without the settings that the step does not read (host-side loop settings), so
    that they are not part of the key and cannot reach the trace."""
    return replace(cfg, steps=0, callback=None, record_every=1, check_every=1, record_x=False,
                   stop_when_done=True, checkpoint=None, checkpoint_every=None, compile=True,
                   problem=None)


def _ensemble_key(ens: Any) -> tuple[Any, ...]:
    like = ens.like
    return (ens.xp, ens.treedef, ens.batch_ndim, tuple(ens.batch_shape), tuple(like.shape),
            str(like.dtype), repr(sorted(map(str, like.devices()))),
            bool(getattr(like, "weak_type", False)))


def _jitted() -> tuple[Callable[..., Any], threading.local]:
    """A fresh ``jax.jit`` of the loop step, reading its optimizer, objective, ensemble and
    settings from a per-thread slot at trace time."""
    import jax

    slot = threading.local()

    def body(values: tuple[Any, ...], k: Any) -> tuple[Any, ...]:
        optimizer, fun, ens, cfg = slot.args
        runs = _advance(optimizer, fun, ens, cfg, _Runs(*values), k)
        return tuple(getattr(runs, name) for name in _NAMES)

    return jax.jit(body), slot


def _lookup(optimizer: Any, fun: Any, ens: Any, cfg: Any) -> tuple[Callable[..., Any],
                                                                    threading.local]:
    """The cached compiled step for these settings, or a new one (cached when keyable)."""
    try:
        key = settings_key(optimizer, fun, cfg, checks_enabled()) + _ensemble_key(ens)
    except Uncacheable:
        with _LOCK:
            _STATS["uncacheable"] += 1
        return _jitted()
    with _LOCK:
        entry = _CACHE.get(key)
        if entry is not None:
            _CACHE.move_to_end(key)
            _STATS["hits"] += 1
            return entry
        _STATS["misses"] += 1
        entry = _CACHE[key] = _jitted()
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
        return entry


def jit_advance(optimizer: Any, fun: Callable[..., Any], ens: Any, cfg: Any) -> Callable[..., Any]:
    """A drop-in replacement for ``_advance(optimizer, fun, ens, cfg, runs, k)``, jitted (and
    reused from the cache when an earlier run had the same settings)."""
    import jax
    import jax.numpy as jnp

    cfg = _traced_config(cfg)
    jitted, slot = _lookup(optimizer, fun, ens, cfg)

    def settled(v: Any) -> Any:
        # The starting values may be weakly typed or not committed to a device where the
        # step's outputs are: made like those, so that the second step does not trace again.
        if getattr(v, "weak_type", False):
            v = jnp.asarray(v, dtype=v.dtype)
        if not getattr(v, "committed", True):
            v = jax.device_put(v, next(iter(v.devices())))
        return v

    def advance(optimizer_: Any, fun_: Any, ens_: Any, cfg_: Any, runs: Any, k: int) -> Any:
        values = jax.tree.map(settled, tuple(getattr(runs, name) for name in _NAMES))
        slot.args = (optimizer, fun, ens, cfg)  # read only if this call traces
        try:
            return _Runs(*jitted(values, jnp.asarray(k, dtype=jnp.int32)))
        finally:
            slot.args = None  # the cached entry keeps no reference to this run

    return advance
