"""Text output of the command line: tables, intervals, JSON, a progress bar, the compare report."""

from __future__ import annotations

import json
import math
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

from physopt_ref.cli.compare import CompareResult, tuning_budgets
from physopt_ref.cli.fingerprint import fingerprint_text

__all__ = [
    "Progress",
    "compare_report",
    "format_interval",
    "format_table",
    "jsonable",
    "write_json",
]


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


def format_interval(successes: int, runs: int, interval: Sequence[float]) -> str:
    """``k/n (lo-hi%)``: a success count with its (95%) interval in percent."""
    low, high = interval
    return f"{successes}/{runs} ({100 * low:.0f}-{100 * high:.0f}%)"


def jsonable(v: Any) -> Any:
    """``v`` with NumPy scalars / arrays as Python numbers / lists, NaN as None, else repr."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, bool | int | str) or v is None:
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, np.generic):
        return jsonable(v.item())
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    return repr(v)


def write_json(doc: Any, out: TextIO) -> int:
    """Write ``doc`` as indented JSON and a newline; returns exit status 0."""
    json.dump(jsonable(doc), out, indent=2)
    out.write("\n")
    return 0


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


_FOOTNOTE = (
    "evals: objective evaluations per run (value and gradient; the start counts as one, each "
    "step as one more). success: runs with value <= f* + the problem's tolerance, with the 95% "
    "Wilson interval. evals to target: median over the successful runs. tuned: whether the "
    "row's hyperparameters were tuned for this problem, and how many settings were tried ('?': "
    "not recorded); the grids tuned here ran on seeds 1000 onwards, disjoint from the table's "
    "starts. note 'no progress': no run went below its start."
)


_CHAOTIC = (
    "Rows of chaotic runs (bounces, jitter, noise, rough landscapes) match another machine's "
    "digit for digit only where these match; docs/reproducibility.md lists them."
)


def _tuned_cell(tuned: bool, tried: int | None) -> str:
    if not tuned:
        return "no"
    return f"yes ({'?' if tried is None else tried})"


def _table(result: CompareResult) -> str:
    headers = ["problem", "optimizer", "runs", "evals", "best f", "median best",
               "success (95% CI)", "evals to target", "time s", "tuned (tries)", "note"]
    rows = []
    for r in result.rows:
        ok = not r.error and math.isfinite(r.success_rate)
        success = format_interval(r.successes, r.ensemble, r.success_ci) if ok else "-"
        note = r.error or ("no progress" if r.no_progress else "")
        rows.append([r.problem, r.optimizer, r.ensemble, r.evals, r.best, r.median_best,
                     success, r.median_evals_to_target, r.time_s,
                     _tuned_cell(r.tuned, r.tried), note])
    return format_table(headers, rows)


def _budget_text(result: CompareResult) -> str:
    parts = []
    for name, (total, n_known, n_unknown) in tuning_budgets(result).items():
        if n_known == n_unknown == 0:
            parts.append(f"{name} untuned")
            continue
        known = f"{total} in {n_known} row{'s' * (n_known != 1)}" if n_known else ""
        unknown = f"? in {n_unknown} row{'s' * (n_unknown != 1)}" if n_unknown else ""
        parts.append(f"{name} {' + '.join(p for p in (known, unknown) if p)}")
    text = ("Tuning budget, settings tried per method (summed over its tuned rows; '?': not "
            "recorded): " + "; ".join(parts) + ".")
    return textwrap.fill(text, 100)


def compare_report(result: CompareResult, title: str) -> str:
    """The text of ``compare``: title, numerical fingerprint, table, footnote, tuning budgets,
    headlines, skipped."""
    head = [title]
    if result.fingerprint:
        head += [fingerprint_text(result.fingerprint), textwrap.fill(_CHAOTIC, 100)]
    lines = [*head, "", _table(result), "", textwrap.fill(_FOOTNOTE, 100), "",
             _budget_text(result)]
    if result.headlines:
        lines += ["", "Headline comparisons (ours vs the paper; intervals are 95% Wilson):"]
        for h in result.headlines:
            lines.append(f"- {h.title}\n    measured: {h.measured}\n    paper:    {h.paper}")
    lines += [f"(skipped: {s})" for s in result.skipped]
    return "\n".join(lines)
