"""Scale-out: one process against a Dask LocalCluster of worker processes, same ensemble.

Usage::

    flock /work/cpu.lock python benchmarks/bench_scale.py    # the workload of docs/benchmarks.md
    python benchmarks/bench_scale.py --members 100000 --steps 100    # a quick look

The workload (the issue's): a ``--members`` (default 1e6) ensemble of 2-D Ackley (b = 0.02)
starts, U[-4, 4]² as in ``physopt-ref compare`` (its seeded starts), for ``--steps`` (default
1000) steps, with heavy ball and with BBI at the compare settings of that problem
(:mod:`physopt_ref.cli.problem_settings`), the compare target f* + 5e-4 and its check every 50
steps. Only the start and the last step are recorded (every step of 1e6 runs would be 8 GB of
losses per record field).

For each optimizer:

1. **one process**: ``physopt_ref.run`` on the whole ensemble, in a fresh process (so that its
   peak resident memory is its own);
2. with ``--serial-chunks``, also **one process, chunked**: ``run_chunked(executor=None)``, the
   same chunks one after the other (separates what chunking itself changes, e.g. cache reuse,
   from what the workers add);
3. **cluster**: ``run_chunked`` on a fresh ``LocalCluster(n_workers=--workers,
   threads_per_worker=1, processes=True)`` as ``physopt-ref run --workers`` starts it
   (:func:`physopt_ref.cli.cluster.local_cluster`: without Dask's ``MALLOC_TRIM_THRESHOLD_``,
   which halves NumPy's speed here), chunks from the default 256 MiB budget spread over the
   workers. The cluster's start-up is timed separately and not counted.

Printed: seconds, throughput in member-steps per second, the ratio to one process, the CPU
seconds spent (user + system, of the one process and summed over the workers: how much work
the split adds, and how many cores the workers actually got while other jobs ran), the peak
resident memory (``ru_maxrss``) of the one process and of each worker (and each worker's
resident memory before its first chunk: the interpreter with NumPy and Dask), the plan (chunks,
estimated bytes per chunk), and whether the cluster's result equals the one-process result bit
for bit (status, best and final values, steps). Nothing here is a test: the numbers depend on the
machine and on what else runs on it (the load average is printed).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import resource
import time
from typing import Any

import numpy as np

import physopt_ref as po
from physopt_ref.cli.cluster import local_cluster
from physopt_ref.cli.problem_settings import SETTINGS
from physopt_ref.cli.settings import build_problem, starts_for

SETTING = SETTINGS["ackley_b0.02"]
OPTIMIZERS = {
    "heavy_ball": SETTING.hyper["heavy_ball"].hp,
    "bbi": SETTING.hyper["bbi"].hp,
}
CHECK_EVERY = 50  # as physopt-ref compare


def _workload(name: str, members: int, seed: int) -> tuple[Any, Any, np.ndarray, float]:
    problem = build_problem(SETTING)
    x0 = np.asarray(starts_for(problem, SETTING, members, seed), dtype=np.float64)
    opt = po.get_optimizer(name, **OPTIMIZERS[name], **({"seed": seed} if name == "bbi" else {}))
    return opt, problem, x0, problem.f_min + SETTING.target_tol


def _summary(trace: po.Trace) -> dict[str, np.ndarray]:
    return {"status": trace.status, "best_value": trace.best_value,
            "final_value": trace.final_value, "steps_taken": trace.steps_taken,
            "steps": np.asarray(trace.steps)}


def _maxrss() -> int:
    """Peak resident memory of this process, bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one_process(name: str, members: int, steps: int, seed: int, chunked: bool
                ) -> tuple[float, float, int, dict[str, np.ndarray]]:
    """Run in a fresh process: seconds, CPU seconds, peak RSS, the result's per-run arrays."""
    opt, problem, x0, target = _workload(name, members, seed)
    kw = {"target": target, "check_every": CHECK_EVERY, "record_every": steps}
    cpu, t0 = _cpu_seconds(), time.perf_counter()
    if chunked:
        trace = po.run_chunked(opt, problem, x0, steps, **kw)
    else:
        trace = po.run(opt, problem, x0, steps, **kw)
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu
    return seconds, cpu, _maxrss(), _summary(trace)


def _fresh(fn: Any, *args: Any) -> Any:
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def on_cluster(name: str, members: int, steps: int, seed: int, workers: int) -> dict[str, Any]:
    from distributed import Client

    opt, problem, x0, target = _workload(name, members, seed)
    kw = {"target": target, "check_every": CHECK_EVERY, "record_every": steps}
    t0 = time.perf_counter()
    with local_cluster(workers) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("physopt_ref"))  # the import is start-up, not work
        start_up = time.perf_counter() - t0
        before = client.run(_current_rss)
        plan = po.plan_chunks(opt, problem, x0, steps, parallelism=workers,
                              record_every=steps)
        cpu = client.run(_cpu_seconds)
        t1 = time.perf_counter()
        trace = po.run_chunked(opt, problem, x0, steps, executor=client, **kw)
        seconds = time.perf_counter() - t1
        cpu = {w: c - cpu[w] for w, c in client.run(_cpu_seconds).items()}
        peaks = client.run(_maxrss)
    return {"seconds": seconds, "cpu": list(cpu.values()), "start_up": start_up,
            "before": list(before.values()), "peaks": list(peaks.values()), "plan": plan,
            "summary": _summary(trace)}


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=float, default=1e6, help="ensemble size (1e6)")
    parser.add_argument("--steps", type=int, default=1000, help="steps per run (1000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--optimizers", default="heavy_ball,bbi")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serial-chunks", action="store_true",
                        help="also time the chunks one after the other in one process")
    args = parser.parse_args()
    members = int(args.members)
    print(f"2-D Ackley (b = 0.02), {members} starts U[-4,4]^2, {args.steps} steps, target "
          f"f* + {SETTING.target_tol:g}, check every {CHECK_EVERY}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at the start")
    for name in args.optimizers.split(","):
        print(f"\n{name} {OPTIMIZERS[name]}")
        one_s, one_cpu, one_rss, one = _fresh(one_process, name, members, args.steps,
                                              args.seed, False)
        work = members * int(one["steps"])
        print(f"  one process         {one_s:7.1f} s  {work / one_s:9.3g} member-steps/s  1.00x  "
              f"CPU {one_cpu:7.1f} s  peak RSS {_mib(one_rss)}")
        if args.serial_chunks:
            ch_s, ch_cpu, ch_rss, ch = _fresh(one_process, name, members, args.steps,
                                              args.seed, True)
            same = all(np.array_equal(ch[k], one[k]) for k in one)
            print(f"  one process, chunks {ch_s:7.1f} s  {work / ch_s:9.3g} member-steps/s  "
                  f"{one_s / ch_s:.2f}x  CPU {ch_cpu:7.1f} s  peak RSS {_mib(ch_rss)}  "
                  f"identical: {'yes' if same else 'NO'}")
        res = on_cluster(name, members, args.steps, args.seed, args.workers)
        same = all(np.array_equal(res["summary"][k], one[k]) for k in one)
        plan = res["plan"]
        peaks = ", ".join(_mib(p) for p in res["peaks"])
        before = ", ".join(_mib(p) for p in res["before"])
        cpu = sum(res["cpu"])
        print(f"  {args.workers} workers           {res['seconds']:7.1f} s  "
              f"{work / res['seconds']:9.3g} member-steps/s  {one_s / res['seconds']:.2f}x  "
              f"CPU {cpu:7.1f} s ({', '.join(f'{c:.0f}' for c in res['cpu'])})  peak RSS per "
              f"worker {peaks} (before the run {before})  identical: {'yes' if same else 'NO'}")
        print(f"    CPU seconds per member-step: the workers {cpu / one_cpu:.2f}x one process's; "
              f"the workers were busy {cpu / res['seconds']:.2f} of {args.workers} cores")
        print(f"    plan: {plan.n_chunks} chunks of <= {plan.chunk_size} runs, estimated "
              f"{_mib(plan.chunk_bytes)} per chunk (budget {_mib(plan.memory_budget)}); "
              f"cluster start-up {res['start_up']:.1f} s (not counted); loop steps "
              f"{int(one['steps'])}, {int(np.sum(one['status'] == 1))} runs reached the target")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
