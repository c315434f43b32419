"""The science targets of issue 27, measured side by side in one run.

1. LJ38 from the same 16 random starts, 80 000 evaluations each method (one evaluation = one
   energy and gradient of one cluster): the global-search driver around heavy ball and BBI
   (16 walkers started at the 16 starts, 100 steps a round, its defaults otherwise: L-BFGS-B
   polish of the 4 best runs, basin hopping of the 2 best walkers with the cluster's own hops,
   physics 25% of the spending, T = 1) against SciPy's ``basinhopping`` (L-BFGS-B local
   minimiser, its default settings, from the best of the 16 starts; stopped when it has used
   the budget). Best energy found; the global minimum is -173.928427 (CCD). Each driver runs
   with its defaults and with the documented cluster settings (:data:`CLUSTER_SETTINGS`);
   ``--lj38-seed 38,7`` repeats everything on other sets of starts.
2. LJ13: the fraction of driver runs (independent seeds) that reach E* = -44.326801 within
   30 000 evaluations, for heavy ball and BBI.
3. BBOB (needs cocoex): pooled runtime ECDF at 1000 d evaluations, 24 functions, the driver
   (with and without the polish, its defaults: one setting for every function) beside
   L-BFGS-B and CMA-ES; ``--dims`` and ``--instances`` choose the problems.

Usage::

    python benchmarks/bench_search.py [--quick] [--only lj38,lj13,bbob] [--dims 2]
        [--instances 1,2,3,4,5] [--no-physics-alone] [--lj38-seed 38,7]
        [--lj38-methods heavy_ball,bbi,basinhopping] [--lj38-settings defaults,cluster]

``--quick`` cuts the LJ13 work to 4 seeds. ``--profile B`` runs the LJ38 driver around heavy
ball with a budget of ``B`` evaluations under ``cProfile`` instead, and prints where the time
goes (the share spent in the energy and gradient itself).
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np
from physopt_ref.problems import lennard_jones

import physopt_ref as po

LJ38_MIN = -173.928427  # CCD (Wales & Doye 1997), problems.clusters.LJ_MINIMA[38]
LJ13_MIN = -44.326801  # CCD, problems.clusters.LJ_MINIMA[13]


class _BudgetError(Exception):
    pass


def _first_then_random(problem, starts):
    """The driver's sampler: the given starts first, then the problem's random starts."""
    used = [0]

    def sampler(rng, n):
        used[0] += 1
        if used[0] == 1:
            return starts[:n]
        return problem.random_starts(n, int(rng.integers(2**31)))

    return sampler


#: The documented cluster settings of the driver (docs/bbob.md, "Clusters"): passed as a user
#: would pass them; ``--lj38-settings defaults`` runs the driver's defaults instead.
CLUSTER_SETTINGS = {"crossover_rate": 0.5, "distinct_tol": 1e-6, "elite": 8, "keep_best": True}


def lj38(methods: set[str], budget: int = 80_000, members: int = 16, seed: int = 38,
         settings: tuple[str, ...] = ("defaults", "cluster"),
         ) -> list[tuple[str, float, int, float]]:
    from threadpoolctl import threadpool_limits

    problem = lennard_jones(38)
    starts = problem.random_starts(members, seed)
    rows = []
    for label, opt in [("driver(heavy_ball)", po.heavy_ball(lr=1e-3, momentum=0.9)),
                       ("driver(bbi)", po.bbi(lr=1e-3))]:
        if label.removeprefix("driver(").removesuffix(")") not in methods:
            continue
        for which in settings:
            kwargs = CLUSTER_SETTINGS if which == "cluster" else {}
            t = time.perf_counter()
            r = po.search(opt, problem, budget=budget, members=members, round_steps=100,
                          sampler=_first_then_random(problem, starts), seed=seed, **kwargs)
            name = f"{label}, {which}"
            rows.append((name, r.best_value, r.evaluations, time.perf_counter() - t))
            print(_lj38_row(*rows[-1]), f"phases {r.phase_evaluations}, best from "
                  f"{r.provenance}", flush=True)
    if "basinhopping" not in methods:
        return rows
    from scipy.optimize import basinhopping

    count = [0]
    best = [np.inf]

    def fun(x):
        if count[0] >= budget:
            raise _BudgetError
        count[0] += 1
        f, g = problem.value_and_grad(np.asarray(x))
        best[0] = min(best[0], float(f))
        return float(f), np.asarray(g)

    e0 = problem.value(starts)
    t = time.perf_counter()
    try:  # one BLAS thread, as in the driver's polish (same results, no waiting threads)
        with threadpool_limits(limits=1, user_api="blas"):
            basinhopping(fun, starts[int(np.argmin(e0))], niter=10**6,
                         minimizer_kwargs={"method": "L-BFGS-B", "jac": True}, seed=seed)
    except _BudgetError:
        pass
    rows.append(("scipy basinhopping", best[0], count[0], time.perf_counter() - t))
    print(_lj38_row(*rows[-1]), flush=True)
    return rows


def _lj38_row(label: str, e: float, n: int, s: float) -> str:
    ok = "reached" if e <= -173.25 else "missed"
    return f"{label:34}{e:14.4f}{n:13d}{s:9.1f}  <= -173.25: {ok}"


def lj13(seeds: int, budget: int = 30_000,
         settings: tuple[str, ...] = ("defaults",)) -> list[tuple[str, int, int, float]]:
    problem = lennard_jones(13)
    rows = []
    for label, opt in [("driver(heavy_ball)", po.heavy_ball(lr=1e-3, momentum=0.9)),
                       ("driver(bbi)", po.bbi(lr=1e-3))]:
        for which in settings:
            kwargs = CLUSTER_SETTINGS if which == "cluster" else {}
            t = time.perf_counter()
            hits = sum(po.search(opt, problem, budget=budget, members=8, round_steps=100,
                                 target=LJ13_MIN + 1e-6, seed=s, **kwargs).reached_target
                       for s in range(seeds))
            rows.append((f"{label}, {which}", hits, seeds, time.perf_counter() - t))
    return rows


def bbob(dims: list[int], inst: list[int], physics_alone: bool) -> str:
    from physopt_ref.bbob import bbob as run_bbob

    methods = {"driver(heavy_ball)": po.heavy_ball(lr=0.01, momentum=0.9),
               "driver(bbi)": po.bbi(lr=0.01)}
    out = []
    for polish in (("lbfgsb", None) if physics_alone else ("lbfgsb",)):
        t = time.perf_counter()
        r = run_bbob(methods, dimensions=dims, instances=inst, budget_per_dim=1000,
                     peers=("lbfgsb", "cma") if polish else (), polish=polish)
        out.append(f"polish={polish} ({time.perf_counter() - t:.0f} s):\n{r.table()}")
        print(out[-1], flush=True)
    return "\n".join(out)


def profile(budget: int) -> None:
    """The LJ38 driver (heavy ball, the benchmark's starts) under cProfile."""
    import cProfile
    import pstats

    problem = lennard_jones(38)
    starts = problem.random_starts(16, 38)
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    r = po.search(po.heavy_ball(lr=1e-3, momentum=0.9), problem, budget=budget, members=16,
                  round_steps=100, sampler=_first_then_random(problem, starts), seed=38)
    prof.disable()
    total = time.perf_counter() - t
    stats = pstats.Stats(prof)
    energy = sum(v[3] for k, v in stats.stats.items()  # type: ignore[attr-defined]
                 if k[2] == "_value_and_grad" and k[0].endswith("clusters.py"))
    print(f"LJ38 driver(heavy_ball), budget {budget}: best {r.best_value:.4f}, {total:.2f} s, "
          f"of which energy+gradient {energy:.2f} s ({energy / total:.0%}); "
          f"{total / r.evaluations * 1e6:.0f} us per evaluation")
    stats.sort_stats("tottime").print_stats(12)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="lj38,lj13,bbob")
    ap.add_argument("--lj38-methods", default="heavy_ball,bbi,basinhopping",
                    help="LJ38: which of heavy_ball, bbi, basinhopping to run (the same starts "
                    "and budget; separate processes can run them side by side)")
    ap.add_argument("--lj38-seed", default="38",
                    help="LJ38: seeds (comma-separated) of the 16 random starts and of the "
                    "driver / basinhopping; each seed is one set of starts")
    ap.add_argument("--lj38-settings", default="defaults,cluster",
                    help="LJ38: the driver's settings, 'defaults' and/or 'cluster' "
                    "(CLUSTER_SETTINGS, docs/bbob.md)")
    ap.add_argument("--lj13-settings", default="defaults",
                    help="LJ13: the driver's settings, 'defaults' and/or 'cluster'")
    ap.add_argument("--profile", type=int, default=0, metavar="BUDGET",
                    help="profile the LJ38 driver around heavy ball at this budget, then stop")
    ap.add_argument("--dims", default="2")
    ap.add_argument("--instances", default="1,2,3,4,5")
    ap.add_argument("--no-physics-alone", action="store_true",
                    help="BBOB: leave out the driver without the polish")
    args = ap.parse_args()
    if args.profile:
        profile(args.profile)
        return
    only = set(args.only.split(","))
    if "lj38" in only:
        print("LJ38, 16 random starts, 80 000 evaluations each (global minimum -173.928427)")
        print(f"{'method':34}{'best energy':>14}{'evaluations':>13}{'seconds':>9}  target",
              flush=True)
        for seed in (int(v) for v in args.lj38_seed.split(",")):
            print(f"starts and seed {seed}:", flush=True)
            lj38(set(args.lj38_methods.split(",")), seed=seed,
                 settings=tuple(args.lj38_settings.split(",")))
    if "lj13" in only:
        seeds = 4 if args.quick else 16
        print(f"\nLJ13, {seeds} driver runs x 30 000 evaluations: fraction reaching {LJ13_MIN}")
        for label, hits, n, s in lj13(seeds, settings=tuple(args.lj13_settings.split(","))):
            ok = "reached" if hits / n >= 0.5 else "missed"
            print(f"{label:34}{hits:4d}/{n:<4d}{hits / n:8.0%}{s:9.1f} s  >= 50%: {ok}")
    if "bbob" in only:
        if importlib.util.find_spec("cocoex") is None:
            print("\nBBOB: cocoex not installed (pip install 'physopt_ref[bbob]')")
        else:
            print("\nBBOB, runtime ECDF at 1000 d evaluations (finite-difference gradients)")
            bbob([int(v) for v in args.dims.split(",")],
                 [int(v) for v in args.instances.split(",")], not args.no_physics_alone)


if __name__ == "__main__":
    main()
