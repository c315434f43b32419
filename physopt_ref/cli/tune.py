"""``physopt-ref tune``: a grid search of one optimizer on one compare problem.

Every point of the grid runs with the problem's budget and ensemble (as a row of the table),
on starts and seeds from :data:`~physopt_ref.cli.problem_settings.TUNE_SEED` onwards, disjoint
from the table's seed-0 starts, so that the table does not report the runs a setting was chosen
on. The points are ranked by the number of successful runs (more is better), then the median
evaluations to the target (fewer), then the median best value (lower). The settings entries
tuned here record their grid, and ``physopt-ref tune OPTIMIZER PROBLEM`` without ``--grid``
repeats that search.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from physopt_ref.cli.compare import Row, ensemble_start, run_cell
from physopt_ref.cli.problem_settings import SETTINGS, TUNE_SEED
from physopt_ref.cli.settings import build_problem, check_names, hyperparameters_for

__all__ = ["TuneResult", "rank_key", "tune"]


def rank_key(row: Row) -> tuple[float, float, float]:
    """Sort key of a grid point: most successes, then fewest evaluations, then lowest median."""
    if row.error:
        return (math.inf, math.inf, math.inf)
    evals = row.median_evals_to_target if row.successes else math.inf
    median = row.median_best if math.isfinite(row.median_best) else math.inf
    return (-row.successes, evals, median)


@dataclass
class TuneResult:
    """The rows of every grid point (best first) and the settings entry they compare to."""

    optimizer: str
    problem: str
    grid: dict[str, tuple[Any, ...]]
    fixed: dict[str, Any]
    rows: list[Row]
    recorded: dict[str, Any] | None
    seed: int

    @property
    def best(self) -> dict[str, Any]:
        """The grid values of the best point."""
        return {k: self.rows[0].hyperparameters[k] for k in self.grid}

    @property
    def agrees(self) -> bool | None:
        """Whether the best point is the settings entry's (None without an entry)."""
        if self.recorded is None:
            return None
        return all(self.recorded.get(k) == v for k, v in self.best.items())

    def as_dict(self) -> dict[str, Any]:
        """Plain data of the search."""
        return {"optimizer": self.optimizer, "problem": self.problem, "seed": self.seed,
                "grid": self.grid, "fixed": self.fixed, "tried": len(self.rows),
                "best": self.best, "recorded": self.recorded, "agrees": self.agrees,
                "rows": [r.as_dict() for r in self.rows]}


def tune(
    optimizer: str,
    problem: str,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    xp: Any,
    dtype: Any = None,
    fixed: Mapping[str, Any] | None = None,
    seed: int = TUNE_SEED,
    full: bool = False,
    ensemble: int | None = None,
    evals: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> TuneResult:
    """Run every point of ``grid`` and rank them (see the module docstring).

    Parameters
    ----------
    optimizer, problem : str
        A registered optimizer and a compare problem.
    grid : mapping of str to sequence, optional
        Hyperparameter -> values; the search is their product. Default: the grid recorded in
        the settings entry of ``optimizer`` on ``problem``.
    fixed : mapping, optional
        Hyperparameters held fixed (default: the settings entry's values off the grid).
    seed, full, ensemble, evals :
        As for ``compare``: seed of the starts and stochastic optimizers, paper-sized mode,
        overrides of the ensemble size and of the evaluations per run.

    Raises
    ------
    ValueError
        For an unknown problem, a missing grid, or a name the optimizer does not take.
    """
    if problem not in SETTINGS:
        raise ValueError(f"unknown problem {problem!r}; the compare problems are {list(SETTINGS)}")
    setting = SETTINGS[problem]
    entry = setting.hyper.get(optimizer)
    if grid is None:
        if entry is None or entry.grid is None:
            raise ValueError(f"no recorded grid for {optimizer} on {problem}: give --grid")
        grid = entry.grid
    axes = {k: tuple(v) for k, v in grid.items()}
    base = dict(entry.hp) if entry is not None else {}
    base = {k: v for k, v in base.items() if k not in axes}
    base.update(fixed or {})
    check_names(optimizer, {**base, **axes}, "the grid")
    built = build_problem(setting)
    dtype = xp.float64 if dtype is None else dtype
    n_runs = ensemble or (setting.full_ensemble if full else setting.ensemble)
    budget = evals or setting.budget(full)
    x0 = ensemble_start(xp, dtype, built, setting, n_runs, seed)
    target = built.f_min + setting.target_tol if built.minima else None
    points = [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]
    rows = []
    for i, point in enumerate(points):
        hp, _ = hyperparameters_for(optimizer, setting, seed, {**base, **point})
        rows.append(run_cell(problem, built, optimizer, hp, x0, budget, target)[0])
        if progress is not None:
            progress(i + 1, len(points), f"{optimizer} {point}")
    rows.sort(key=rank_key)
    return TuneResult(optimizer, problem, axes, base, rows,
                      dict(entry.hp) if entry is not None else None, seed)
