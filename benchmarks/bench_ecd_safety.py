"""BBI and ECDSep with and without ``safety="backtrack"`` on BBOB, the physics steps alone.

Issue 27's study gave BBI and ECDSep the true optimum as their floor (``v0`` / ``f0`` =
:math:`f_\\text{opt}`) and found BBI diverging on the ill-conditioned functions (f2, f10-f12):
its first kick lifts V far above E. This runs each optimizer with the option off and on, side
by side, on the same problems from the same starts: ``members`` walkers uniform in [-4, 4]^d,
one ensemble, until ``budget·d`` evaluations (central finite differences, ``2d + 1`` evaluations
per gradient, every one counted by COCO; no restarts, no polish). Per problem and method it
prints the best :math:`f - f_\\text{opt}` COCO observed, the fraction of COCO's 51 targets
reached, the walkers whose last loss is non-finite or above their start (diverged), and
the calls off the shell (V > E resp. s V > e^E: without the option they update there; with it
they backtrack).

Usage::

    python benchmarks/bench_ecd_safety.py [--functions 1,2,8,10,11,12] [--dim 2]
        [--instance 1] [--budget 1000] [--members 4] [--lr 0.1]

Needs ``cocoex`` (``pip install -e ".[bbob]"``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import physopt_ref as po
from physopt_ref.adapters.bbob import TARGET_EXPONENTS, CocoProblem

METHODS = ("bbi", "ecdsep")


def build(name: str, lr: float, fopt: float, safety: str | None) -> po.Optimizer:
    if name == "bbi":
        return po.bbi(lr=lr, v0=fopt, safety=safety)
    return po.ecdsep(lr=lr, eta=1.0, f0=fopt, safety=safety)


def run_one(problem: object, opt: po.Optimizer, name: str, fopt: float, members: int,
            budget: int, seed: int) -> tuple[float, float, int, int]:
    coco = CocoProblem(problem)
    d = coco.dim
    rng = np.random.default_rng(seed)
    x = rng.uniform(-4.0, 4.0, (members, d))
    state = opt.init(x, batch_ndim=1)
    f_start = f_last = None
    off_shell = 0
    per_call = members * (2 * d + 1)
    with np.errstate(all="ignore"):
        while problem.evaluations + per_call <= budget and not problem.final_target_hit:
            f, g = coco.value_and_grad(x)
            f, g = np.asarray(f), np.asarray(g)
            if f_start is None:
                f_start = f - fopt
            f_last = f - fopt
            started = np.asarray(state.started)
            bound = state.energy if name == "bbi" else state.exp_energy
            off_shell += int(np.sum(started & ((f - fopt) > np.asarray(bound))))
            x, state = opt.step(x, g, state, loss=f)
            if not np.all(np.isfinite(x)):
                break  # a walker's parameters overflowed: diverged
    delta = float(problem.best_observed_fvalue1) - fopt
    reached = float(np.mean(delta <= 10.0 ** TARGET_EXPONENTS))
    diverged = ~np.isfinite(f_last) | (f_last > f_start)
    return delta, reached, int(diverged.sum()), off_shell


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--functions", default="1,2,8,10,11,12")
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--instance", type=int, default=1)
    ap.add_argument("--budget", type=int, default=1000, help="evaluations per problem / d")
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.1)
    args = ap.parse_args()
    import cocoex

    funcs = [int(f) for f in args.functions.split(",")]
    budget = args.budget * args.dim
    print(f"d={args.dim} instance {args.instance} budget {budget} evaluations, "
          f"{args.members} walkers, lr {args.lr}, floor = f_opt, eta 1 (ECDSep)")
    print(f"{'f':>3} {'method':<22} {'best f-fopt':>12} {'targets':>8} {'diverged':>9} "
          f"{'calls off shell':>16} {'s':>6}")
    totals: dict[str, list[float]] = {}
    for f in funcs:
        bare = cocoex.BareProblem("bbob", f, args.dim, args.instance)
        best = bare.best_value
        fopt = float(best() if callable(best) else best)
        for name in METHODS:
            for safety in (None, "backtrack"):
                label = f"{name} safety={safety}"
                suite = cocoex.Suite("bbob", "", f"dimensions: {args.dim} instance_indices: "
                                     f"{args.instance} function_indices: {f}")
                problem = next(iter(suite))
                t = time.perf_counter()
                delta, reached, div, off = run_one(problem, build(name, args.lr, fopt, safety),
                                                   name, fopt, args.members, budget, seed=f)
                problem.free()
                totals.setdefault(label, []).append(reached)
                print(f"{f:>3} {label:<22} {delta:12.3g} {reached:8.2f} {div:>5}/{args.members:<3}"
                      f" {off:>16} {time.perf_counter() - t:6.1f}", flush=True)
    print("\nfraction of (problem, target) pairs reached, over the functions above:")
    for label, values in totals.items():
        print(f"  {label:<22} {np.mean(values):.2f}")


if __name__ == "__main__":
    main()
