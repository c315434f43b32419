"""``physopt-ref compare``: every registered optimizer on every problem, and the headline results.

The table has one row per (problem, optimizer): the best value over the ensemble, the median of
the per-run best values, the success rate (value ``<= f_min + target_tol``), the median steps
to the target among the successful runs and the wall time of the ensemble run. The headline
comparisons reproduce, in small, the claims of the papers (with their published numbers next to
ours); each appears once the optimizers and problems it needs are installed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._base import REGISTRY, get_optimizer, registered_names
from ._cli_settings import (
    SETTINGS,
    ProblemSetting,
    build_problem,
    hyperparameters_for,
    starts_for,
)
from ._run import Trace, run

__all__ = ["CompareResult", "Headline", "Row", "compare"]


@dataclass
class Row:
    """One cell of the comparison: an optimizer on a problem."""

    problem: str
    optimizer: str
    hyperparameters: dict[str, Any]
    tuned: bool
    ensemble: int
    steps: int
    f_min: float | None
    best: float
    median_best: float
    success_rate: float
    median_steps_to_target: float
    time_s: float
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if callable(v):
                return repr(v)
            return v

        out = {k: clean(v) for k, v in self.__dict__.items() if k != "hyperparameters"}
        out["hyperparameters"] = {k: clean(v) for k, v in self.hyperparameters.items()}
        return out


@dataclass
class Headline:
    """A headline comparison: what we measured next to the paper's number."""

    title: str
    measured: str
    paper: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "measured": self.measured, "paper": self.paper, **self.data}


@dataclass
class CompareResult:
    """Rows, headlines, the traces behind them, and what could not run."""

    rows: list[Row]
    headlines: list[Headline]
    traces: dict[tuple[str, str], Trace]
    skipped: list[str]
    settings: dict[str, Any]
    wall_time: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "rows": [r.as_dict() for r in self.rows],
            "headlines": [h.as_dict() for h in self.headlines],
            "skipped": self.skipped,
            "wall_time_s": self.wall_time,
        }


def _ensemble_x0(xp: Any, dtype: Any, problem: Any, setting: ProblemSetting, n: int, seed: int):
    starts = starts_for(problem, setting, n, seed)
    return xp.asarray(starts, dtype=dtype)


def _row_from_trace(
    problem_key: str, name: str, hp: dict[str, Any], tuned: bool, trace: Trace,
    f_min: float | None, steps: int,
) -> Row:
    best = trace.best_value
    finite = best[np.isfinite(best)]
    reached = trace.steps_to_target[trace.steps_to_target >= 0]
    return Row(
        problem=problem_key,
        optimizer=name,
        hyperparameters=hp,
        tuned=tuned,
        ensemble=int(best.size),
        steps=steps,
        f_min=f_min,
        best=float(np.min(finite)) if finite.size else float("nan"),
        median_best=float(np.median(finite)) if finite.size else float("nan"),
        success_rate=trace.success_rate,
        median_steps_to_target=float(np.median(reached)) if reached.size else float("nan"),
        time_s=trace.wall_time,
    )


def compare(
    *,
    xp: Any,
    dtype: Any = None,
    full: bool = False,
    seed: int = 0,
    ensemble: int | None = None,
    steps: int | None = None,
    optimizers: list[str] | None = None,
    problems: list[str] | None = None,
    headlines: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
) -> CompareResult:
    """Run the comparison table and the headline experiments.

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
    ensemble, steps : int, optional
        Override every problem's ensemble size / step budget.
    optimizers, problems : list of str, optional
        Restrict the table (default: every registered optimizer, every problem).
    headlines : bool
        Also run the headline comparisons.
    progress : callable, optional
        ``progress(done, total, label)`` after each cell.
    """
    t0 = time.perf_counter()
    dtype = xp.float64 if dtype is None else dtype
    names = registered_names() if optimizers is None else list(optimizers)
    for n in names:
        if n not in REGISTRY:
            raise ValueError(f"unknown optimizer {n!r}; registered: {registered_names()}")
    keys = list(SETTINGS) if problems is None else list(problems)
    for k in keys:
        if k not in SETTINGS:
            raise ValueError(f"unknown problem {k!r}; the compare problems are {list(SETTINGS)}")

    built: dict[str, Any] = {}
    skipped: list[str] = []
    for key in keys:
        try:
            built[key] = build_problem(SETTINGS[key])
        except LookupError:
            skipped.append(f"problem {key}: not available in this version")

    rows: list[Row] = []
    traces: dict[tuple[str, str], Trace] = {}
    total = len(built) * len(names)
    done = 0
    for key, problem in built.items():
        setting = SETTINGS[key]
        n_runs = ensemble or (setting.full_ensemble if full else setting.ensemble)
        n_steps = steps or (setting.full_steps if full else setting.steps)
        x0 = _ensemble_x0(xp, dtype, problem, setting, n_runs, seed)
        f_min = problem.f_min if getattr(problem, "minima", ()) else None
        target = None if f_min is None else f_min + setting.target_tol
        for name in names:
            hp, tuned = hyperparameters_for(name, setting, seed)
            try:
                opt = get_optimizer(name, **hp)
                trace = run(opt, problem, x0, n_steps, target=target,
                            record_every=max(1, n_steps // 200), check_every=50)
            except Exception as exc:  # a cell that fails is reported, not fatal
                rows.append(Row(key, name, hp, tuned, n_runs, n_steps, f_min, math.nan,
                                math.nan, math.nan, math.nan, 0.0,
                                error=f"{type(exc).__name__}: {exc}"))
            else:
                traces[(key, name)] = trace
                rows.append(_row_from_trace(key, name, hp, tuned, trace, f_min, n_steps))
            done += 1
            if progress is not None:
                progress(done, total, f"{name} on {key}")

    result = CompareResult(
        rows=rows, headlines=[], traces=traces, skipped=skipped,
        settings={"full": full, "seed": seed, "ensemble": ensemble, "steps": steps,
                  "optimizers": names, "problems": keys},
    )
    if headlines:
        result.headlines = _headlines(result, built, xp, dtype, full, seed)
    result.wall_time = time.perf_counter() - t0
    return result


# ---------------------------------------------------------------------------------------------
# Headline comparisons


def _row(result: CompareResult, problem: str, optimizer: str) -> Row | None:
    for r in result.rows:
        if r.problem == problem and r.optimizer == optimizer and not r.error:
            return r
    return None


def _nearest_minimum(problem: Any, points: np.ndarray) -> np.ndarray:
    """Index of the nearest known minimum per point (-1 where none is known).

    Uses ``problem.minimizers`` where the problem has them (the two-basin problem orders them
    by basin, c1 first), else the locations of ``problem.minima``.
    """
    if getattr(problem, "minimizers", None) is not None:
        locs = list(np.asarray(problem.minimizers))
    else:
        locs = [m.location for m in problem.minima if m.location is not None]
    if not locs:
        return np.full(points.shape[:-1], -1)
    d = np.stack([np.linalg.norm(points - np.asarray(loc), axis=-1) for loc in locs], axis=-1)
    return np.argmin(d, axis=-1)


def _headlines(
    result: CompareResult, built: dict[str, Any], xp: Any, dtype: Any, full: bool, seed: int
) -> list[Headline]:
    from .backends import to_numpy

    out: list[Headline] = []

    # 1. BBI vs heavy ball on Ackley b = 0.02 (ECD Sec. 4.1), at the paper's 30 000 steps in
    #    both modes (the quick mode uses fewer starts, not fewer steps).
    if "ackley_b0.02" in built and "bbi" in REGISTRY:
        out.append(_ackley_headline(built["ackley_b0.02"], xp, dtype, full, seed))

    # 2. BBI on Zakharov (ECD Sec. 4.2): the paper's run, 10 000 steps with no target, so that
    #    BBI stops by itself once V = F - v0 <= eps (the table's row stops at f* + 1e-10).
    if "zakharov" in built and "bbi" in REGISTRY:
        out.append(_zakharov_headline(built["zakharov"], xp, dtype, seed))

    # 3. The two-basin mixing ratio (ECD Sec. 4.3).
    if "two_basin" in built and "bbi" in REGISTRY:
        problem = built["two_basin"]
        setting = SETTINGS["two_basin"]
        n = 2000 if full else 64
        n_steps = 25000 if full else 4000
        hp, _ = hyperparameters_for("bbi", setting, seed)
        x0 = xp.asarray(np.broadcast_to(problem.x0, (n, 2)).copy(), dtype=dtype)
        try:
            trace = run(get_optimizer("bbi", **hp), problem, x0, n_steps,
                        target=float(np.max(problem.minimum_values)) + 1e-3, check_every=100,
                        record_every=n_steps)
            basin = _nearest_minimum(problem, np.asarray(to_numpy(trace.x)))
            settled = trace.reached_target
            n1 = int(np.sum(settled & (basin == 0)))
            n2 = int(np.sum(settled & (basin == 1)))
            ratio = n1 / n2 if n2 else float("inf")
            out.append(Headline(
                "Two-basin visits n1/n2 (BBI from (10, -10))",
                f"n1/n2 = {n1}/{n2} = {ratio:.3g} over {int(np.sum(settled))} settled of {n} runs",
                f"1.7248 over 2000 runs; mixing prediction sqrt(det H2/det H1) = "
                f"{getattr(problem, 'mixing_ratio', 1.9259):.4f}",
                {"n1": n1, "n2": n2, "ratio": ratio if math.isfinite(ratio) else None},
            ))
        except Exception as exc:
            result.skipped.append(f"two-basin headline: {type(exc).__name__}: {exc}")

    # 4. Both solutions of the multi-solution PDEs.
    for key in ("bratu_1d", "gelfand_disk", "ecd_pde"):
        if key not in built:
            continue
        problem = built[key]
        locs = [m for m in problem.minima if m.location is not None]
        if len(locs) < 2:
            continue
        found: dict[str, set[int]] = {}
        for (pkey, name), trace in result.traces.items():
            if pkey != key:
                continue
            pts = np.asarray(to_numpy(trace.best_x))
            idx = _nearest_minimum(problem, pts)
            ok = trace.reached_target
            found[name] = {int(i) for i in idx[ok]}
        best = max(found.items(), key=lambda kv: len(kv[1]), default=(None, set()))
        by = ", ".join(f"{n}: {len(s)}" for n, s in sorted(found.items()))
        out.append(Headline(
            f"Both solutions of {key} found (zero-residual minima reached, by optimizer)",
            f"{len(best[1])} of {len(locs)} solutions found ({by})",
            "ECD Sec. 4.4: BBI runs find u* and a second, negative solution"
            if key == "ecd_pde" else "two known solutions (spec problems.md §2, §4.2)",
            {"solutions_found": {n: sorted(s) for n, s in found.items()}},
        ))

    # 5. Lennard-Jones N = 13 with ΔV tuning. From random starts BBI keeps the start's energy
    #    (often > 0, core overlaps) and rarely reaches E* in the quick budget: the line shows
    #    the median and the other methods next to it rather than only the best run.
    bbi = _row(result, "lennard_jones13", "bbi")
    if bbi:
        others = [r for r in (_row(result, "lennard_jones13", n) for n in ("ecdsep", "adam"))
                  if r]
        extra = "".join(f"; {r.optimizer} best {r.best:.4f}, median {r.median_best:.4g}, "
                        f"{r.success_rate:.0%}" for r in others)
        out.append(Headline(
            "Lennard-Jones N = 13 global minimum, BBI with ΔV tuning (negative energy)",
            f"BBI best E = {bbi.best:.6f}, median {bbi.median_best:.4g} ({bbi.success_rate:.0%} "
            f"of {bbi.ensemble} runs within 1e-4 of E*){extra}",
            "E* = -44.326801 (Cambridge Cluster Database, Wales & Doye 1997)",
            {"best": bbi.best, "success": bbi.success_rate},
        ))

    # 6. CoolMomentum vs constant momentum under gradient noise.
    if "coolmomentum" in REGISTRY and "quadratic" in built:
        out.append(_cooling_under_noise(built["quadratic"], xp, dtype, full, seed))
    return out


#: Heavy ball tuned by the ECD notebook over lr in [1e-5, 0.5], momentum in [0, 1]: lr 0.1993,
#: momentum 0.5634 (spec ecd.md §4.1, "GDM baseline"). The issue asks for exactly this baseline.
ACKLEY_HEAVY_BALL = {"lr": 0.1993, "momentum": 0.5634}


def _ackley_headline(problem: Any, xp: Any, dtype: Any, full: bool, seed: int) -> Headline:
    """The notebook's protocol: a start succeeds when one of up to 5 BBI runs reaches f < 5e-4."""
    setting = SETTINGS["ackley_b0.02"]
    n, runs_per_start, n_steps = (100 if full else 24), 5, 30000
    starts = starts_for(problem, setting, n, seed)
    target = problem.f_min + setting.target_tol
    hp, _ = hyperparameters_for("bbi", setting, seed)
    kw = {"target": target, "check_every": 500, "record_every": n_steps}
    x_bbi = xp.asarray(np.repeat(starts[:, None, :], runs_per_start, axis=1), dtype=dtype)
    tb = run(get_optimizer("bbi", **hp), problem, x_bbi, n_steps, batch_ndim=2, **kw)
    x_hb = xp.asarray(starts, dtype=dtype)
    th = run(get_optimizer("heavy_ball", **ACKLEY_HEAVY_BALL), problem, x_hb, n_steps, **kw)
    kb = int(np.sum(np.any(tb.reached_target, axis=1)))
    single = float(np.mean(tb.reached_target))
    kh = int(np.sum(th.reached_target))
    return Headline(
        "BBI vs heavy ball on Ackley (b = 0.02, starts U[-4,4]², success f < 5e-4)",
        f"BBI {kb}/{n} starts ({runs_per_start} runs each; {single:.0%} of single runs) vs "
        f"heavy ball (lr 0.1993, momentum 0.5634) {kh}/{n}, {n_steps} steps",
        "BBI 83/100 (90% in the text; up to 5 runs per start) vs GDM 0/100, 30 000 steps "
        "(gbdl/BBI ackley.ipynb)",
        {"bbi_success": kb / n, "bbi_single_run_success": single,
         "heavy_ball_success": kh / n, "starts": n},
    )


def _zakharov_headline(problem: Any, xp: Any, dtype: Any, seed: int) -> Headline:
    """One BBI run from (1, ..., 1) with the notebook's settings, 10 000 steps, no target."""
    from .backends import to_numpy

    setting = SETTINGS["zakharov"]
    hp, _ = hyperparameters_for("bbi", setting, seed)
    x0 = xp.asarray(np.asarray(problem.x0, dtype=np.float64)[None, :], dtype=dtype)
    trace = run(get_optimizer("bbi", **hp), problem, x0, 10000, record_every=10000)
    hb_hp = setting.hyper.get("heavy_ball", {})
    th = run(get_optimizer("heavy_ball", **hb_hp), problem, x0, 10000, record_every=10000)
    updates = int(np.asarray(to_numpy(trace.state.iteration)).reshape(-1)[0])
    return Headline(
        "BBI on Zakharov (n = 10, from f(1,...,1) = 572680.3)",
        f"BBI best {float(trace.best_value[0]):.5g} ({updates} updates before it stopped at "
        f"V <= eps, 10 000 steps at most); heavy ball {float(th.best_value[0]):.3g}",
        "BBI 9.9998e-23 (stops at v0 = 1e-22) in 10 000 steps; GDM 4.44e-12",
        {"bbi_best": float(trace.best_value[0]), "bbi_updates": updates,
         "heavy_ball_best": float(th.best_value[0])},
    )


def _cooling_under_noise(problem: Any, xp: Any, dtype: Any, full: bool, seed: int) -> Headline:
    """CoolMomentum (ρ cooled from ρ₀ to 0) vs constant ρ₀, same noisy gradients.

    Constant momentum is the same update with ρ fixed: ``heavy_ball(lr = lr(1+ρ₀)/2,
    momentum = ρ₀)`` (CoolMomentum spec §a.2). Under noise of variance σ², the stationary
    ⟨Δθ²⟩ grows like (1+ρ)/(1−ρ) (spec §a.5), so cooling ends at a lower loss.
    """
    n = 64 if full else 16
    n_steps = 4000 if full else 1000
    lr, rho0, sigma = 0.01, 0.95, 1.0
    x0 = xp.asarray(np.broadcast_to(problem.x0, (n, problem.dim)).copy(), dtype=dtype)
    cool = get_optimizer("coolmomentum", lr=lr, rho0=rho0, cool_steps=n_steps)
    const = get_optimizer("heavy_ball", lr=lr * (1.0 + rho0) / 2.0, momentum=rho0)
    kw = {"grad_noise": sigma, "noise_seed": seed, "record_every": n_steps}
    tc = run(cool, problem, x0, n_steps, **kw)
    tk = run(const, problem, x0, n_steps, **kw)
    f_min = problem.f_min
    mc = float(np.mean(tc.final_value) - f_min)
    mk = float(np.mean(tk.final_value) - f_min)
    return Headline(
        f"CoolMomentum vs constant momentum under gradient noise (σ = {sigma:g}, quadratic)",
        f"final f - f* (mean of {n}): cooled {mc:.3g} vs constant ρ = {rho0:g} {mk:.3g} "
        f"(ratio {mk / mc if mc > 0 else float('inf'):.3g})",
        "Borysenko & Byshkin 2021: cooling the momentum = simulated annealing, lower final loss",
        {"cooled": mc, "constant": mk},
    )
