"""Valid hyperparameters for every registered optimizer: ranges per optimizer, on top of the
registry.

For a registered optimizer, :func:`hyperparameter_space` starts from its registry
``test_hyperparameters`` (what is not drawn keeps that value) and draws the hyperparameters named
in :data:`RANGES`. Each range lies inside the factory's validation, and is chosen so that runs on
the contract workload (curvatures up to 2, losses from 1/2) stay finite: the kit's own tests draw
from every range and run every optimizer on what they draw. An optimizer registered without an
entry here (a composed one, say) falls back to the registry: ``test_hyperparameters`` with the
registry's ``sweep`` values drawn from their lists.

Hyperparameters that the registry lists in ``sweep`` accept per-run arrays; the strategies then
may draw one value per ensemble member.

The ranges are data (no hypothesis import); :mod:`physopt_ref.testing.strategies` turns them
into strategies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from physopt_ref.core.registry import REGISTRY

__all__ = ["RANGES", "Choice", "Integer", "Maybe", "Range", "Real", "hyperparameter_space"]


@dataclass(frozen=True)
class Real:
    """A float in ``[low, high]`` (log-uniform when ``log``)."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Integer:
    """An int in ``[low, high]``."""

    low: int
    high: int


@dataclass(frozen=True)
class Choice:
    """One of ``values``."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Maybe:
    """``None`` or a value of ``inner``."""

    inner: Real | Integer | Choice


Range = Real | Integer | Choice | Maybe

_LR = Real(1e-3, 0.5, log=True)
_SEED = Integer(0, 2**32 - 1)
_BOOL = Choice((False, True))

#: Per optimizer, the hyperparameters drawn and their ranges (sources: each factory's validation
#: and docstring; the upper step sizes keep the contract workload, curvature <= 2, stable).
RANGES: Mapping[str, Mapping[str, Range]] = MappingProxyType({
    "sgd": {"lr": _LR},
    "heavy_ball": {"lr": _LR, "momentum": Real(0.0, 0.95)},
    "nesterov": {"lr": _LR, "momentum": Real(0.0, 0.95)},
    "adam": {"lr": Real(1e-4, 0.3, log=True), "b1": Real(0.0, 0.99), "b2": Real(0.0, 0.999),
             "eps": Real(1e-12, 1e-3, log=True)},
    "coolmomentum": {"lr": Real(1e-3, 0.4, log=True), "rho0": Real(0.0, 0.99),
                     "cool_steps": Integer(1, 100), "weight_decay": Real(0.0, 0.1),
                     "schedule": Choice(("paper", "geometric_temperature",
                                         "linear_temperature", "constant"))},
    "dyna": {"gamma": Real(0.05, 2.0, log=True), "beta": Real(0.0, 0.99),
             "zeta": Real(0.5, 2.0), "omega_eps": Real(1e-12, 1e-3, log=True)},
    "dyna_prototype": {"lr": _LR, "b1": Real(0.0, 0.99), "b2": Real(0.1, 2.0),
                       "eps": Real(1e-12, 1e-3, log=True)},
    # mass 0.5 and stiffness 2 stay at the registry's values: h < 2 sqrt(m / c_max) = 1.
    "dynamic_relaxation": {"h": Real(0.05, 0.9), "zeta": Real(0.0, 2.0)},
    "bbi": {"lr": Real(5e-3, 0.3, log=True), "v0": Real(-1.0, 4.0), "delta_e": Real(0.0, 2.0),
            "rescale": _BOOL, "t0": Maybe(Integer(1, 10)), "t1": Maybe(Integer(1, 10)),
            "n_fixed_bounces": Integer(0, 3), "seed": _SEED,
            "bounce_direction": Choice(("cube", "isotropic")), "v0_tuning": _BOOL},
    "ecdsep": {"lr": Real(5e-3, 0.3, log=True), "eta": Real(0.5, 3.0), "nu": Real(0.0, 0.5),
               "s": Real(0.0, 2.0), "f0": Real(-1.0, 4.0), "delta_e": Real(0.0, 2.0),
               "weight_decay": Real(0.0, 0.05), "rescale": _BOOL, "seed": _SEED,
               "f0_tuning": _BOOL},
    "gravity": {"lr": Real(0.01, 0.5, log=True), "alpha": Real(0.0, 0.1),
                "beta": Real(0.0, 1.0), "seed": _SEED, "t_start": Integer(0, 1)},
})


def hyperparameter_space(name: str) -> tuple[dict[str, Any], dict[str, Range], frozenset[str]]:
    """``(fixed, ranges, per_run)`` for a registered optimizer.

    ``fixed`` holds the registry's values of what is not drawn, ``ranges`` what is drawn, and
    ``per_run`` the names that accept per-run arrays (the registry's ``sweep``).
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; registered: {sorted(REGISTRY)}")
    entry = REGISTRY[name]
    ranges = dict(RANGES.get(name, {}))
    if not ranges:  # no table entry: the registry's sweep values are the valid alternatives
        ranges = {k: Choice(tuple(v)) for k, v in entry.sweep.items()}
    fixed = {k: v for k, v in entry.test_hyperparameters.items() if k not in ranges}
    return fixed, ranges, frozenset(entry.sweep)
