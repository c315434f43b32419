"""Tracing detection (JAX tracers, ``torch.compile``), the cached namespace lookup, the
torch autograd guard that keeps optimizer steps out of autograd graphs, and the hint that keeps
XLA from merging an expression a rule forms twice (:func:`kept_apart`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace, is_jax_array, is_jax_namespace, is_torch_array

__all__ = [
    "is_tracing",
    "kept_apart",
    "merges_repeats",
    "namespace_of_leaves",
]


def is_tracing(x: Any) -> bool:
    """True when ``x`` is being traced (a JAX tracer, or inside ``torch.compile``)."""
    if is_jax_array(x):
        import jax

        return isinstance(x, jax.core.Tracer)
    if is_torch_array(x):
        import torch

        return bool(torch.compiler.is_compiling())
    return False


def merges_repeats(xp: Any) -> bool:
    """Whether a traced step of namespace ``xp`` is compiled by XLA (``jax.jit``).

    XLA's common-subexpression elimination merges an expression a rule forms twice back into
    one value, so forming a value again for each loop that reads it (what lets inductor fuse
    it into each loop) changes nothing there; :func:`kept_apart` is the way to keep two such
    expressions apart under XLA.
    """
    return bool(is_jax_namespace(xp))


def kept_apart(xp: Any, values: tuple[Any, ...]) -> tuple[Any, ...]:
    """``values`` again, as values XLA does not merge with the originals (JAX; else as given).

    Under ``jax.jit`` they pass through ``jax.lax.optimization_barrier``: an expression formed
    from them is not merged (common-subexpression elimination) with the same expression formed
    from the originals, so each can fuse into the loop that reads it instead of becoming one
    stored array that both loops read. Meant for per-run scalars: the barrier's operands are
    materialised (free for values that are computed anyway), and a full-size operand that is
    a donated input would be copied.
    """
    if not is_jax_namespace(xp):
        return values
    import jax

    return tuple(jax.lax.optimization_barrier(values))


# ---------------------------------------------------------------------------------------------
# Namespaces and validation

_NAMESPACES: dict[type, Any] = {}


def namespace_of_leaves(*groups: list[Any]) -> Any:
    """The namespace of several lists of arrays: a cached lookup when all share one type.

    Mixed types go through ``array_namespace``, which raises for mixed libraries.
    """
    first = groups[0][0]
    kind = type(first)
    for group in groups:
        for a in group:
            if type(a) is not kind:
                return array_namespace(*(a for group in groups for a in group))
    if kind.__module__.startswith("torch") and _torch_compiling():
        # No cache under torch.compile: reading the dict guards on its contents, so a first
        # trace that fills it in (a process whose first torch step is compiled) would recompile
        # the step once.
        return array_namespace(first)
    cached = _NAMESPACES.get(kind)
    if cached is None:
        cached = _NAMESPACES[kind] = array_namespace(first)
    return cached


def _torch_compiling() -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and bool(torch.compiler.is_compiling())


def _torch_step_without_autograd(rule: Callable[..., Any], *args: Any) -> Any:
    """Run an init or update rule on torch tensors under ``torch.no_grad()``.

    A step is an optimizer update, not part of the model: parameters that require grad, or a
    loss that carries the forward pass's history, must not tie the new parameters and state
    to an autograd graph (memory growing step after step, gradients flowing through the
    update). The new tensors therefore carry no history and do not require grad.
    """
    import torch

    if not torch.is_grad_enabled():
        return rule(*args)

    # The arrays going in are detached too: a leaf passed through unchanged (a run that made
    # no update) would otherwise be the caller's tensor, and copies of a tensor that requires
    # grad warn. ``args`` is ``(hp, ctx, *arrays)``.
    def free(t: Any) -> Any:
        if hasattr(t, "_fields"):  # a state NamedTuple
            return type(t)(*map(free, t))
        if isinstance(t, list | tuple):
            return type(t)(free(a) for a in t)
        if isinstance(t, dict):
            return {k: free(v) for k, v in t.items()}
        return t.detach() if getattr(t, "requires_grad", False) else t

    hp, ctx, *arrays = args
    ctx.like = free(ctx.like)
    with torch.no_grad():
        return free(rule(hp, ctx, *map(free, arrays)))



