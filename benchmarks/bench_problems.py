"""Cost per member-evaluation of each problem's ``value_and_grad`` on NumPy.

Prints a table: one row per problem (configuration), columns batch size 1, 1e3, 1e5; entries
are microseconds per member (wall time of one batched call / batch size, best of a few
repeats). Entries whose arrays would exceed ~160 MB per temporary are skipped ("skip"); the
small configurations (``ecd_pde(n=40)``, ``lennard_jones(5)``, ``morse(5)``) give the 1e5
numbers for those families.

Run: ``python benchmarks/bench_problems.py`` (well under 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from physopt_ref.problems import (
    Problem,
    ackley,
    bratu_1d,
    ecd_pde,
    gelfand_disk,
    lennard_jones,
    morse,
    quadratic,
    two_basin,
    zakharov,
)

CONFIGS: list[tuple[str, Callable[[], Problem]]] = [
    ("quadratic(dim=10)", lambda: quadratic(dim=10, condition=100.0)),
    ("quadratic(dim=10, rotate)", lambda: quadratic(dim=10, condition=100.0, rotate=True)),
    ("ackley(2)", lambda: ackley(2)),
    ("ackley(2, b=0.02)", lambda: ackley(2, b=0.02)),
    ("zakharov(10)", lambda: zakharov(10)),
    ("two_basin()", two_basin),
    ("bratu_1d(n=100)", lambda: bratu_1d(100, 1.0)),
    ("gelfand_disk(n=100)", lambda: gelfand_disk(100, 1.5)),
    ("ecd_pde(n=400)", lambda: ecd_pde(400)),
    ("ecd_pde(n=40)", lambda: ecd_pde(40)),
    ("lennard_jones(13)", lambda: lennard_jones(13)),
    ("lennard_jones(38)", lambda: lennard_jones(38)),
    ("lennard_jones(5)", lambda: lennard_jones(5)),
    ("morse(13)", lambda: morse(13)),
    ("morse(5)", lambda: morse(5)),
]

MAX_ELEMENTS = 2e7  # per temporary array (160 MB in float64)


def elements(p: Problem, batch: int) -> float:
    n_atoms = getattr(p, "n_atoms", None)
    per = 3 * n_atoms * n_atoms if n_atoms else p.dim
    return float(batch) * per


def time_call(p: Problem, batch: int, budget: float) -> float:
    """Seconds per member (best of repeats within ``budget`` seconds, at least 2 calls)."""
    rng = np.random.default_rng(0)
    x = p.x0 + 0.01 * rng.standard_normal((batch, p.dim))
    if batch == 1:
        x = x[0]
    p.value_and_grad(x)  # warm up
    best = np.inf
    start = time.perf_counter()
    calls = 0
    while calls < 2 or (time.perf_counter() - start < budget and calls < 1000):
        t = time.perf_counter()
        p.value_and_grad(x)
        best = min(best, time.perf_counter() - t)
        calls += 1
    return best / batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=0.4, help="seconds per entry (default 0.4)")
    args = ap.parse_args()
    batches = (1, 1_000, 100_000)
    print(f"numpy {np.__version__}; microseconds per member-evaluation (value_and_grad)")
    cols = "".join(f"{'batch ' + format(b, ','):>16s}" for b in batches)
    head = f"{'problem':28s} {'dim':>5s}" + cols
    print(head)
    print("-" * len(head))
    t0 = time.perf_counter()
    for label, make in CONFIGS:
        p = make()
        row = f"{label:28s} {p.dim:5d}"
        for b in batches:
            if elements(p, b) > MAX_ELEMENTS:
                row += f"{'skip':>16s}"
            else:
                row += f"{time_call(p, b, args.budget) * 1e6:16.3f}"
        print(row, flush=True)
    print(f"(total {time.perf_counter() - t0:.1f} s; 'skip': > {MAX_ELEMENTS:.0e} elements per "
          "temporary, see the small configurations)")  # fmt: skip


if __name__ == "__main__":
    main()
