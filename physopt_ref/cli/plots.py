"""Figures of the command line (matplotlib, an optional dependency imported when needed).

- :func:`plot_compare`: the runtime ECDF of ``compare`` (the COCO/BBOB convention): for each
  optimizer, the fraction of runs that reached the target within at most ``k`` objective
  evaluations, against ``k`` on a log axis; all problems pooled (each weighted equally), then
  one panel per problem.
- :func:`plot_run`: every run's convergence with the median best-so-far curve and the target
  line; on a 2-D problem also the trajectories over the landscape, with a colour bar.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from typing import Any

import numpy as np

from physopt_ref.cli.compare import CompareResult, ecdf_by_optimizer
from physopt_ref.cli.output import format_interval

__all__ = [
    "compare_figure",
    "plot_compare",
    "plot_run",
    "require_matplotlib",
    "run_figure",
    "run_title",
]


def require_matplotlib() -> Any:
    """Import matplotlib with the Agg backend, or raise ImportError saying how to install it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            "--plot needs matplotlib; install it with: pip install 'physopt_ref[plot]'"
        ) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _styles(names: list[str]) -> dict[str, dict[str, Any]]:
    """A colour and line style per optimizer (tab10 colours, then dashed)."""
    plt = require_matplotlib()
    colors = plt.get_cmap("tab10").colors
    return {n: {"color": colors[i % 10], "linestyle": "-" if i < 10 else "--"}
            for i, n in enumerate(names)}


def _draw_ecdf(ax: Any, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], budget: int,
               styles: Mapping[str, dict[str, Any]], title: str) -> None:
    for name, (x, y) in curves.items():
        xs = np.concatenate([[1], x, [budget]]).astype(float)
        ys = np.concatenate([[0.0], y, [y[-1] if y.size else 0.0]])
        ax.step(xs, ys, where="post", lw=1.4, label=name, **styles[name])
        ax.plot([budget], [ys[-1]], marker="x", ms=6, color=styles[name]["color"])
    ax.set_xscale("log")
    ax.set_xlim(1, budget * 1.1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("objective evaluations")
    ax.set_ylabel("fraction of runs at the target")
    ax.grid(True, which="major", alpha=0.3)


def compare_figure(result: CompareResult) -> Any:
    """The runtime ECDF of every optimizer: all problems pooled, then one panel per problem.

    The curve of an optimizer on a set of problems is :func:`physopt_ref.evaluations_ecdf` of
    its runs; runs that never reached the target never count, so a curve ends (cross, at the
    budget) at the success rate. Problems without a known minimum have no target and no panel.
    """
    plt = require_matplotlib()
    rows = [r for r in result.rows if r.f_min is not None]
    problems = list(dict.fromkeys(r.problem for r in rows))
    if not problems:
        raise ValueError("nothing to plot: no problem with a target")
    names = list(dict.fromkeys(r.optimizer for r in rows))
    styles = _styles(names)
    panels = len(problems) + 1
    ncol = min(3, panels)
    nrow = math.ceil(panels / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.0 * ncol, 3.7 * nrow), squeeze=False)
    budget = max(r.evals for r in rows)
    _draw_ecdf(axes.flat[0], ecdf_by_optimizer(result), budget, styles,
               f"all {len(problems)} problems (each weighted equally)")
    for ax, key in zip(list(axes.flat)[1:], problems, strict=False):
        sub = CompareResult([r for r in rows if r.problem == key], result.traces, {}, {})
        _draw_ecdf(ax, ecdf_by_optimizer(sub), max(r.evals for r in sub.rows), styles, key)
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), frameon=False)
    fig.suptitle("Runtime ECDF: runs that reached f* + tolerance within k evaluations "
                 "(x: the budget)", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    return fig


def plot_compare(result: CompareResult, path: str) -> None:
    """Write :func:`compare_figure` to ``path`` (PNG, PDF, SVG by extension)."""
    _save(compare_figure(result), path)


def _save(fig: Any, path: str) -> None:
    plt = require_matplotlib()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _hp_text(hp: Mapping[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if callable(v):
            return type(v).__name__
        return str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in hp.items() if k != "seed")


def run_title(name: str, hp: Mapping[str, Any], problem: str, trace: Any) -> str:
    """``name on problem`` with the hyperparameters, the budget and the success interval."""
    n = trace.n_runs
    line2 = f"{n} run{'s' * (n != 1)}, {trace.steps} steps ({trace.evaluations} evaluations)"
    if trace.target is not None:
        line2 += (f"; target f <= {trace.target:.6g} reached by "
                  f"{format_interval(trace.successes, n, trace.success_interval)}")
    hp_text = _hp_text(hp)
    return f"{name} on {problem}" + (f" ({hp_text})" if hp_text else "") + "\n" + line2


def _convergence(ax: Any, trace: Any, f_min: float | None) -> None:
    """Every run (thin), the median best-so-far (thick) and the target (dashed)."""
    losses = trace.losses.reshape(trace.losses.shape[0], -1)
    shift = f_min if f_min is not None else 0.0
    gap = losses - shift
    log = f_min is not None or bool(np.all(gap[np.isfinite(gap)] > 0))
    floor = 1e-16 if log else -np.inf
    steps = trace.recorded_steps
    for k in range(gap.shape[1]):
        ax.plot(steps, np.maximum(gap[:, k], floor), lw=0.8, alpha=0.45)
    best = np.median(np.minimum.accumulate(gap, axis=0), axis=1)
    ax.plot(steps, np.maximum(best, floor), lw=2.2, color="black", label="median best so far")
    if trace.target is not None:
        ax.axhline(max(trace.target - shift, floor), color="red", ls="--", lw=1.2,
                   label="target")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("f - f*" if f_min is not None else "f")
    ax.set_title("convergence of every run", fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(True, alpha=0.3)


def _landscape(fig: Any, ax: Any, trace: Any, problem: Any, f_min: float | None) -> None:
    """Trajectories over log10(f - f*) of a 2-D problem, with a colour bar."""
    pts = trace.xs.reshape(trace.xs.shape[0], -1, 2)
    lo = np.min(pts.reshape(-1, 2), axis=0)
    hi = np.max(pts.reshape(-1, 2), axis=0)
    for m in problem.minima:
        if m.location is not None:
            lo, hi = np.minimum(lo, m.location), np.maximum(hi, m.location)
    pad = 0.1 * np.maximum(hi - lo, 1e-3)
    lo, hi = lo - pad, hi + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    z = np.asarray(problem.value(np.stack([gx, gy], axis=-1)))
    zz = np.log10(np.maximum(z - (f_min if f_min is not None else z.min()), 1e-12))
    filled = ax.contourf(gx, gy, zz, levels=30, cmap="viridis")
    fig.colorbar(filled, ax=ax, label="log10(f - f*)" if f_min is not None else
                 "log10(f - min f on the grid)")
    for k in range(pts.shape[1]):
        ax.plot(pts[:, k, 0], pts[:, k, 1], "-", lw=0.8, color="white", alpha=0.8)
        ax.plot(pts[0, k, 0], pts[0, k, 1], "o", ms=3, color="orange")
        ax.plot(pts[-1, k, 0], pts[-1, k, 1], "x", ms=5, color="red")
    for m in problem.minima:
        if m.location is not None:
            ax.plot(m.location[0], m.location[1], "*", ms=10, color="yellow")
    ax.set_title(f"trajectories on {problem.name} (o start, x end, * minima)", fontsize=10)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")


def run_figure(trace: Any, problem: Any, title: str = "") -> Any:
    """Convergence of every run; on a 2-D problem also the trajectories over the landscape."""
    plt = require_matplotlib()
    two_d = problem.dim == 2 and trace.xs is not None
    fig, axes = plt.subplots(1, 2 if two_d else 1, figsize=(12 if two_d else 6.5, 4.8),
                             squeeze=False)
    f_min = problem.f_min if problem.minima else None
    _convergence(axes[0, 0], trace, f_min)
    if two_d:
        _landscape(fig, axes[0, 1], trace, problem, f_min)
    text = title or trace.optimizer
    fig.suptitle("\n".join(textwrap.fill(t, 120) for t in text.split("\n")), fontsize=10)
    fig.tight_layout()
    return fig


def plot_run(trace: Any, problem: Any, path: str, title: str = "") -> None:
    """Write :func:`run_figure` to ``path`` (PNG, PDF, SVG by extension)."""
    _save(run_figure(trace, problem, title), path)
