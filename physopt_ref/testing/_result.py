"""What a check returns: :class:`CheckResult` (property, measured vs allowed, the input), the
exception :class:`PropertyError`, and :class:`Report` (one row per property, a table).

A check measures one number and compares it with what the property allows, e.g. "the largest
error over tolerance between ensemble members and single runs: 0.31 <= 1". The *margin* is how
far inside the bound the measurement lies (``allowed - measured`` for ``<``/``<=``,
``measured - allowed`` for ``>``/``>=``): negative when the property fails. A check of several
conditions reports the tightest one (a failing one first).
"""

from __future__ import annotations

import builtins
import math
import unittest
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = ["CheckResult", "Condition", "PropertyError", "Report", "combine"]

_RELATIONS = {
    "<": lambda m, a: m < a,
    "<=": lambda m, a: m <= a,
    ">": lambda m, a: m > a,
    ">=": lambda m, a: m >= a,
}


@dataclass(frozen=True)
class Condition:
    """One measured quantity and its bound: ``measured <relation> allowed``.

    ``detail`` says where the measurement was taken (step, leaf, ensemble member, ...).
    """

    quantity: str
    measured: float
    allowed: float
    relation: str = "<="
    detail: str = ""

    def __post_init__(self) -> None:
        if self.relation not in _RELATIONS:
            raise ValueError(f"relation must be one of {sorted(_RELATIONS)}, got {self.relation!r}")

    @property
    def passed(self) -> bool:
        """Whether the bound holds (a NaN measurement never passes)."""
        m = float(self.measured)
        return not math.isnan(m) and bool(_RELATIONS[self.relation](m, float(self.allowed)))

    @property
    def margin(self) -> float:
        """How far inside the bound: negative when it fails (NaN counts as failing by inf)."""
        m, a = float(self.measured), float(self.allowed)
        if math.isnan(m):
            return -math.inf
        return a - m if self.relation in ("<", "<=") else m - a

    @property
    def slack(self) -> float:
        """The margin relative to the bound's scale (to rank conditions of different units).

        A count of violations that is zero (``0 <= 0``) has nothing to rank: ``inf``.
        """
        m, a = float(self.measured), float(self.allowed)
        if m == 0.0 and a == 0.0 and self.passed:
            return math.inf
        scale = max(abs(a), abs(m), 1e-300)
        return self.margin / scale if math.isfinite(self.margin) else self.margin


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one property check.

    Attributes
    ----------
    property : str
        The property's name (``"purity"``, ``"ensemble = single runs"``, ...).
    condition : Condition or None
        The tightest condition measured (the failing one when the check fails); None when the
        check was skipped.
    example : mapping
        The input that was checked (the counterexample when the check fails; after a
        hypothesis search, the shrunk, minimal one).
    skip_reason : str or None
        Why the check did not run (an optional package is missing, say).
    values : mapping
        Further measured outputs a caller may assert on (the final state, say).
    examples_run : int
        How many inputs were checked (1 for a single check; the search's count otherwise).
    """

    property: str
    condition: Condition | None
    example: Mapping[str, Any] = field(default_factory=dict)
    skip_reason: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    examples_run: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "example", MappingProxyType(dict(self.example)))
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    @classmethod
    def skipped(cls, prop: str, reason: str,
                example: Mapping[str, Any] | None = None) -> CheckResult:
        """A check that could not run, with the reason."""
        return cls(prop, None, example or {}, skip_reason=reason, examples_run=0)

    @builtins.property
    def status(self) -> str:
        """``"pass"``, ``"FAIL"`` or ``"skip"``."""
        if self.condition is None:
            return "skip"
        return "pass" if self.condition.passed else "FAIL"

    @builtins.property
    def passed(self) -> bool:
        """True when the property holds (a skipped check has not passed)."""
        return self.condition is not None and self.condition.passed

    @builtins.property
    def failed(self) -> bool:
        return self.condition is not None and not self.condition.passed

    @builtins.property
    def margin(self) -> float | None:
        return None if self.condition is None else self.condition.margin

    def with_example(self, example: Mapping[str, Any], examples_run: int | None = None):
        """The same result for another description of the input."""
        return replace(self, example=example,
                       examples_run=self.examples_run if examples_run is None else examples_run)

    def message(self) -> str:
        """A one-paragraph account: which property, measured vs allowed, where, on what input."""
        if self.condition is None:
            return f"property {self.property!r} skipped: {self.skip_reason}"
        c = self.condition
        verdict = "holds" if c.passed else "FAILED"
        text = (f"property {self.property!r} {verdict}: {c.quantity} = {_fmt(c.measured)}, "
                f"allowed {c.relation} {_fmt(c.allowed)} (margin {_fmt(c.margin)})")
        if c.detail:
            text += f"; {c.detail}"
        if self.example:
            label = "counterexample" if not c.passed else "input"
            text += f"; {label}: {format_example(self.example)}"
        return text

    def raise_if_failed(self) -> CheckResult:
        """Raise :class:`PropertyError` when the property fails, ``unittest.SkipTest`` (which
        pytest and unittest report as a skip) when the check was skipped; else return self."""
        if self.condition is None:
            raise unittest.SkipTest(self.message())
        if not self.condition.passed:
            raise PropertyError(self)
        return self

    def __str__(self) -> str:
        return self.message()


class PropertyError(AssertionError):
    """A property does not hold; ``.result`` is the :class:`CheckResult` with the margin."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.message())
        self.result = result


def combine(prop: str, conditions: Iterable[Condition], example: Mapping[str, Any] | None = None,
            values: Mapping[str, Any] | None = None) -> CheckResult:
    """One result for several conditions: the first failing one, else the tightest one."""
    conditions = list(conditions)
    if not conditions:
        raise ValueError("combine needs at least one condition")
    failing = [c for c in conditions if not c.passed]
    worst = failing[0] if failing else min(conditions, key=lambda c: c.slack)
    return CheckResult(prop, worst, example or {}, values=values or {})


def format_example(example: Mapping[str, Any], width: int = 400) -> str:
    """``k=v, ...`` with arrays shown compactly (shape, dtype and a few values)."""
    text = ", ".join(f"{k}={_short(v)}" for k, v in example.items())
    return text if len(text) <= width else text[: width - 3] + "..."


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        body = np.array2string(v, precision=4, threshold=8, separator=", ",
                               max_line_width=10**6).replace("\n", "")
        return body if v.ndim <= 1 and v.size <= 8 else f"array{v.shape} {body}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {_short(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list | tuple) and not hasattr(v, "_fields"):
        inner = ", ".join(_short(x) for x in v)
        return f"[{inner}]" if isinstance(v, list) else f"({inner}{',' if len(v) == 1 else ''})"
    if isinstance(v, float):
        return _fmt(v)
    return repr(v)


def _fmt(v: float) -> str:
    v = float(v)
    if v == 0.0 or not math.isfinite(v):
        return str(v) if not math.isfinite(v) else "0"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.3e}"


@dataclass(frozen=True)
class Report:
    """The results of :func:`~physopt_ref.testing.verify`: one row per property.

    ``notes`` say how the run was set up: what was probed about the subject, which physics
    checks were chosen and why, which properties do not apply to it.
    """

    subject: str
    results: Sequence[CheckResult]
    notes: Sequence[str] = ()

    @builtins.property
    def passed(self) -> bool:
        """No property failed (skipped ones do not count as failures)."""
        return not any(r.failed for r in self.results)

    @builtins.property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.failed]

    def __getitem__(self, prop: str) -> CheckResult:
        for r in self.results:
            if r.property == prop:
                return r
        raise KeyError(prop)

    def table(self) -> str:
        """A plain-text pass/fail table with the measured margin, then each failure's input."""
        headers = ["property", "result", "quantity", "measured", "allowed", "margin", "examples"]
        rows = []
        for r in self.results:
            c = r.condition
            if c is None:
                rows.append([r.property, "skip", r.skip_reason or "", "", "", "", "0"])
                continue
            rows.append([r.property, r.status, c.quantity, _fmt(c.measured),
                         f"{c.relation} {_fmt(c.allowed)}", _fmt(c.margin), str(r.examples_run)])
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
                  for i, h in enumerate(headers)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                  for row in rows]
        n_fail = len(self.failures)
        n_skip = sum(r.status == "skip" for r in self.results)
        lines.append("")
        lines += [f"* {note}" for note in self.notes]
        lines.append(f"{self.subject}: {len(self.results) - n_fail - n_skip} passed, {n_fail} "
                     f"failed, {n_skip} skipped")
        for r in self.failures:
            lines.append(f"- {r.message()}")
        return "\n".join(lines)

    def raise_if_failed(self) -> Report:
        """Raise :class:`PropertyError` for the first failing property; else return self."""
        for r in self.results:
            if r.failed:
                raise PropertyError(r)
        return self

    def __str__(self) -> str:
        return self.table()
