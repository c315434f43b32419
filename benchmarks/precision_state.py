"""How much each optimizer loses with its state in float16: the measurement behind ``state_dtype``.

Usage::

    python benchmarks/precision_state.py [--optimizers bbi,ecdsep]
    python benchmarks/precision_state.py --gravity-lrs 0.01,0.05,0.1,1

For every registered optimizer, 1500 steps on ``quadratic(dim=10, condition=10)`` from x0 = 1
with the settings of ``tests/test_precision.py::SETTINGS``, NumPy. It prints the loss ratio
f(x0)/f(x1500) for: everything in float16 (``state_dtype="params"`` where the optimizer has
the option); the float32 state emulated (float32 parameters, state and loss, the parameters
rounded to float16 after every step); the shipped default (float16 parameters,
``state_dtype=None``, only where it differs); and float32. Not a timing.

``--gravity-lrs``: instead, Gravity's loss f(x1500) (from f(x0) = 20.43) at each lr on torch
tensors, float32 and, for bfloat16 and float16, with the velocity in the parameters' dtype and
no compensation (``state_dtype="params"``) and with the default (float32 velocity, compensated
parameter update).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from typing import Any

import numpy as np


def _ratio(f0: float, f1: float) -> str:
    return "inf" if f1 == 0.0 else f"{f0 / f1:.3g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", default=None)
    parser.add_argument("--gravity-lrs", default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from test_precision import PROBLEM, SETTINGS

    import physopt_ref as po

    warnings.simplefilter("ignore", RuntimeWarning)
    if args.gravity_lrs:
        _gravity_lrs([float(v) for v in args.gravity_lrs.split(",")], PROBLEM, SETTINGS)
        print(f"\ncommand: python benchmarks/precision_state.py {' '.join(argv or sys.argv[1:])}")
        return
    names = args.optimizers.split(",") if args.optimizers else sorted(SETTINGS)
    print("| optimizer | float16 state | float32 state (emulated) | state_dtype=None | float32 |")
    print("|---|---|---|---|---|")
    for name in names:
        prob = PROBLEM
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


def _gravity_lrs(lrs: list[float], prob: Any, settings: dict) -> None:
    import torch

    import physopt_ref as po

    cases = [
        ("float32", torch.float32, None),
        ("bfloat16, params", torch.bfloat16, "params"),
        ("bfloat16, default", torch.bfloat16, None),
        ("float16, params", torch.float16, "params"),
        ("float16, default", torch.float16, None),
    ]
    print("| lr | " + " | ".join(c[0] for c in cases) + " |")
    print("|---|" + "---|" * len(cases))
    for lr in lrs:
        cells = []
        for _, dtype, choice in cases:
            opt = po.gravity(**{**settings["gravity"], "lr": lr}, state_dtype=choice)
            x = torch.ones(10, dtype=dtype)
            state = opt.init(x)
            for _ in range(1500):
                x, state = opt.step(x, prob.value_and_grad(x)[1], state)
            cells.append(f"{float(prob.value(x.double())):.3g}")
        print(f"| {lr:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
