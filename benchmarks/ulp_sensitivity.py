"""Which rows of ``physopt-ref compare`` amplify a last-bit difference (docs/reproducibility.md).

Runs the compare table (no headlines) twice: as ``physopt-ref compare`` runs it, and with every
start moved by one ulp (``nextafter(x0, +inf)``), a stand-in for another machine's last bits.
Prints the rows whose printed values differ, time columns aside. Takes two table runs (about
1.5 minutes each on an idle 2-core machine).

    python benchmarks/ulp_sensitivity.py
"""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np

import physopt_ref.cli.compare as compare_module
from physopt_ref.cli import main


def _rows(text: str) -> dict[tuple[str, str], list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("problem "))
    out = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        parts = re.split(r"\s{2,}", line.strip())
        out[(parts[0], parts[1])] = parts[2:8] + parts[9:]  # without the time column
    return out


def _table(perturb: bool) -> str:
    original = compare_module.ensemble_start

    def perturbed(xp, dtype, problem, setting, n, seed):
        x = np.asarray(compare_module.starts_for(problem, setting, n, seed), dtype=np.float64)
        return xp.asarray(np.nextafter(x, np.inf), dtype=dtype)

    buffer = io.StringIO()
    try:
        if perturb:
            compare_module.ensemble_start = perturbed
        with contextlib.redirect_stdout(buffer):
            main(["compare", "--no-headlines"])
    finally:
        compare_module.ensemble_start = original
    return buffer.getvalue()


if __name__ == "__main__":
    plain, moved = _rows(_table(False)), _rows(_table(True))
    differ = [key for key in plain if plain[key] != moved.get(key)]
    print(f"{len(differ)} of {len(plain)} rows differ when the starts move by one ulp")
    for key in differ:
        print(f"  {key[0]:16s} {key[1]:18s} {plain[key][2:5]} -> {moved[key][2:5]}")
