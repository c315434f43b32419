"""Cost of one optimizer step: large steps against SGD, small steps against hand-written loops.

Usage::

    python benchmarks/bench_steps.py [--backend numpy] [--sizes 1e6,1e7] [--dim 10]
                                     [--repeats 10] [--small-steps 20000] [--dtype float32]

Two tables, every ratio measured side by side in the same process:

1. **Large steps.** For each size (one leaf of that many elements, ``--dtype``, default float32),
   every registered optimizer steps on ``grads = x`` with a fixed positive loss; the median wall
   time of a step and its ratio to SGD's step at the same size.
2. **Small steps** (``--dim``, default 10, float64, one run). The per-step cost of our step
   against a hand-written NumPy loop of the same update (below), which is what a user would
   write without the library: no trees, no ensembles, Python scalars for the per-run logic and
   ``numpy.random`` for the draws, best of 5 loops in the thread's CPU time, with issue 25's
   target (at dim 10) and whether it is reached. Only on ``--backend numpy``.

The settings are each optimizer's defaults (``lr`` where it is required), i.e. BBI bounces rarely
(``t0 = 1000``, ``t1 = 3000``) and ECDSep jitters every step (``nu = 1e-5``). The extra row
``bbi (bouncing)`` sets ``t1 = 1``: a progress bounce every other call, so a random direction
is drawn on half the steps. Nothing here is a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from physopt_ref.backends import available_backends, get_namespace, to_numpy

import physopt_ref as po

#: Per optimizer: the hyperparameters of the benchmark (defaults; lr where required).
SETTINGS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.01},
    "heavy_ball": {"lr": 0.01},
    "nesterov": {"lr": 0.01},
    "adam": {"lr": 1e-3},
    "coolmomentum": {"lr": 0.01, "cool_steps": 1000},
    "gravity": {},
    "dyna": {},
    "dyna_prototype": {},
    "dynamic_relaxation": {},
    "bbi": {"lr": 0.01},
    "ecdsep": {"lr": 0.01, "eta": 1.0},
}
ROWS: list[tuple[str, str, dict[str, Any]]] = [
    *((name, name, hp) for name, hp in SETTINGS.items()),
    ("bbi (bouncing)", "bbi", {"lr": 0.01, "t1": 1}),
]
LOSS = 1.5


def _sync(x: Any) -> None:
    """Wait for the device (CuPy / torch / JAX run asynchronously) by touching one element."""
    to_numpy(x[:1])


def time_large(
    name: str, hp: dict[str, Any], xp: Any, size: int, dtype: Any, repeats: int
) -> float:
    """Median seconds per step, ``size`` elements of ``dtype``."""
    opt = po.get_optimizer(name, **hp)
    x = xp.asarray(np.linspace(-1.0, 1.0, size), dtype=dtype)
    state = opt.init(x)
    loss = xp.asarray(LOSS, dtype=dtype)
    for _ in range(2):  # warm-up (first-step branches, allocator)
        x, state = opt.step(x, x, state, loss=loss)
    _sync(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        x, state = opt.step(x, x, state, loss=loss)
        _sync(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------
# Hand-written NumPy loops of the same updates (one run, float64, Python scalars)


def _hand_sgd(x: np.ndarray, g: np.ndarray, steps: int) -> np.ndarray:
    lr = 0.01
    for _ in range(steps):
        x = x - lr * g
    return x


def _hand_heavy_ball(x: np.ndarray, g: np.ndarray, steps: int) -> np.ndarray:
    lr, beta = 0.01, 0.9
    v = np.zeros_like(x)
    for _ in range(steps):
        v = beta * v - lr * g
        x = x + v
    return x


def _hand_nesterov(x: np.ndarray, g: np.ndarray, steps: int) -> np.ndarray:
    """Yang et al.'s Eq. 2.1 with the state x_k, as written by hand: five NumPy operations a
    step, one fewer than the velocity form the library computes (η g, α v - η g, α v',
    y + α v', - η g: six), so the stricter baseline of the two is kept."""
    lr, alpha = 0.01, 0.9
    prev = x.copy()
    for _ in range(steps):
        new = x - lr * g
        x = new + alpha * (new - prev)
        prev = new
    return x


def _hand_adam(x: np.ndarray, g: np.ndarray, steps: int) -> np.ndarray:
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    m, v = np.zeros_like(x), np.zeros_like(x)
    for t in range(1, steps + 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * (g * g)
        x = x - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return x


def _hand_bbi(x: np.ndarray, g: np.ndarray, steps: int) -> np.ndarray:
    """BBI (gbdl/BBI's step order) with its defaults: one run, Python floats and ints."""
    dt, v0, de, t0, t1, eps1, eps2 = 0.01, 0.0, 0.0, 1000, 3000, 1e-10, 1e-40
    rng = np.random.default_rng(0)
    pi, energy, best, c0, c1, nb, started = None, 0.0, math.inf, 0, 0, 0, False
    for _ in range(steps):
        V = LOSS - v0
        if V <= eps2:
            continue
        if not started:
            energy = V + de
            pi = -math.sqrt(max(energy * energy / V - V, 0.0)) * g / np.sqrt(g @ g)
            started = True
        p2 = float(pi @ pi)
        if c0 == t0 or c1 == t1:  # bounce: a new direction of the same length
            d = rng.random(x.shape) - 0.5
            pi = d * math.sqrt(p2 / float(d @ d))
            if c0 == t0:
                nb += 1
                c0 = 0 if nb < 1 else c0 + 1
            c1 = 0
            continue
        shell = energy * energy / V - V
        if abs(p2 - shell) >= eps1 and shell >= 0 and p2 > 0:
            pi = pi * math.sqrt(shell / p2)
        pi = pi - 0.5 * dt * (V / energy + energy / V) * g
        x = x + dt * V / energy * pi
        c0 += 1
        if V < best:
            best, c1 = V, 0
        else:
            c1 += 1
    return x


def _hand_ecdsep(x: np.ndarray, g: np.ndarray, steps: int) -> np.ndarray:
    """ECDSep (gbdl/ECDSep's update) with its defaults and eta = 1: one run."""
    dt, eta, nu, s, f0, de, eps1 = 0.01, 1.0, 1e-5, 1.0, 0.0, 0.0, 1e-10
    rng = np.random.default_rng(0)
    p, e_energy = None, 0.0
    for _ in range(steps):
        V = (LOSS - f0) ** eta
        if p is None:
            e_energy = V * (s + de)
            p = -math.sqrt(de) * g / np.sqrt(g @ g)
        p2 = float(p @ p)
        target = e_energy / V - s
        if abs(target - p2) >= eps1 and target >= 0 and p2 > 0:
            p = p * math.sqrt(target / p2)
        p = p - dt * eta / (LOSS - f0) * g
        p2 = float(p @ p)
        x = x + 2 * dt * p / (s + p2)
        norm = math.sqrt(p2)
        if norm > 0:
            u = p / norm + nu * rng.standard_normal(x.shape)
            p = u * (norm / np.sqrt(u @ u))
    return x


HAND: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "sgd": _hand_sgd,
    "heavy_ball": _hand_heavy_ball,
    "nesterov": _hand_nesterov,
    "adam": _hand_adam,
    "bbi": _hand_bbi,
    "ecdsep": _hand_ecdsep,
}


def _ours(name: str, x: np.ndarray, g: np.ndarray, steps: int) -> np.ndarray:
    opt = po.get_optimizer(name, **SETTINGS[name])
    state = opt.init(x)
    loss = np.float64(LOSS)
    step = opt.step
    for _ in range(steps):
        x, state = step(x, g, state, loss=loss)
    return x


#: Issue 25's small-problem targets: dim-10 step / hand-written update, at most.
SMALL_TARGETS = {"sgd": 3.0, "heavy_ball": 3.0, "nesterov": 3.0, "adam": 3.0, "bbi": 10.0,
                 "ecdsep": 10.0}


def time_small(fn: Callable[[np.ndarray, np.ndarray, int], np.ndarray], dim: int, steps: int,
               repeats: int = 5) -> float:
    """Best-of-``repeats`` seconds per step of a loop of ``steps`` steps at ``dim``.

    Timed in the thread's CPU time (``time.thread_time``): microsecond steps on a shared
    machine would otherwise measure the other processes' load.
    """
    x = np.linspace(-1.0, 1.0, dim)
    g = 0.1 * x + 0.05
    fn(x, g, 50)  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.thread_time()
        fn(x, g, steps)
        best = min(best, (time.thread_time() - t0) / steps)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", choices=available_backends())
    parser.add_argument("--sizes", default="1e6,1e7")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--small-steps", type=int, default=20000)
    args = parser.parse_args(argv)
    xp = get_namespace(args.backend)
    dtype = getattr(xp, args.dtype)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    width = max(len(r[0]) for r in ROWS) + 2

    print(f"1. Large steps: backend {args.backend}, {args.dtype}; median step time and the "
          "ratio to sgd at the same size, in the same run")
    header = f"{'optimizer':<{width}}" + "".join(f"{f'n = {n:.0e}':>26}" for n in sizes)
    print(header)
    print("-" * len(header))
    time_large("sgd", SETTINGS["sgd"], xp, sizes[0], dtype, args.repeats)  # warm the process
    base = {n: time_large("sgd", SETTINGS["sgd"], xp, n, dtype, args.repeats) for n in sizes}
    for label, name, hp in ROWS:
        cells = []
        for n in sizes:
            t = base[n] if label == "sgd" else time_large(name, hp, xp, n, dtype, args.repeats)
            cells.append(f"{t * 1e3:>11.2f} ms {t / base[n]:>8.1f}x")
        print(f"{label:<{width}}" + "".join(f"{c:>26}" for c in cells))

    if args.backend != "numpy":
        return
    print()
    print(f"2. Small steps: dim {args.dim}, float64, one run; best of 5 loops of "
          f"{args.small_steps} steps (thread CPU time); ours against a hand-written NumPy loop "
          "of the same update")
    header = (f"{'optimizer':<{width}}{'ours':>12}{'hand-written':>15}{'ratio':>9}"
              f"{'target':>9}  issue 25")
    print(header)
    print("-" * len(header))
    for name, hand in HAND.items():
        ours = time_small(lambda x, g, n, name=name: _ours(name, x, g, n), args.dim,
                          args.small_steps)
        ref = time_small(hand, args.dim, args.small_steps)
        goal = SMALL_TARGETS[name]
        print(f"{name:<{width}}{ours * 1e6:>9.2f} us{ref * 1e6:>12.2f} us{ours / ref:>8.1f}x"
              f"{f'<= {goal:g}x':>9}  {'reached' if ours / ref <= goal else 'MISSED'}")


if __name__ == "__main__":
    main()
