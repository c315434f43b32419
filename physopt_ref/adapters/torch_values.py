"""Group values of the torch adapter: torch's names for the factory's hyperparameters, their
comparison by value, and the checks a value passes when a group is made or a scheduler changes
it (:mod:`physopt_ref.adapters.torch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from physopt_ref.core.contract import Optimizer
from physopt_ref.runner.spec import with_hyperparameters

__all__ = [
    "ALIASES",
    "PER_LEAF",
    "SCHEDULED",
    "STEP_SIZES",
    "baked",
    "check_one_value",
    "for_active",
    "holds_tensor",
    "host_values",
    "loss_value",
    "real",
    "rebuilt",
    "same",
    "silence_dynamo_lru_warnings",
]

#: torch's names for factory hyperparameters: a group key and the factory names it holds.
ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "adam": {"betas": ("b1", "b2")},
    "dyna_prototype": {"betas": ("b1", "b2")},
    "dyna": {"lr": ("gamma",)},
    "dynamic_relaxation": {"lr": ("h",)},
}

#: Factory hyperparameters a torch scheduler may change: kept in 0-d tensors.
SCHEDULED = ("lr", "gamma", "h", "momentum", "b1", "b2")
#: Factory hyperparameters that may be a list with one value per parameter of the tree (in
#: the order of the tree's parameters): restricted to the parameters that step
#: (:func:`for_active`).
PER_LEAF = ("fan_in",)
#: Of those, the step sizes: any finite value >= 0 is a legal change (0 stops the step).
STEP_SIZES = ("lr", "gamma", "h")

def silence_dynamo_lru_warnings() -> None:
    """Let Dynamo trace array-api-compat's cached type tests without its UserWarning.

    Dynamo warns once for every ``functools.lru_cache`` wrapper it traces through; those of
    array-api-compat (namespace and type lookups keyed by a type: pure) are registered as
    safe, as torch registers einops' (``torch._dynamo.utils``; a private hook, skipped where
    absent).
    """
    try:
        from torch._dynamo.utils import allow_lru_cache_wrapper_trace_without_warning as allow
    except ImportError:  # pragma: no cover - another torch
        return
    import array_api_compat.common._helpers as helpers

    for value in vars(helpers).values():
        if callable(value) and hasattr(value, "cache_info"):
            allow(value)



def _plain(value: Any) -> bool:
    return isinstance(value, bool | int | float | str | type(None))


def same(a: Any, b: Any) -> bool:
    """Group values compared by value: numbers, strings, tuples, one-element tensors."""
    if a is b:
        return True
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.cpu(), b.cpu()))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return _plain(a) and type(a) is type(b) and a == b


def real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_one_value(key: str, value: Any) -> None:
    """A tensor hyperparameter (or part of ``betas``) holds one value: ``ValueError`` if not."""
    for part in value if isinstance(value, tuple | list) else (value,):
        if isinstance(part, torch.Tensor) and part.numel() != 1:
            raise ValueError(
                f"a tensor {key} must hold one value (a 0-d tensor), got shape "
                f"{tuple(part.shape)}"
            )


def host_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Tensor values as Python floats (read once, when a group is made or checked)."""
    return {k: float(v.reshape(()).item()) if isinstance(v, torch.Tensor) else v
            for k, v in values.items()}


def rebuilt(optimizer: Optimizer, values: Mapping[str, Any]) -> Optimizer:
    changed = {k: v for k, v in values.items() if not same(optimizer.hyperparameters[k], v)
               or isinstance(v, torch.Tensor)}
    return with_hyperparameters(optimizer, **changed) if changed else optimizer


def for_active(optimizer: Optimizer, positions: tuple[int, ...], n_params: int) -> Optimizer:
    """``optimizer`` for the parameters at ``positions`` of its tree of ``n_params``.

    Parameters without a gradient are left out of a step, so a per-parameter list
    (:data:`PER_LEAF`: Dyna's ``fan_in``) is cut to the parameters that step; other values
    are shared by every parameter and stay as they are.
    """
    cut = {}
    for name in PER_LEAF:
        value = optimizer.hyperparameters.get(name)
        if isinstance(value, list | tuple) and len(value) == n_params:  # checked by init
            cut[name] = type(value)(value[i] for i in positions)
    return with_hyperparameters(optimizer, **cut) if cut else optimizer


def loss_value(loss: Any, optimizer: Optimizer) -> Any:
    """The closure's loss as the step takes it: a number, or a 0-d tensor (one element)."""
    if loss is None:
        if optimizer.needs_loss:
            raise RuntimeError(
                f"{optimizer.name} needs the loss: call step(closure) with a closure that "
                "zeroes the gradients, evaluates the model, calls backward() and returns the loss"
            )
        return None
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise ValueError(
                f"the closure's loss must be a scalar (one element), got shape {tuple(loss.shape)}"
            )
        return loss.detach().reshape(())
    return loss


def holds_tensor(value: Any) -> bool:
    """A tensor, or a tuple holding one (``betas``): read at every step, in place or not."""
    if isinstance(value, tuple):
        return any(isinstance(v, torch.Tensor) for v in value)
    return isinstance(value, torch.Tensor)


def baked(functional: Optimizer, floats: Mapping[str, float],
          tensors: Mapping[str, torch.Tensor], varying: set[str]) -> Optimizer:
    """The optimizer for the torch adapter's compiled step: the scheduled values (``floats``,
    held in ``tensors``) that are not ``varying`` as Python numbers (constants in the
    kernels), the others as their tensors (``functional``'s).

    A constant is the value rounded to its tensor's dtype (as the eager step reads it:
    float32's 0.999 is 0.99900001, and Adam's :math:`1 - \\beta_2` differs by 1.3e-5
    between the two), rounded on the host (a CPU tensor: no device synchronisation).
    """
    fixed = {k: float(torch.tensor(v, dtype=tensors[k].dtype))
             for k, v in floats.items() if k not in varying}
    return with_hyperparameters(functional, **fixed) if fixed else functional
