"""The record of a run: :class:`Trace`, with a short ``repr``, a summary and a plain export.

:func:`physopt_ref.run` returns a :class:`Trace`. Its arrays are NumPy copies on the host
(except the final and best points and the optimizer state, which stay on the backend). For a
look at a run: ``print(trace)`` (one line), ``print(trace.summary())`` (per-run quantiles and the
success rate with its 95% Wilson interval). For analysis elsewhere: ``trace.to_dict()`` (lists
and numbers only; ``pandas.DataFrame(d["runs"])`` is one row per run,
``pandas.DataFrame(d["history"])`` one row per record and run) or ``trace.to_json()``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from physopt_ref.runner.stats import wilson_interval

__all__ = ["STATUS_MESSAGES", "Trace"]

#: Per-run termination codes of :attr:`Trace.status`.
STATUS_MESSAGES: dict[int, str] = {
    0: "step budget used up",
    1: "reached the target value",
    2: "gradient below gtol",
    3: "stopped by the callback",
    4: "diverged (non-finite value or gradient)",
}

_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _plain(value: Any) -> Any:
    """Numbers, strings, None, lists and dicts only (arrays -> lists, NaN / inf -> None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.ndarray | np.generic):
        return _plain(value.tolist())
    from physopt_ref.backends import to_numpy

    return _plain(np.asarray(to_numpy(value)))


def _quantile_text(values: np.ndarray, fmt: str) -> str:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "-"
    q = np.quantile(finite, _QUANTILES)
    return " / ".join(format(v, fmt) for v in q)


@dataclass(repr=False)
class Trace:
    """The record of a :func:`run`.

    Arrays are NumPy (host) copies, except :attr:`x`, :attr:`best_x`, :attr:`state`, which
    keep the parameters' namespace, dtype and device.

    Attributes
    ----------
    optimizer : str
        ``repr`` of the optimizer (name and hyperparameters).
    batch_shape : tuple of int
        The ensemble shape (``()`` for one run).
    recorded_steps : numpy.ndarray
        Step numbers of the records, shape ``(n_records,)``; record 0 is the start.
    losses : numpy.ndarray
        Objective per record and run, shape ``(n_records, *batch_shape)``.
    best_value : numpy.ndarray
        Lowest value seen per run, shape ``batch_shape``.
    best_x : tree of arrays
        The point where it was seen (backend arrays).
    x, state :
        Final parameters and optimizer state (backend arrays).
    final_value : numpy.ndarray
        The objective at ``x``.
    status : numpy.ndarray of int
        Per-run termination code, see :data:`STATUS_MESSAGES`.
    steps_taken : numpy.ndarray of int
        Steps each run took before it stopped (frozen runs stop counting).
    steps_to_target : numpy.ndarray of int
        First step at which ``value <= target`` per run, ``-1`` where never (or no target).
    steps : int
        Steps the loop ran (the longest run).
    evaluations : int
        Calls of the objective (each evaluates every run of the ensemble at once): the start
        plus one per step.
    wall_time : float
        Seconds spent in the loop, including moving the results to the host.
    state_history : dict of str to numpy.ndarray
        The optimizer state's per-run floating fields (batch-shaped arrays, e.g. energies)
        at every record after the start, each of shape ``(n_records - 1, *batch_shape)``.
    xs : numpy.ndarray or None
        With ``record_x=True`` and an array ``x0``: the points per record,
        shape ``(n_records, *x0.shape)``.
    target, gtol : float or None
        The stopping settings used.
    """

    optimizer: str
    batch_shape: tuple[int, ...]
    recorded_steps: np.ndarray
    losses: np.ndarray
    best_value: np.ndarray
    best_x: Any
    x: Any
    state: Any
    final_value: np.ndarray
    status: np.ndarray
    steps_taken: np.ndarray
    steps_to_target: np.ndarray
    steps: int
    evaluations: int
    wall_time: float
    state_history: dict[str, np.ndarray] = field(default_factory=dict)
    xs: np.ndarray | None = None
    target: float | None = None
    gtol: float | None = None

    # -- per-run quantities ------------------------------------------------------------------
    @property
    def n_runs(self) -> int:
        """Number of runs in the ensemble."""
        return math.prod(self.batch_shape)

    @property
    def reached_target(self) -> np.ndarray:
        """Boolean per run: the target value was reached (all False without a target)."""
        return self.steps_to_target >= 0

    @property
    def run_evaluations(self) -> np.ndarray:
        """Objective evaluations each run used: its start plus one per step it took."""
        return self.steps_taken + 1

    @property
    def evaluations_to_target(self) -> np.ndarray:
        """Evaluations each run needed to reach the target (the start counts), ``-1`` if never.

        The budget unit of COCO/BBOB's runtime ECDFs (:func:`physopt_ref.evaluations_ecdf`).
        """
        return np.where(self.reached_target, self.steps_to_target + 1, -1)

    @property
    def successes(self) -> int:
        """Number of runs that reached the target."""
        return int(np.sum(self.reached_target))

    @property
    def success_rate(self) -> float:
        """Fraction of runs that reached the target (NaN without a target)."""
        if self.target is None:
            return float("nan")
        return float(np.mean(self.reached_target))

    @property
    def success_interval(self) -> tuple[float, float] | None:
        """95% Wilson interval of the success rate (None without a target)."""
        if self.target is None:
            return None
        return wilson_interval(self.successes, self.n_runs)

    @property
    def energies(self) -> dict[str, np.ndarray]:
        """The :attr:`state_history` entries named like energies (``E``, ``H``, ``*energ*``)."""
        return {
            k: v
            for k, v in self.state_history.items()
            if "energ" in k.lower() or k in ("E", "H", "hamiltonian")
        }

    # -- reading -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        best = float(np.min(self.best_value)) if self.best_value.size else math.nan
        parts = [self.optimizer, f"runs={self.n_runs}", f"steps={self.steps}",
                 f"best={best:.6g}"]
        if self.target is not None:
            parts.append(f"success={self.successes}/{self.n_runs}")
        return f"Trace({', '.join(parts)})"

    def summary(self) -> str:
        """A few lines: budget, per-run quantiles (min / q25 / median / q75 / max), success.

        The success rate comes with its 95% Wilson interval (:func:`physopt_ref.wilson_interval`);
        evaluations to the target are over the successful runs only.
        """
        n = self.n_runs
        lines = [
            f"{self.optimizer}: {n} run{'s' if n != 1 else ''}, {self.steps} steps, "
            f"{self.evaluations} evaluations, {self.wall_time:.3g} s",
            "  per run (min / q25 / median / q75 / max):",
            f"    best value      {_quantile_text(self.best_value.ravel(), '.6g')}",
            f"    final value     {_quantile_text(self.final_value.ravel(), '.6g')}",
            f"    evaluations     {_quantile_text(self.run_evaluations.ravel(), '.0f')}",
        ]
        if self.target is not None:
            low, high = wilson_interval(self.successes, self.n_runs)
            hit = self.evaluations_to_target[self.reached_target]
            lines.append(f"    evals to target {_quantile_text(hit.astype(float), '.0f')}")
            lines.append(f"  target {self.target:g} reached by {self.successes}/{n} runs "
                         f"({self.success_rate:.0%}; 95% Wilson interval "
                         f"{low:.0%} to {high:.0%})")
        codes, counts = np.unique(self.status, return_counts=True)
        lines.append("  status: " + ", ".join(
            f"{STATUS_MESSAGES[int(c)]} {k}" for c, k in zip(codes, counts, strict=True)))
        return "\n".join(lines)

    # -- export ------------------------------------------------------------------------------
    def to_dict(self, *, points: bool = True) -> dict[str, Any]:
        """The trace as plain data: numbers, strings, None, lists and dicts (JSON-ready).

        Parameters
        ----------
        points : bool
            Include the best and final points (``best_x``, ``x``; trees as nested lists).

        Returns
        -------
        dict
            ``"runs"``: one entry per run in columns (``run``, ``best_value``, ``final_value``,
            ``status``, ``status_message``, ``steps_taken``, ``evaluations``,
            ``steps_to_target``, ``evaluations_to_target``; runs are the ensemble flattened in
            C order, see ``batch_shape``), loadable with ``pandas.DataFrame(d["runs"])``.
            ``"history"``: the records in long form (``step``, ``run``, ``loss`` and each
            state-history field), ``pandas.DataFrame(d["history"])``. Then the settings,
            totals and the success summary. Non-finite numbers become None.
        """
        n = self.n_runs
        status = self.status.reshape(-1)
        runs = {
            "run": list(range(n)),
            "best_value": self.best_value.reshape(-1),
            "final_value": self.final_value.reshape(-1),
            "status": status,
            "status_message": [STATUS_MESSAGES[int(s)] for s in status],
            "steps_taken": self.steps_taken.reshape(-1),
            "evaluations": self.run_evaluations.reshape(-1),
            "steps_to_target": self.steps_to_target.reshape(-1),
            "evaluations_to_target": self.evaluations_to_target.reshape(-1),
        }
        n_rec = self.recorded_steps.size
        history = {
            "step": np.repeat(self.recorded_steps, n),
            "run": np.tile(np.arange(n), n_rec),
            "loss": self.losses.reshape(n_rec, n).reshape(-1),
        }
        for name, values in self.state_history.items():
            # fields are recorded after the start only: the start's row has None
            padded = np.concatenate([np.full((1, n), np.nan), values.reshape(-1, n)])
            history[name] = padded.reshape(-1)
        success = None
        if self.target is not None:
            success = {"successes": self.successes, "runs": n, "rate": self.success_rate,
                       "wilson95": list(wilson_interval(self.successes, self.n_runs))}
        out = {
            "optimizer": self.optimizer,
            "batch_shape": list(self.batch_shape),
            "steps": self.steps,
            "evaluations": self.evaluations,
            "wall_time_s": self.wall_time,
            "target": self.target,
            "gtol": self.gtol,
            "success": success,
            "runs": runs,
            "history": history,
        }
        if points:
            out["best_x"] = self.best_x
            out["x"] = self.x
        return _plain(out)

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 2,
                points: bool = True) -> str:
        """:meth:`to_dict` as JSON text (strict JSON: no NaN); also written to ``path`` if given.

        ``pandas.DataFrame(json.loads(text)["runs"])`` reads the per-run table back.
        """
        text = json.dumps(self.to_dict(points=points), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text
