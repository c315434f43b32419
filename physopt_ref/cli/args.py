"""The values of command-line arguments: parsers for numbers and ``NAME=VALUE`` settings, and
:class:`UsageError`, the one exception the application turns into exit status 2."""


from __future__ import annotations

import argparse
import ast
import math
from typing import Any

__all__ = [
    "PROG",
    "UsageError",
    "nonneg_int",
    "parse_assignment",
    "parse_assignments",
    "parse_grid",
    "parse_grids",
    "pos_int",
]


#: The program's name, as usage lines print it.
PROG = "physopt-ref"


class UsageError(Exception):
    """A user error: printed as ``physopt-ref: error: ...`` with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (a :class:`UsageError`), not usage + exit.

    Subcommand parsers are of the same class (argparse makes them with ``type(parent)``).
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        where = self.prog.removeprefix(PROG).strip()
        raise UsageError(f"{where}: {message}" if where else message)


def _literal(raw: str) -> Any:
    raw = raw.strip()
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if lowered.lstrip("+-") in ("nan", "inf", "infinity"):
        return float(lowered)  # refused by the hyperparameter's check as "must be finite"
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw  # a plain string, e.g. schedule=paper


def _split_assignment(text: str, what: str) -> tuple[str, str]:
    if "=" not in text:
        raise UsageError(f"{what} must look like NAME=VALUE, got {text!r}")
    name, raw = text.split("=", 1)
    name = name.strip()
    if not name.isidentifier():
        raise UsageError(f"{what}: {name!r} is not a valid name")
    return name, raw


def parse_assignment(text: str, what: str) -> tuple[str, Any]:
    """``NAME=VALUE`` -> ``(name, value)``; the value read as a Python literal where it is one."""
    name, raw = _split_assignment(text, what)
    return name, _literal(raw)


def parse_assignments(texts: list[str], what: str) -> dict[str, Any]:
    """Repeated ``NAME=VALUE`` options as a dict; a name given twice is a :class:`UsageError`."""
    return _unique([parse_assignment(t, what) for t in texts], what)


def parse_grids(texts: list[str]) -> dict[str, tuple[Any, ...]]:
    """Repeated ``--grid NAME=V1,V2,...`` as a dict; a name given twice is a UsageError."""
    return _unique([parse_grid(t) for t in texts], "--grid")


def _unique(pairs: list[tuple[str, Any]], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise UsageError(f"{what} {name} is given twice ({out[name]!r} and {value!r}); "
                             "give each name once")
        out[name] = value
    return out


def parse_grid(text: str) -> tuple[str, tuple[Any, ...]]:
    """``NAME=V1,V2,...`` -> ``(name, (v1, v2, ...))`` (values as in :func:`parse_assignment`)."""
    name, raw = _split_assignment(text, "--grid")
    values = tuple(_literal(v) for v in raw.split(",") if v.strip())
    if not values:
        raise UsageError(f"--grid {name}: no values")
    return name, values


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from exc
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
    return value


def nonneg_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 0."""
    return _int_at_least(text, 0)


def pos_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1 (the same message for every bad value)."""
    return _int_at_least(text, 1)


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}") from exc
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = _finite_float(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}") from exc
    if value < 0.0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value
