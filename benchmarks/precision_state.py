"""How much each optimizer loses with its state in float16: the measurement behind ``state_dtype``.

Usage::

    python benchmarks/precision_state.py [--optimizers bbi,ecdsep]

For every registered optimizer, 1500 steps on ``quadratic(dim=10, condition=10)`` (Gravity:
``mu=0.1``) from x0 = 1 with the settings of ``tests/test_precision.py::SETTINGS``, NumPy. It
prints the loss ratio f(x0)/f(x1500) for: everything in float16 (``state_dtype="params"``
where the optimizer has the option); the float32 state emulated (float32 parameters, state and
loss, the parameters rounded to float16 after every step); the shipped default (float16
parameters, ``state_dtype=None``, only where it differs); and float32. Not a timing.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings

import numpy as np


def _ratio(f0: float, f1: float) -> str:
    return "inf" if f1 == 0.0 else f"{f0 / f1:.3g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from test_precision import PROBLEM, PROBLEMS, SETTINGS

    import physopt_ref as po

    warnings.simplefilter("ignore", RuntimeWarning)
    names = args.optimizers.split(",") if args.optimizers else sorted(SETTINGS)
    print("| optimizer | float16 state | float32 state (emulated) | state_dtype=None | float32 |")
    print("|---|---|---|---|---|")
    for name in names:
        prob = PROBLEMS.get(name, PROBLEM)
        wide = "state_dtype" in po.get_optimizer(name, **SETTINGS[name]).hyperparameters
        cells = []
        for mode in ("f16", "emulated", "default", "f32"):
            if mode == "default" and not wide:
                cells.append("—")
                continue
            extra = {"state_dtype": "params"} if (mode == "f16" and wide) else {}
            opt = po.get_optimizer(name, **SETTINGS[name], **extra)
            dt = np.float16 if mode in ("f16", "default") else np.float32
            x = np.asarray(prob.x0, dt)
            state = opt.init(x)
            f0 = float(prob.value(x.astype(np.float32)))
            for _ in range(1500):
                f, g = prob.value_and_grad(x)
                x, state = opt.step(x, g, state, loss=f)
                if mode == "emulated":
                    x = x.astype(np.float16).astype(np.float32)
            f1 = float(prob.value(x.astype(np.float32)))
            cells.append(_ratio(f0, f1) if math.isfinite(f1) else "nan")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print(f"\ncommand: python benchmarks/precision_state.py {' '.join(argv or sys.argv[1:])}")


if __name__ == "__main__":
    main()
