"""How ``physopt-ref compare`` sets up a problem and an optimizer on it.

A :class:`ProblemSetting` says which problem to build, where its runs start, their budget in
objective evaluations, the target, and the tuned hyperparameters of each optimizer, each as a
:class:`Tuned` record that also says how many settings were tried to find it. The settings
themselves are in :mod:`physopt_ref.cli.problem_settings`.

Hyperparameter names are checked against the optimizer's factory: a name it does not take is an
error (:func:`hyperparameters_for`), never silently dropped.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from physopt_ref import problems
from physopt_ref.backends import host_uniform
from physopt_ref.core.registry import REGISTRY

__all__ = [
    "REQUIRED",
    "ProblemSetting",
    "Tuned",
    "build_problem",
    "check_names",
    "grid_search",
    "hyperparameters_for",
    "searched",
    "starts_for",
    "theory",
    "unrecorded",
]


#: Values for hyperparameters without a default, used when a problem has no entry.
REQUIRED: dict[str, dict[str, Any]] = {"ecdsep": {"eta": 1.0}, "bbi": {"lr": 1e-3}}


@dataclass(frozen=True)
class Tuned:
    """The hyperparameters of one optimizer on one problem, and the search behind them.

    Attributes
    ----------
    hp : dict
        The hyperparameters (names of the optimizer's factory).
    tried : int or None
        How many settings were tried to choose ``hp`` (its tuning budget); ``None`` when the
        search was not recorded.
    source : str
        Where the values come from.
    grid : dict of str to tuple, optional
        For settings tuned here: the grid searched with ``physopt-ref tune`` (then ``tried`` is
        its size, and the values of ``hp`` are one of its points).
    """

    hp: Mapping[str, Any]
    tried: int | None
    source: str
    grid: Mapping[str, tuple[Any, ...]] | None = None

    def __post_init__(self) -> None:
        if self.tried is not None and self.tried < 1:
            raise ValueError(f"tried must be >= 1 or None, got {self.tried}")
        if self.grid is None:
            return
        size = math.prod(len(v) for v in self.grid.values())
        if self.tried != size:
            raise ValueError(f"a grid of {size} points, but tried = {self.tried}")
        for name, values in self.grid.items():
            if name not in self.hp or self.hp[name] not in values:
                raise ValueError(f"{name} = {self.hp.get(name)!r} is not on the grid {values}")

    @property
    def fixed(self) -> dict[str, Any]:
        """The hyperparameters the grid does not vary."""
        return {k: v for k, v in self.hp.items() if k not in (self.grid or {})}


def theory(hp: Mapping[str, Any], source: str) -> Tuned:
    """Values derived from known properties of the problem: one setting tried, no search."""
    return Tuned(dict(hp), 1, source)


def searched(hp: Mapping[str, Any], tried: int, source: str) -> Tuned:
    """Values from a search of ``tried`` settings done elsewhere (a paper's notebook)."""
    return Tuned(dict(hp), tried, source)


def unrecorded(hp: Mapping[str, Any], source: str) -> Tuned:
    """Values whose search (if any) was not recorded: the budget is unknown."""
    return Tuned(dict(hp), None, source)


def grid_search(
    hp: Mapping[str, Any], grid: Mapping[str, Sequence[Any]], source: str
) -> Tuned:
    """Values chosen here by ``physopt-ref tune`` on ``grid`` (``hp`` holds the chosen point)."""
    g = {k: tuple(v) for k, v in grid.items()}
    return Tuned(dict(hp), math.prod(len(v) for v in g.values()), source, g)


@dataclass(frozen=True)
class ProblemSetting:
    """How ``compare`` runs one problem.

    Attributes
    ----------
    key : str
        The name in the table and on the command line.
    factory : str
        The factory's name in :mod:`physopt_ref.problems` (or a key of its ``PROBLEMS``).
    kwargs : dict
        Arguments of the factory.
    evals, full_evals : int
        Budget per run in objective evaluations (value and gradient; the start is one, each
        step one more) in quick and ``--full`` mode.
    ensemble, full_ensemble : int
        Number of starts in quick and ``--full`` mode.
    starts : str
        ``"box"``: uniform in ``box``; ``"jitter"``: ``x0`` plus uniform noise of half-width
        ``jitter``; ``"line"``: on the line through the first two known minima; ``"x0"``: every
        member at the suggested start; ``"packing"``: a cluster's random packings
        (:func:`physopt_ref.problems.random_packing`; a cluster's ``"jitter"`` starts are
        packings too, since jitter around one cloud overlaps atoms).
    target_tol : float
        A run succeeds when its value is ``<= f_min + target_tol``.
    lr : float
        Generic step size for optimizers without an entry in ``hyper`` (when they take ``lr``).
    box : tuple of float or None
        ``(low, high)`` per coordinate for ``"box"`` starts.
    jitter : float
        Half-width for ``"jitter"`` starts.
    hyper : dict of str to Tuned
        Optimizer name -> its tuned hyperparameters on this problem.
    note : str
        Where the setup comes from.
    """

    key: str
    factory: str
    kwargs: dict[str, Any]
    evals: int
    full_evals: int
    ensemble: int
    full_ensemble: int
    starts: str
    target_tol: float
    lr: float
    box: tuple[float, float] | None = None
    jitter: float = 0.0
    hyper: dict[str, Tuned] = field(default_factory=dict)
    note: str = ""

    def budget(self, full: bool = False) -> int:
        """Evaluations per run in quick (or ``full``) mode."""
        return self.full_evals if full else self.evals


def build_problem(setting: ProblemSetting, **overrides: Any) -> problems.Problem:
    """Build the problem of ``setting`` (``overrides`` replace factory arguments).

    A factory name with no arguments that is a key of ``problems.PROBLEMS`` builds that entry
    (its defaults are the command line's); otherwise the factory function of that name is
    called with ``setting.kwargs`` and ``overrides``.
    """
    kwargs = {**setting.kwargs, **overrides}
    is_function = setting.factory in problems.__all__
    if setting.factory in problems.PROBLEMS and not (kwargs and is_function):
        if kwargs:
            raise TypeError(f"{setting.factory} (a PROBLEMS entry) takes no arguments")
        return problems.PROBLEMS[setting.factory]()
    return getattr(problems, setting.factory)(**kwargs)


def _parameters(name: str) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(REGISTRY[name].factory).parameters


def check_names(name: str, hp: Mapping[str, Any], where: str) -> None:
    """Raise ValueError when ``hp`` names a hyperparameter optimizer ``name`` does not take."""
    params = _parameters(name)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(k for k in hp if k not in params)
    if unknown:
        raise ValueError(f"{where} names {', '.join(unknown)}, which {name} does not take; "
                         f"it takes {', '.join(params)}")


def hyperparameters_for(
    name: str, setting: ProblemSetting, seed: int, overrides: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], bool]:
    """The hyperparameters of optimizer ``name`` on ``setting``, and whether they are tuned.

    The tuned entry (or, without one, :data:`REQUIRED` and the problem's generic ``lr`` when the
    factory takes ``lr``), then ``seed`` for stochastic optimizers, then ``overrides``.

    Raises
    ------
    ValueError
        When the entry or ``overrides`` name a hyperparameter the factory does not take.
    """
    params = _parameters(name)
    tuned = setting.hyper.get(name)
    where = f"the settings of {name} on {setting.key}"
    hp = {**REQUIRED.get(name, {}), **(tuned.hp if tuned else {})}
    check_names(name, hp, where)
    if tuned is None and "lr" in params:
        hp["lr"] = setting.lr
    if REGISTRY[name].stochastic or "seed" in params:
        hp["seed"] = seed
    if overrides:
        check_names(name, overrides, "the override")
        hp.update(overrides)
    return hp, tuned is not None


def starts_for(problem: Any, setting: ProblemSetting, n: int, seed: int) -> np.ndarray:
    """``n`` starting points (float64, shape ``(n, dim)``).

    Start ``k`` is drawn with the key (``seed``, member ``k``), so different seeds share no
    start. Clusters (problems with ``random_starts``) get random packings with a minimum pair
    distance for ``"packing"`` and ``"jitter"`` starts.
    """
    x0 = np.asarray(problem.x0, dtype=np.float64)
    if setting.starts in ("packing", "jitter") and hasattr(problem, "random_starts"):
        return np.asarray(problem.random_starts(n, seed), dtype=np.float64)
    u = host_uniform(seed, 0, (n, problem.dim), batch_ndim=1, stream=101)
    if setting.starts == "box" and setting.box is not None:
        low, high = setting.box
        return low + (high - low) * u
    locs = [m.location for m in problem.minima if m.location is not None]
    if setting.starts == "line" and len(locs) >= 2:
        a, b = np.asarray(locs[0], dtype=np.float64), np.asarray(locs[1], dtype=np.float64)
        t = -0.5 + 2.0 * u[:, :1]
        return a + t * (b - a)
    if setting.starts == "jitter" and setting.jitter > 0:
        return x0 + setting.jitter * (2.0 * u - 1.0)
    return np.broadcast_to(x0, (n, problem.dim)).copy()
