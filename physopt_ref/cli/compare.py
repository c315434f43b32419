"""The table of ``physopt-ref compare``: every registered optimizer on every problem.

One row per (problem, optimizer): the best value over the ensemble, the median of the per-run
best values, the success count with its 95% Wilson interval (value ``<= f_min + target_tol``),
the median evaluations to the target among the successful runs, the wall time of the ensemble
run, and whether the hyperparameters were tuned (with the number of settings tried). The
papers' headline experiments are in :mod:`physopt_ref.cli.headlines`. The result carries the
machine's numerical fingerprint (:mod:`physopt_ref.cli.fingerprint`): the rows of chaotic runs
match another machine's digit for digit only where the fingerprints match.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from physopt_ref.cli.fingerprint import numerical_fingerprint
from physopt_ref.cli.problem_settings import SETTINGS
from physopt_ref.cli.settings import ProblemSetting, build_problem, hyperparameters_for, starts_for
from physopt_ref.core.registry import REGISTRY, get_optimizer, registered_names
from physopt_ref.runner.loop import Trace, run
from physopt_ref.runner.stats import evaluations_ecdf, wilson_interval

__all__ = [
    "CompareResult",
    "Row",
    "compare",
    "ecdf_by_optimizer",
    "ensemble_start",
    "run_cell",
    "tuning_budgets",
]


@dataclass
class Row:
    """One cell of the comparison: an optimizer on a problem.

    ``evals`` is the budget per run in objective evaluations (the start plus one per step);
    ``median_evals_to_target`` is over the successful runs (NaN when none succeeded);
    ``no_progress`` says that no run went below its own starting value.
    """

    problem: str
    optimizer: str
    hyperparameters: dict[str, Any]
    tuned: bool
    tried: int | None
    ensemble: int
    evals: int
    f_min: float | None
    best: float = math.nan
    median_best: float = math.nan
    successes: int = 0
    success_rate: float = math.nan
    success_ci: tuple[float, float] = (math.nan, math.nan)
    median_evals_to_target: float = math.nan
    time_s: float = 0.0
    no_progress: bool = False
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The row as plain data (NaN -> None, callables -> their repr)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, tuple):
                return [clean(x) for x in v]
            if callable(v):
                return repr(v)
            return v

        out = {k: clean(v) for k, v in self.__dict__.items() if k != "hyperparameters"}
        out["hyperparameters"] = {k: clean(v) for k, v in self.hyperparameters.items()}
        return out


@dataclass
class CompareResult:
    """Rows, the traces behind them, the problems built, headlines, and what could not run."""

    rows: list[Row]
    traces: dict[tuple[str, str], Trace]
    problems: dict[str, Any]
    settings: dict[str, Any]
    headlines: list[Any] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_time: float = 0.0
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def row(self, problem: str, optimizer: str) -> Row | None:
        """The row of ``optimizer`` on ``problem`` that ran without error, if any."""
        for r in self.rows:
            if r.problem == problem and r.optimizer == optimizer and not r.error:
                return r
        return None

    def as_dict(self) -> dict[str, Any]:
        """Settings, the numerical fingerprint, rows, headlines and timings as plain data."""
        return {
            "settings": self.settings,
            "fingerprint": self.fingerprint,
            "rows": [r.as_dict() for r in self.rows],
            "headlines": [h.as_dict() for h in self.headlines],
            "skipped": self.skipped,
            "wall_time_s": self.wall_time,
        }


def _fill_row(row: Row, trace: Trace) -> Row:
    best = trace.best_value
    finite = best[np.isfinite(best)]
    reached = trace.evaluations_to_target[trace.reached_target]
    row.best = float(np.min(finite)) if finite.size else math.nan
    row.median_best = float(np.median(finite)) if finite.size else math.nan
    if trace.target is not None:
        row.successes = int(np.sum(trace.reached_target))
        row.success_rate = row.successes / best.size
        row.success_ci = wilson_interval(row.successes, int(best.size))
    row.median_evals_to_target = float(np.median(reached)) if reached.size else math.nan
    row.time_s = trace.wall_time
    row.no_progress = bool(np.all(~(best < trace.losses[0])))
    return row


def run_cell(
    problem_key: str,
    problem: Any,
    name: str,
    hp: dict[str, Any],
    x0: Any,
    evals: int,
    target: float | None,
    *,
    tuned: bool = False,
    tried: int | None = None,
    runner: Callable[..., Trace] = run,
) -> tuple[Row, Trace | None]:
    """Run optimizer ``name`` with ``hp`` from ``x0`` for ``evals`` evaluations per run.

    A cell that fails (a bad value, an exception in a step) gives a row with ``error`` set and
    no trace: the comparison goes on. ``runner`` is :func:`physopt_ref.run` or a function with
    its signature (``functools.partial(physopt_ref.run_chunked, executor=client)``).
    """
    f_min = problem.f_min if problem.minima else None
    row = Row(problem_key, name, hp, tuned, tried, int(x0.shape[0]), evals, f_min)
    try:
        opt = get_optimizer(name, **hp)
        trace = runner(opt, problem, x0, evals - 1, target=target,
                       record_every=max(1, evals // 200), check_every=50)
    except Exception as exc:  # a cell that fails is reported, not fatal
        row.error = f"{type(exc).__name__}: {exc}"
        return row, None
    return _fill_row(row, trace), trace


def ensemble_start(
    xp: Any, dtype: Any, problem: Any, setting: ProblemSetting, n: int, seed: int
) -> Any:
    """The ``n`` seeded starts of ``setting`` as an array of ``xp`` and ``dtype``."""
    return xp.asarray(starts_for(problem, setting, n, seed), dtype=dtype)


def _check_names(optimizers: list[str] | None, problems: list[str] | None) -> tuple[list, list]:
    names = registered_names() if optimizers is None else list(optimizers)
    for n in names:
        if n not in REGISTRY:
            raise ValueError(f"unknown optimizer {n!r}; registered: {registered_names()}")
    keys = list(SETTINGS) if problems is None else list(problems)
    for k in keys:
        if k not in SETTINGS:
            raise ValueError(f"unknown problem {k!r}; the compare problems are {list(SETTINGS)}")
    return names, keys


def compare(
    *,
    xp: Any,
    dtype: Any = None,
    full: bool = False,
    seed: int = 0,
    ensemble: int | None = None,
    evals: int | None = None,
    optimizers: list[str] | None = None,
    problems: list[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    runner: Callable[..., Trace] = run,
) -> CompareResult:
    """Run every optimizer on every problem (the table; headlines are separate).

    Parameters
    ----------
    xp : namespace
        The backend (``physopt_ref.backends.get_namespace(name)``).
    dtype : dtype, optional
        ``xp.float64`` by default.
    full : bool
        Paper-sized budgets and ensembles instead of the quick ones.
    seed : int
        Seed of the starts and of stochastic optimizers.
    ensemble : int, optional
        Override every problem's ensemble size.
    evals : int, optional
        Override every problem's budget: objective evaluations per run (>= 1).
    optimizers, problems : list of str, optional
        Restrict the table (default: every registered optimizer, every problem).
    progress : callable, optional
        ``progress(done, total, label)`` after each cell.
    runner : callable
        What runs a cell: :func:`physopt_ref.run` (default) or a function with its signature,
        such as ``functools.partial(physopt_ref.run_chunked, executor=client)``.

    Raises
    ------
    ValueError
        For an unknown optimizer or problem, and for settings that name a hyperparameter the
        optimizer does not take.
    """
    t0 = time.perf_counter()
    dtype = xp.float64 if dtype is None else dtype
    names, keys = _check_names(optimizers, problems)
    built = {key: build_problem(SETTINGS[key]) for key in keys}
    result = CompareResult(
        rows=[], traces={}, problems=built,
        settings={"full": full, "seed": seed, "ensemble": ensemble, "evals": evals,
                  "optimizers": names, "problems": keys},
        fingerprint=numerical_fingerprint(),
    )
    total, done = len(keys) * len(names), 0
    for key, problem in built.items():
        setting = SETTINGS[key]
        n_runs = ensemble or (setting.full_ensemble if full else setting.ensemble)
        budget = evals or setting.budget(full)
        x0 = ensemble_start(xp, dtype, problem, setting, n_runs, seed)
        target = problem.f_min + setting.target_tol if problem.minima else None
        for name in names:
            hp, tuned = hyperparameters_for(name, setting, seed)
            entry = setting.hyper.get(name)
            row, trace = run_cell(key, problem, name, hp, x0, budget, target, tuned=tuned,
                                  tried=entry.tried if entry else None, runner=runner)
            result.rows.append(row)
            if trace is not None:
                result.traces[(key, name)] = trace
            done += 1
            if progress is not None:
                progress(done, total, f"{name} on {key}")
    result.wall_time = time.perf_counter() - t0
    return result


def ecdf_by_optimizer(result: CompareResult) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per optimizer, the ECDF of evaluations-to-target over the problems with a target.

    Each problem weighs the same (:func:`physopt_ref.evaluations_ecdf`); a cell that failed
    counts as runs that never reached the target. Returns ``name -> (x, y)``.
    """
    groups: dict[str, list[np.ndarray]] = {}
    for r in result.rows:
        if r.f_min is None:
            continue
        trace = result.traces.get((r.problem, r.optimizer))
        runs = trace.evaluations_to_target if trace is not None else np.full(r.ensemble, -1)
        groups.setdefault(r.optimizer, []).append(runs)
    return {name: evaluations_ecdf(*g) for name, g in groups.items()}


def tuning_budgets(result: CompareResult) -> dict[str, tuple[int, int, int]]:
    """Per optimizer: settings tried summed over its tuned rows with a recorded search, the
    number of those rows, and the number of tuned rows whose search was not recorded."""
    out: dict[str, tuple[int, int, int]] = {}
    for r in result.rows:
        total, n_known, n_unknown = out.get(r.optimizer, (0, 0, 0))
        if r.tuned and r.tried is None:
            n_unknown += 1
        elif r.tuned and r.tried is not None:
            total, n_known = total + r.tried, n_known + 1
        out[r.optimizer] = (total, n_known, n_unknown)
    return out
