"""The report of ``physopt-ref run``: a text summary that stays short for large ensembles, and
JSON written as a stream (arrays in slices), so neither grows with more than the records kept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TextIO

import numpy as np

from physopt_ref.cli.output import jsonable
from physopt_ref.runner.trace import STATUS_MESSAGES

__all__ = ["PER_RUN_LIMIT", "run_lines", "write_json_stream"]

#: Ensembles up to this size get one line per run; larger ones a summary (``--per-run``: all).
PER_RUN_LIMIT = 20
#: How many of the best runs the summary lists.
BEST_RUNS = 5
#: Numbers per slice when an array is written.
_SLICE = 8192


def _run_line(k: int, best: np.ndarray, status: np.ndarray, ett: np.ndarray) -> str:
    reach = f", target after {ett[k]} evaluations" if ett[k] >= 0 else ""
    return f"  run {k}: best f = {best[k]:.10g} ({STATUS_MESSAGES[int(status[k])]}{reach})"


def run_lines(trace: Any, per_run: bool) -> list[str]:
    """One line per run (``per_run`` or a small ensemble), else the best runs (the quantiles,
    the success count with its 95% interval and the statuses are in ``Trace.summary``)."""
    best = trace.best_value.ravel()
    status = trace.status.ravel()
    ett = trace.evaluations_to_target.ravel()
    if per_run or best.size <= PER_RUN_LIMIT:
        return [_run_line(k, best, status, ett) for k in range(best.size)]
    finite = np.count_nonzero(np.isfinite(best))
    lines = [f"  {best.size} runs: the summary above (one line per run with --per-run)"]
    if finite < best.size:
        lines.append(f"  {best.size - finite} runs have no finite best value")
    order = np.argsort(np.where(np.isnan(best), np.inf, best), kind="stable")[:BEST_RUNS]
    lines.append(f"  the {len(order)} best runs:")
    lines.extend(_run_line(int(k), best, status, ett) for k in order)
    return lines


def _write(value: Any, out: TextIO, indent: str) -> None:
    inner = indent + "  "
    if isinstance(value, Mapping):
        if not value:
            out.write("{}")
            return
        out.write("{")
        for i, (key, item) in enumerate(value.items()):
            out.write(("," if i else "") + f"\n{inner}{json.dumps(str(key))}: ")
            _write(item, out, inner)
        out.write(f"\n{indent}}}")
    elif isinstance(value, np.ndarray) and value.ndim >= 1 and value.size > _SLICE:
        out.write("[")
        if value.ndim == 1:
            for start in range(0, value.size, _SLICE):
                part = json.dumps(jsonable(value[start:start + _SLICE]))[1:-1]
                out.write(("," if start else "") + part)
        else:
            for i, row in enumerate(value):
                out.write(("," if i else "") + f"\n{inner}")
                _write(row, out, inner)
            out.write(f"\n{indent}")
        out.write("]")
    else:
        out.write(json.dumps(jsonable(value)))


def write_json_stream(doc: Mapping[str, Any], out: TextIO) -> int:
    """Write ``doc`` as JSON (the data of :func:`~physopt_ref.cli.output.write_json`), large
    arrays a slice at a time; returns exit status 0."""
    _write(doc, out, "")
    out.write("\n")
    return 0
