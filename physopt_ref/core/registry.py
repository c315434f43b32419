"""The registry of optimizers: names, factories and how the generic tests exercise them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from physopt_ref.core.contract import Optimizer

__all__ = [
    "REGISTRY",
    "RegistryEntry",
    "get_optimizer",
    "register",
    "registered_names",
]

# ---------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class RegistryEntry:
    """One registered optimizer and how the generic tests exercise it.

    Attributes
    ----------
    name : str
        Registry name, also the factory's name in ``physopt_ref``.
    factory : callable
        ``factory(**hyperparameters) -> Optimizer``.
    test_hyperparameters : mapping
        Settings for the generic tests (purity, dtype, ensembles, parity): chosen so that every
        branch of the step is exercised within a few steps on a small quadratic.
    family : str
        Paper family (``"classic"``, ``"dyna"``, ``"ecd"``, ``"coolmomentum"``, ``"gravity"``).
    stochastic : bool
        Whether the step draws random numbers (then it takes a ``seed``).
    smooth : bool
        False for steps with discontinuous decisions (bounces, max-normalisation): backend
        parity is then checked over fewer steps.
    sweep : mapping
        Hyperparameters that accept per-run arrays, each with a few values for the generic
        "K values in one ensemble == K separate runs" test.
    long_run : mapping
        Overrides of ``test_hyperparameters`` for the long (200-step) comparisons across
        backends and compilers: settings whose trajectory stays reproducible to rounding (a
        chaotic setting amplifies the last bit of a sum until runs differ at O(1)).
    """

    name: str
    factory: Callable[..., Optimizer]
    test_hyperparameters: Mapping[str, Any]
    family: str
    stochastic: bool = False
    smooth: bool = True
    sweep: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    long_run: Mapping[str, Any] = field(default_factory=dict)


REGISTRY: dict[str, RegistryEntry] = {}


def register(
    name: str,
    factory: Callable[..., Optimizer],
    *,
    test_hyperparameters: Mapping[str, Any],
    family: str,
    stochastic: bool = False,
    smooth: bool = True,
    sweep: Mapping[str, tuple[float, ...]] | None = None,
    long_run: Mapping[str, Any] | None = None,
) -> None:
    """Add an optimizer to :data:`REGISTRY` (the generic tests then cover it)."""
    if name in REGISTRY and REGISTRY[name].factory is not factory:
        raise ValueError(f"an optimizer named {name!r} is registered already")
    REGISTRY[name] = RegistryEntry(
        name,
        factory,
        dict(test_hyperparameters),
        family,
        stochastic,
        smooth,
        MappingProxyType(dict(sweep or {})),
        MappingProxyType(dict(long_run or {})),
    )


def registered_names() -> list[str]:
    """Names of every registered optimizer, sorted."""
    return sorted(REGISTRY)


def get_optimizer(name: str, **hyperparameters: Any) -> Optimizer:
    """Build a registered optimizer by name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; registered: {registered_names()}")
    return REGISTRY[name].factory(**hyperparameters)


