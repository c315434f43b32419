"""Cost of one optimizer step, for every registered optimizer, as a ratio to plain SGD.

Usage::

    python benchmarks/bench_steps.py [--backend numpy] [--sizes 1000,1000000] [--repeats 20]

For each parameter size (one leaf of that many float64 elements), each optimizer is stepped on a
quadratic (grads = x, loss = ½‖x‖² + ½) and the median wall time of a step is reported with its
ratio to SGD's step measured in the same run (same backend, size and process). Nothing here is a
test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
from physopt_ref.backends import available_backends, get_namespace, to_numpy

import physopt_ref as po


def _sync(x: Any) -> None:
    """Wait for the device (CuPy / torch / JAX run asynchronously) by touching one element."""
    to_numpy(x[:1])


def time_step(name: str, xp: Any, size: int, repeats: int) -> float:
    entry = po.REGISTRY[name]
    opt = entry.factory(**entry.test_hyperparameters)
    x = xp.asarray(np.linspace(-1.0, 1.0, size), dtype=xp.float64)
    state = opt.init(x)
    loss = 0.5 * xp.sum(x * x) + 0.5
    x, state = opt.step(x, x, state, loss=loss)  # warm-up (and first-step branches)
    _sync(x)
    times = []
    for _ in range(repeats):
        loss = 0.5 * xp.sum(x * x) + 0.5
        t0 = time.perf_counter()
        x, state = opt.step(x, x, state, loss=loss)
        _sync(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", choices=available_backends())
    parser.add_argument("--sizes", default="1000,1000000")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    xp = get_namespace(args.backend)
    sizes = [int(s) for s in args.sizes.split(",")]
    names = po.registered_names()
    print(f"backend {args.backend}; median step time, and ratio to sgd in the same run")
    width = max(len(n) for n in names) + 2
    header = f"{'optimizer':<{width}}" + "".join(f"{f'n={n:.0e}':>24}" for n in sizes)
    print(header)
    print("-" * len(header))
    time_step("sgd", xp, sizes[0], args.repeats)  # warm the interpreter and allocator first
    base = {n: time_step("sgd", xp, n, args.repeats) for n in sizes}
    for name in names:
        cells = []
        for n in sizes:
            t = base[n] if name == "sgd" else time_step(name, xp, n, args.repeats)
            cells.append(f"{t * 1e6:>12.1f} us {t / base[n]:>7.2f}x")
        print(f"{name:<{width}}" + "".join(f"{c:>24}" for c in cells))


if __name__ == "__main__":
    main()
