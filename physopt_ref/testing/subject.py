"""What the checks run: an optimizer, or a factory and its hyperparameters (:class:`Subject`).

Most checks need only one object with ``init`` and ``step`` (the contract). Some need to build
variants: a different seed (determinism of a stochastic step), a member index (ensemble member
k = the single run with member index k), a
hyperparameter given as a per-run array, a varied step size (stability thresholds). Those take a
:class:`Subject`: the factory, the hyperparameters, and whether the step draws random numbers.
:func:`as_subject` accepts either.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from physopt_ref.core.registry import REGISTRY

__all__ = ["Subject", "as_subject"]


@dataclass(frozen=True)
class Subject:
    """An optimizer under test, as ``factory(**hyperparameters)``.

    Attributes
    ----------
    name : str
        For reports.
    factory : callable
        ``factory(**hyperparameters) -> optimizer`` (an object with ``init`` and ``step``).
    hyperparameters : mapping
        The settings checked; :meth:`build` overrides some of them.
    stochastic : bool
        The step draws random numbers keyed by the hyperparameters ``seed_name`` and
        ``member_name``: another seed must change the run, and ensemble member ``k`` must equal
        a single run with the same seed and member index ``k``.
    seed_name : str
        Name of the seed hyperparameter (default ``"seed"``).
    member_name : str
        Name of the member-index hyperparameter (default ``"member"``).
    smooth : bool
        False for steps with discontinuous decisions (bounces, max-normalisation): backend
        parity is then compared over fewer steps.
    sweep : mapping
        Hyperparameters that accept per-run arrays, each with a few values.
    long_run : mapping
        Overrides for the long (200-step) compiled comparisons (settings whose trajectory stays
        reproducible to rounding).
    accepts : Accepts or None
        What the optimizer takes (tree kinds, ensembles, the loss keyword), found by
        :func:`~physopt_ref.testing.probe.probe`; None until probed. The drawn inputs keep to
        it.
    framework : str
        ``"physopt"`` (an object with ``init`` and ``step``), ``"torch"`` (a
        ``torch.optim.Optimizer`` class) or ``"optax"`` (a factory of an optax
        ``GradientTransformation``); see :mod:`physopt_ref.testing.frameworks`.
    native : object or None
        For ``"torch"`` and ``"optax"``: the class or the factory itself (``factory`` then
        builds the step-function view the physics checks run on).
    """

    name: str
    factory: Callable[..., Any]
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    stochastic: bool = False
    seed_name: str = "seed"
    member_name: str = "member"
    smooth: bool = True
    sweep: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    long_run: Mapping[str, Any] = field(default_factory=dict)
    accepts: Any = None
    framework: str = "physopt"
    native: Any = None

    def __post_init__(self) -> None:
        for attr in ("hyperparameters", "sweep", "long_run"):
            object.__setattr__(self, attr, MappingProxyType(dict(getattr(self, attr))))

    @classmethod
    def registered(cls, name: str, **overrides: Any) -> Subject:
        """A registered optimizer with its registry ``test_hyperparameters`` (and overrides)."""
        if name not in REGISTRY:
            raise ValueError(f"unknown optimizer {name!r}; registered: {sorted(REGISTRY)}")
        entry = REGISTRY[name]
        return cls(name, entry.factory, {**entry.test_hyperparameters, **overrides},
                   stochastic=entry.stochastic, smooth=entry.smooth, sweep=entry.sweep,
                   long_run=entry.long_run)

    @property
    def seed(self) -> int:
        """The seed of the hyperparameters (0 when not given)."""
        return int(self.hyperparameters.get(self.seed_name, 0))

    def build(self, **overrides: Any) -> Any:
        """``factory(**{**hyperparameters, **overrides})``."""
        return self.factory(**{**self.hyperparameters, **overrides})

    def seeded(self, offset: int) -> dict[str, int]:
        """The override giving the seed ``seed + offset`` (empty for a deterministic step)."""
        return {self.seed_name: self.seed + offset} if self.stochastic else {}

    def as_member(self, k: int) -> dict[str, int]:
        """The override making a single run member ``k`` of the ensemble of the same seed:
        member index ``member + k`` (empty for a deterministic step)."""
        if not self.stochastic:
            return {}
        return {self.member_name: int(self.hyperparameters.get(self.member_name, 0)) + k}

    def resolved_hyperparameters(self, **overrides: Any) -> dict[str, Any]:
        """The settings the factory really uses: its defaults under the given ones.

        Read from the built optimizer's ``hyperparameters`` mapping where it has one (the
        library's optimizers: validated values, defaults resolved), else from the factory's
        signature.
        """
        hp = getattr(self.build(**overrides), "hyperparameters", None)
        if isinstance(hp, Mapping):
            return dict(hp)
        params: Iterable[inspect.Parameter]
        try:
            target = self.factory if self.native is None else self.native
            params = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):  # no signature (a builtin, say)
            params = []
        defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        return {**defaults, **self.hyperparameters, **overrides}

    def with_hyperparameters(self, **overrides: Any) -> Subject:
        """The same subject with some hyperparameters replaced."""
        return replace(self, hyperparameters={**self.hyperparameters, **overrides})


def _fixed(opt: Any) -> Callable[..., Any]:
    def factory(**overrides: Any) -> Any:
        if overrides:
            raise TypeError(
                f"this check builds variants ({sorted(overrides)}); pass a Subject with the "
                "factory instead of an optimizer object"
            )
        return opt

    return factory


def as_subject(obj: Any) -> Subject:
    """A :class:`Subject` from a Subject, a registered name, or an object with init and step."""
    if isinstance(obj, Subject):
        return obj
    if isinstance(obj, str):
        return Subject.registered(obj)
    if not (callable(getattr(obj, "init", None)) and callable(getattr(obj, "step", None))):
        raise TypeError(
            f"expected an optimizer (an object with init and step), a Subject or a registered "
            f"name, got {type(obj).__name__}"
        )
    return Subject(getattr(obj, "name", type(obj).__name__), _fixed(obj))
