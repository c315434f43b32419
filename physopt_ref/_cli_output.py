"""Output of the command line: text tables, a progress bar, and plots (matplotlib, optional)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

__all__ = ["Progress", "format_table", "plot_compare", "plot_run", "require_matplotlib"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        if v == 0.0:
            return "0"
        if abs(v) >= 1e5 or abs(v) < 1e-3:
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(v)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with aligned columns (numbers right-aligned)."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) for row in rows) if rows else False
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


class Progress:
    """A one-line progress bar on a stream, drawn only when the stream is a terminal."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty()) if callable(isatty) else False
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self._drawn = False

    def __call__(self, done: int, total: int, label: str = "") -> None:
        if not self.enabled or total <= 0:
            return
        width = 24
        filled = int(width * done / total)
        bar = "#" * filled + "." * (width - filled)
        elapsed = time.perf_counter() - self.t0
        text = f"\r[{bar}] {done}/{total} {elapsed:5.1f}s {label}"[:120]
        self.stream.write(text.ljust(120))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r" + " " * 120 + "\r")
            self.stream.flush()


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


def _gap(losses: np.ndarray, f_min: float | None) -> np.ndarray:
    """Loss above the known minimum (or the loss itself), floored for a log axis."""
    vals = losses - f_min if f_min is not None else losses
    return np.maximum(vals, 1e-16)


def plot_compare(result: Any, path: str) -> None:
    """One panel per problem: the median (over the ensemble) of f - f* against the step."""
    plt = require_matplotlib()
    problems = list(dict.fromkeys(k for k, _ in result.traces))
    if not problems:
        raise ValueError("nothing to plot: no run finished")
    ncol = min(3, len(problems))
    nrow = math.ceil(len(problems) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.0 * ncol, 3.6 * nrow), squeeze=False)
    rows = {(r.problem, r.optimizer): r for r in result.rows}
    for ax, key in zip(axes.flat, problems, strict=False):
        for (pkey, name), trace in result.traces.items():
            if pkey != key:
                continue
            f_min = rows[(pkey, name)].f_min
            curve = np.median(_gap(np.minimum.accumulate(trace.losses, axis=0), f_min),
                              axis=tuple(range(1, trace.losses.ndim)))
            ax.plot(trace.recorded_steps, curve, label=name)
        ax.set_yscale("log")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.set_ylabel("median best f - f*" if rows[(key, name)].f_min is not None else "f")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(problems):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_run(trace: Any, problem: Any, path: str, title: str = "") -> None:
    """Convergence curves of every run; on a 2-D problem also the trajectories over contours."""
    plt = require_matplotlib()
    two_d = getattr(problem, "dim", None) == 2 and trace.xs is not None
    fig, axes = plt.subplots(1, 2 if two_d else 1, figsize=(11 if two_d else 6, 4.5),
                             squeeze=False)
    ax = axes[0, 0]
    f_min = problem.f_min if getattr(problem, "minima", ()) else None
    losses = trace.losses.reshape(trace.losses.shape[0], -1)
    gap = _gap(losses, f_min)
    for k in range(gap.shape[1]):
        ax.plot(trace.recorded_steps, gap[:, k], lw=1, alpha=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("f - f*" if f_min is not None else "f")
    ax.set_title("convergence of every run")
    ax.grid(True, alpha=0.3)
    if two_d:
        ax = axes[0, 1]
        pts = trace.xs.reshape(trace.xs.shape[0], -1, 2)
        lo = np.min(pts.reshape(-1, 2), axis=0)
        hi = np.max(pts.reshape(-1, 2), axis=0)
        for m in problem.minima:
            if m.location is not None:
                lo = np.minimum(lo, m.location)
                hi = np.maximum(hi, m.location)
        pad = 0.1 * np.maximum(hi - lo, 1e-3)
        lo, hi = lo - pad, hi + pad
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
        z = np.asarray(problem.value(np.stack([gx, gy], axis=-1)))
        zz = np.log10(np.maximum(z - (f_min if f_min is not None else z.min()), 1e-12))
        ax.contourf(gx, gy, zz, levels=30, cmap="viridis")
        for k in range(pts.shape[1]):
            ax.plot(pts[:, k, 0], pts[:, k, 1], "-", lw=0.8, color="white", alpha=0.8)
            ax.plot(pts[0, k, 0], pts[0, k, 1], "o", ms=3, color="orange")
            ax.plot(pts[-1, k, 0], pts[-1, k, 1], "x", ms=5, color="red")
        for m in problem.minima:
            if m.location is not None:
                ax.plot(m.location[0], m.location[1], "*", ms=10, color="yellow")
        ax.set_title(f"trajectories on {getattr(problem, 'name', '')}, log10(f - f*)")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    import textwrap

    fig.suptitle(textwrap.fill(title or trace.optimizer, 110), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
