"""How far ``torch.compile(opt.step)`` (inductor) is from the eager step (docs/frameworks.md).

On the problem of ``tests/test_torch_adapter_conventions.py`` (its ``inductor_runs``: a linear
model 3 -> 2 on 16 points, the registry's test settings, ``CosineAnnealingLR`` with
``T_max = 25``), for each optimizer over 50 steps, the largest difference of the parameters

* in lockstep (each compiled step started from the eager run's parameters and state), and
* between two free-running runs, with the first step where it exceeds 1e-6.

A measurement, not a test (the test asserts torch's float32 tolerances). Each optimizer
compiles twice (10-100 s each on a loaded 2-core machine); run from the repository root::

    python benchmarks/compile_exactness.py                 # all 11
    python benchmarks/compile_exactness.py dyna ecdsep     # some
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

import physopt_ref as po
from tests.test_torch_adapter_conventions import inductor_runs

STEPS = 50


def _gap(a: Any, b: Any) -> float:
    return max((p - q).abs().max().item()
               for p, q in zip(a.parameters(), b.parameters(), strict=True))


def measure(name: str) -> str:
    lock, free = 0.0, []
    for _, (m_e, _), (m_c, _), runs in inductor_runs(name, STEPS):
        lock = max(lock, _gap(m_e, m_c))
        free.append(_gap(runs[0][0], runs[1][0]))
    first = next((t for t, d in enumerate(free) if d > 1e-6), "-")
    return (f"{name:<20} lockstep {lock:9.2e}   free-running {max(free):9.2e} "
            f"(step 30: {free[29]:8.2e}; above 1e-6 from step {first})")


def main() -> None:
    warnings.filterwarnings("ignore")
    names = sys.argv[1:] or po.registered_names()
    print(f"torch {torch.__version__}, inductor, {STEPS} steps, max |compiled - eager|:")
    for name in names:
        print("  " + measure(name), flush=True)


if __name__ == "__main__":
    main()
