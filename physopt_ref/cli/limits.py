"""Bounds that keep a command within the machine: problem sizes and the recorded history.

:func:`check_problem_size` refuses problem arguments whose arrays would not fit (estimated from
how each bundled problem's memory grows with its size argument) before anything is built.
:func:`default_record_every` picks the record interval of ``run`` so that the recorded losses
stay within :data:`RECORD_BUDGET_VALUES` numbers, whatever the steps and the ensemble.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from physopt_ref.cli.args import UsageError

__all__ = ["RECORD_BUDGET_VALUES", "check_problem_size", "default_record_every", "memory_limit"]

#: Most recorded loss values (records x runs) ``run`` keeps by default: 2e6 float64 numbers,
#: 16 MB, or about 50 MB of JSON.
RECORD_BUDGET_VALUES = 2_000_000

#: For each problem factory: its size argument, its default, and the power of that size its
#: largest arrays grow with (dense Hessians, rotations and pair tables are square).
_SIZE_ARGS: dict[str, tuple[str, int, int]] = {
    "quadratic": ("dim", 10, 2),
    "zakharov": ("dim", 10, 2),
    "ackley": ("dim", 2, 1),
    "lennard_jones": ("n_atoms", 13, 2),
    "morse": ("n_atoms", 13, 2),
    "bratu_1d": ("n", 100, 2),
    "gelfand_disk": ("n", 100, 2),
    "ecd_pde": ("n", 100, 2),
}
#: Copies of the largest array a problem and its evaluation hold at once (an estimate).
_COPIES = 4
#: Arrays of the point's size a run holds per member (point, gradient, state, best point, ...).
_PER_MEMBER = 8


def memory_limit() -> int:
    """Half this machine's physical memory, in bytes (16 GiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_problem_size(factory: str, arguments: Mapping[str, Any], dim: int | None,
                       ensemble: int, itemsize: int, limit: int | None = None) -> None:
    """Refuse (:class:`UsageError`) a problem whose estimated memory exceeds ``limit``.

    Parameters
    ----------
    factory : str
        The problem factory's name (a key of :data:`_SIZE_ARGS`; others are not estimated
        until built, when ``dim`` is known).
    arguments : mapping
        The factory's arguments (the settings' and ``--problem-arg``'s).
    dim : int or None
        The point's size once the problem is built (None before).
    ensemble, itemsize : int
        Runs, and bytes per number of the runs' dtype.
    """
    limit = memory_limit() if limit is None else limit
    entry = _SIZE_ARGS.get(factory)
    if entry is not None and dim is None:
        name, default, power = entry
        size = arguments.get(name, default)
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            need = _COPIES * 8 * float(size) ** power
            if need > limit:
                raise UsageError(
                    f"--problem-arg {name}={size}: {factory} would need about {_gib(need)} "
                    f"(arrays growing as {name}^{power}), more than the {_gib(limit)} allowed "
                    "(half this machine's memory)")
            if name == "dim":  # the point's size is known before the problem is built
                dim = size
    if dim is not None:
        need = _PER_MEMBER * float(itemsize) * dim * ensemble
        if need > limit:
            raise UsageError(
                f"{ensemble} runs of dimension {dim} would need about {_gib(need)}, more than "
                f"the {_gib(limit)} allowed (half this machine's memory): use a smaller "
                "--ensemble or problem")


def default_record_every(steps: int, runs: int, budget: int = RECORD_BUDGET_VALUES) -> int:
    """The smallest record interval that keeps ``records x runs`` within ``budget`` values."""
    return max(1, math.ceil((steps + 1) * runs / budget))
