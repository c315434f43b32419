"""The targets of issue 25 ("the energy-conserving family at full speed"), each with reached/missed.

Usage::

    python benchmarks/bench_ecd.py                      # every section, N = 4e6 float32
    python benchmarks/bench_ecd.py --only small,nesterov --n 1e7 --repeats 9

Every figure is a ratio of two things timed **side by side in one process**, interleaved
(A, B, A, B, ...) and reduced to medians, so that both see the same load of a shared machine.
One thread: the script re-runs itself in a child process with ``OMP_NUM_THREADS=1``,
``MKL_NUM_THREADS=1`` and XLA's CPU client on one thread (``XLA_FLAGS``), pinned to one core
(``os.sched_setaffinity``) before JAX or torch start, and sets ``torch.set_num_threads(1)``.
The library itself never changes these settings.

Sections (``--only``, comma-separated):

``eager``     NumPy eager ECDSep step / SGD step, N elements.
``floor``     compiled BBI and ECDSep (with jitter) as a fraction of the memory floor
              (``bench_floor.Floor``: streaming passes touching the bytes the step must touch),
              torch (``physopt_ref.compile``: torch.compile) and jax (``jax.jit``); the
              figure is the ratio of the medians of CPU time (``time.process_time``, one
              thread), the wall-clock ratio next to it (``--floor-backends``,
              ``--floor-steps``).
``compile``   ``physopt_ref.compile(opt)`` / the plain ``opt.step``, every registered optimizer,
              NumPy, torch and JAX (the plain step is the eager step on the same arrays;
              CPU time of the process; ``--compile-backends``).
``nesterov``  ``physopt_ref.compile(nesterov)`` on JAX / optax's Nesterov SGD under
              ``jax.jit`` with donation.
``small``     dim-10 step (float64, one run, one array, checks off) / a hand-written NumPy loop
              of the same update (``bench_steps.HAND``), interleaved loops of
              ``--small-steps``, timed in the thread's CPU time (``time.thread_time``).
``rng``       the generator choice: N 32-bit words (what N float32 normals take) from
              Philox-4x32-10 (``backends/_philox.py``, the one in use), from Threefry-2x32-20
              (``backends/_threefry.py``), and N/2 Philox words (a "half a word per normal"
              variant with 16-bit uniforms), on NumPy eager (cache-sized chunks, as the draws
              run), torch.compile and jax.jit (JAX's default 32-bit mode: uint32 words;
              compiled: the counters an input array, every lane returned, the first call's
              trace + compile time printed); on torch also Philox with the int64 products
              left to wrap (the carrier torch.compile used before issue 21, undefined
              behaviour in inductor's C++). With NumPy, reference rows at the same N: NumPy's
              own normals, the library's normal draw, SGD, ECDSep with nu = 0 and default nu,
              as multiples of the SGD step.
``ensembles`` ``physopt_ref.run`` on the 2-D Ackley problem, 1e5 members, 300 steps, float64:
              BBI / heavy ball on NumPy and on JAX with ``compile=True``, alternating repeats
              (``--ensemble-repeats``), in CPU seconds of the process (one thread: the load of
              other processes does not count) with the wall-clock ratio alongside.

Nothing here is a test; the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SECTIONS = ("eager", "floor", "compile", "nesterov", "small", "ensembles", "rng")
CLASSIC = ("sgd", "heavy_ball", "nesterov", "adam")
ECD = ("bbi", "ecdsep")
LOSS = 1.5
_CHILD = "PHYSOPT_BENCH_CHILD"
RESULTS: list[tuple[str, str, str, bool]] = []  # (measure, figure, target, reached)


def report(measure: str, figure: str, target: str, reached: bool) -> None:
    RESULTS.append((measure, figure, target, reached))
    print(f"  {measure:<58}{figure:>14}   target {target:<10}{'reached' if reached else 'MISSED'}",
          flush=True)


def interleaved(cases: dict[str, Callable[[], Any]], sync: Callable[[Any], None], repeats: int,
                warmup: int = 2, clock: Callable[[], float] = time.perf_counter
                ) -> dict[str, float]:
    """Median seconds of each case, timed in turn (A, B, A, B, ...) with ``clock``."""
    for fn in cases.values():
        for _ in range(warmup):
            sync(fn())
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            t0 = clock()
            sync(fn())
            times[k].append(clock() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _hp(name: str) -> dict[str, Any]:
    from bench_steps import SETTINGS

    return SETTINGS[name]


def _stepper(kind: str, name: str, n: int, compiled: bool, donate: bool = True,
             **hp: Any) -> tuple:
    """One step of ``name`` (``bench_steps.SETTINGS``' hyperparameters, updated by ``hp``)."""
    from bench_floor import _case

    import physopt_ref as po

    one, _ = _case(kind, po.get_optimizer(name, **{**_hp(name), **hp}), n, donate and compiled,
                   compiled)
    return one, _cpu_sync(kind)


def _cpu_sync(kind: str) -> Callable[[Any], None]:
    """Wait for a result on the CPU: JAX dispatches asynchronously, NumPy and torch do not."""
    from bench_floor import _syncer

    return _syncer("jax") if kind == "jax" else (lambda _: None)


# ---------------------------------------------------------------------------------------------


def section_eager(n: int, repeats: int) -> None:
    print(f"NumPy eager, N = {n:.0e} float32:")
    cases = {name: _stepper("numpy", name, n, compiled=False)[0] for name in ("sgd", "ecdsep")}
    t = interleaved(cases, lambda _: None, repeats)
    r = t["ecdsep"] / t["sgd"]
    report("NumPy eager ECDSep / SGD", f"{r:.1f}x", "<= 4x", r <= 4.0)


def section_floor(n: int, repeats: int, kinds: tuple[str, ...] = ("torch", "jax"),
                  names: tuple[str, ...] = ECD) -> None:
    from bench_floor import Floor

    print(f"Compiled steps as a fraction of the memory floor, N = {n:.0e} float32 "
          "(floor: NumPy passes reading params, momentum, grads and writing params, momentum):")
    floor = Floor("numpy", n, repeats)
    for kind in kinds:
        for name in names:
            fn, sync = _stepper(kind, name, n, compiled=True)
            t_step, t_floor = floor.next_to(fn, sync, 2, 1, clock=time.process_time)
            w_step, w_floor = floor.next_to(fn, sync, 2, 1, warmup=0)
            frac = t_floor / t_step
            what = "BBI" if name == "bbi" else "ECDSep with jitter"
            goal = 0.5 if name == "bbi" else 0.3
            report(f"compiled {what}, {kind} ({t_step * 1e3:.2f} ms cpu a step; wall "
                   f"{w_floor / w_step:.2f})", f"{frac:.2f}", f">= {goal}", frac >= goal)
        if "ecdsep" not in names:
            continue
        native, sync = _native_normal(kind, n)
        t_draw, t_floor = floor.next_to(native, sync, 2, 1)
        print(f"    context: {kind}'s own N float32 normals alone ({t_draw * 1e3:.1f} ms) are "
              f"{t_floor / t_draw:.2f} of the same floor", flush=True)


def _native_normal(kind: str, n: int) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    """The framework's own generator drawing N float32 normals, compiled: what the ν-jitter's
    draw alone would cost with the framework's bits (``jax.random.normal`` under ``jax.jit``,
    ``torch.randn`` under ``torch.compile``)."""
    if kind == "jax":
        import jax

        key = jax.random.key(0)
        fn = jax.jit(lambda k: jax.random.normal(k, (n,), dtype="float32"))
        return (lambda: fn(key)), _cpu_sync("jax")
    import torch

    out = torch.empty(n, dtype=torch.float32)
    draw = torch.compile(lambda o: o.normal_())
    return (lambda: draw(out)), _cpu_sync("torch")


def section_compile(n: int, repeats: int,
                    kinds: tuple[str, ...] = ("numpy", "torch", "jax")) -> None:
    import physopt_ref as po

    print(f"physopt_ref.compile / plain step, N = {n:.0e} float32, CPU ms a step (one thread):")
    worst: dict[str, tuple[float, str]] = {}
    for kind in kinds:
        for name in po.registered_names():
            fast, sync = _stepper(kind, name, n, compiled=True)
            plain, _ = _stepper(kind, name, n, compiled=False)
            t = interleaved({"compiled": fast, "plain": plain}, sync, repeats,
                            clock=time.process_time)
            r = t["compiled"] / t["plain"]
            print(f"    {kind:<6}{name:<20}{t['compiled'] * 1e3:>9.2f} ms {t['plain'] * 1e3:>9.2f}"
                  f" ms {r:>6.2f}x", flush=True)
            if r > worst.get(kind, (0.0, ""))[0]:
                worst[kind] = (r, name)
    for kind, (r, name) in worst.items():
        report(f"po.compile / plain step, {kind}, worst ({name})", f"{r:.2f}x", "<= 1.05x",
               r <= 1.05)


def section_nesterov(n: int, repeats: int) -> None:
    import optax
    from bench_floor import optax_stepper

    print(f"jax.jit Nesterov, N = {n:.0e} float32 (params and state donated), ms a step, "
          f"{repeats} interleaved repeats:")
    cases = {"ours": _stepper("jax", "nesterov", n, compiled=True)[0],
             "optax": optax_stepper(optax.sgd(_hp("nesterov")["lr"], momentum=0.9,
                                              nesterov=True), n),
             "heavy ball": _stepper("jax", "heavy_ball", n, compiled=True)[0]}
    sync = _cpu_sync("jax")
    for fn in cases.values():
        sync(fn())
    times: dict[str, list[float]] = {k: [] for k in cases}  # CPU seconds (one thread)
    walls: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            c0, w0 = time.process_time(), time.perf_counter()
            sync(fn())
            times[k].append(time.process_time() - c0)
            walls[k].append(time.perf_counter() - w0)
    med = {k: statistics.median(v) for k, v in times.items()}
    wall = {k: statistics.median(v) for k, v in walls.items()}
    per = sorted(a / b for a, b in zip(times["ours"], times["optax"], strict=True))
    print("    cpu  " + "   ".join(f"{k} {med[k] * 1e3:.2f}" for k in cases)
          + f"   ours / optax per repeat {per[0]:.2f}-{per[-1]:.2f}", flush=True)
    print("    wall " + "   ".join(f"{k} {wall[k] * 1e3:.2f}" for k in cases), flush=True)
    r, rw = med["ours"] / med["optax"], wall["ours"] / wall["optax"]
    report(f"jax.jit Nesterov / optax Nesterov (cpu; wall {rw:.2f}x)", f"{r:.2f}x", "<= 1.2x",
           r <= 1.2)


def section_small(steps: int, repeats: int) -> None:
    from bench_steps import HAND, _ours

    print(f"dim 10, float64, one run: ours / hand-written NumPy loop ({steps} steps a loop, "
          f"{repeats} interleaved loops, medians of the thread's CPU time):")
    x = np.linspace(-1.0, 1.0, 10)
    g = 0.1 * x + 0.05
    for name in (*CLASSIC, *ECD):
        hand = HAND[name]
        # CPU time of this thread (time.thread_time): a loop of microsecond steps on a shared
        # machine otherwise measures the other processes' load as much as the step.
        t = interleaved({"ours": lambda name=name: _ours(name, x, g, steps),
                         "hand": lambda hand=hand: hand(x, g, steps)}, lambda _: None, repeats,
                        warmup=1, clock=time.thread_time)
        r = t["ours"] / t["hand"]
        goal = 3.0 if name in CLASSIC else 10.0
        report(f"dim-10 step / hand-written, {name} ({t['ours'] / steps * 1e6:.1f} us; hand "
               f"{t['hand'] / steps * 1e6:.1f} us)",
               f"{r:.1f}x", f"<= {goal:g}x", r <= goal)


def _generators(kind: str, n: int) -> dict[str, Callable[[], Any]]:
    """Closures producing ``n`` words (Philox, Threefry) and ``n/2`` words (Philox) on ``kind``.

    Every closure returns all the words it computes (four lanes of Philox, two of Threefry), so
    that a compiler cannot drop the rounds of unused lanes. The compiled ones (torch.compile,
    jax.jit) take their block counters as an input array: with the counters made inside the
    graph (``arange``), inductor inlines every intermediate word into its users (a buffer
    that reads no input is recomputed, never loaded), and Threefry's words, each used two or
    three times a round, then make an expression tree that doubles in size each round:
    compiling 4 rounds took 4.6 s, 8 rounds 82 s, 20 rounds did not finish in 15 minutes
    (``docs/speed.md``, "The generator choice").
    """
    from physopt_ref.backends import get_namespace
    from physopt_ref.backends._philox import _CHUNK_BLOCKS, _Int64Words, _rounds, philox4x32
    from physopt_ref.backends._threefry import threefry2x32

    xp = get_namespace("numpy" if kind == "numpy" else kind)
    key = (0x13198A2E, 0x03707344)
    if kind == "jax":
        import jax

        dt = xp.uint32

        def ph(c: Any) -> Any:
            return philox4x32(xp, (c, xp.asarray(7, dtype=dt), xp.asarray(3, dtype=dt),
                                   xp.asarray(0, dtype=dt)), key)

        def tf(c: Any) -> Any:
            return threefry2x32(xp, (c, xp.asarray(7, dtype=dt)), key)

        jph, jtf = jax.jit(ph), jax.jit(tf)
        ctr = {b: xp.arange(b, dtype=dt) for b in (n // 4, n // 2, n // 8)}
        wait = jax.block_until_ready  # every lane (a tuple: the section's sync sees no array)
        return {"philox": lambda: wait(jph(ctr[n // 4])),
                "threefry": lambda: wait(jtf(ctr[n // 2])),
                "philox-half": lambda: wait(jph(ctr[n // 8]))}
    if kind == "torch":
        import torch

        def tph(c: Any) -> Any:
            return philox4x32(xp, (c, 7, 3, 0), key)

        def ttf(c: Any) -> Any:
            return threefry2x32(xp, (c, 7), key)

        def wrapping(c: Any) -> Any:  # the carrier used under torch.compile before issue 21
            return _rounds(_Int64Words(xp), c, 7, 3, 0, *key, 10)

        ctr = {b: torch.arange(b, dtype=torch.int64) for b in (n // 4, n // 2, n // 8)}
        fns = {"philox": (tph, n // 4), "threefry": (ttf, n // 2),
               "philox-half": (tph, n // 8), "philox-wrapping": (wrapping, n // 4)}
        out = {}
        for k, (f, blocks) in fns.items():
            g = torch.compile(f, fullgraph=True, dynamic=False)
            out[k] = lambda g=g, c=ctr[blocks]: g(c)
        return out

    def chunked(gen: Callable[[Any], Any], blocks: int, per: int) -> Callable[[], Any]:
        def run() -> Any:
            out = None
            for b in range(0, blocks, per):
                c = np.arange(b, min(blocks, b + per), dtype=np.int64)
                out = gen(c)
            return out
        return run

    return {
        "philox": chunked(lambda c: philox4x32(xp, (c, 7, 3, 0), key), n // 4, _CHUNK_BLOCKS),
        "threefry": chunked(lambda c: threefry2x32(xp, (c, 7), key), n // 2, 2 * _CHUNK_BLOCKS),
        "philox-half": chunked(lambda c: philox4x32(xp, (c, 7, 3, 0), key), n // 8,
                               _CHUNK_BLOCKS),
    }


def section_rng(n: int, repeats: int, kinds: tuple[str, ...] = ("numpy", "torch", "jax")) -> None:
    print(f"Generators: {n:.0e} words (Philox-4x32-10, Threefry-2x32-20) and {n / 2:.0e} "
          "(Philox, half a word per normal), ms:")
    wins = []
    for kind in kinds:
        cases, sync = _generators(kind, n), _cpu_sync(kind)
        if kind != "numpy":  # the first call traces and compiles
            first = {}
            for k, fn in cases.items():
                t0 = time.perf_counter()
                sync(fn())
                first[k] = time.perf_counter() - t0
            print(f"    {kind:<6} first call (trace + compile), s: "
                  + "  ".join(f"{k} {v:.1f}" for k, v in first.items()), flush=True)
        t = interleaved(cases, sync, repeats)
        r = t["threefry"] / t["philox"]
        wins.append(r < 1.0)
        print(f"    {kind:<6} philox {t['philox'] * 1e3:8.2f}  threefry {t['threefry'] * 1e3:8.2f}"
              f"  philox-half {t['philox-half'] * 1e3:8.2f}   threefry / philox {r:.2f}x",
              flush=True)
        if "philox-wrapping" in t:  # torch.compile: overflow-free products (issue 21) / wrapping
            r = t["philox"] / t["philox-wrapping"]
            print(f"    {kind:<6} philox with wrapping int64 products "
                  f"{t['philox-wrapping'] * 1e3:8.2f}   overflow-free / wrapping {r:.2f}x",
                  flush=True)
            report("torch.compile Philox words, overflow-free / wrapping products", f"{r:.2f}x",
                   "record", True)
    report("backends where Threefry-2x32-20 beats Philox-4x32-10", f"{sum(wins)} of {len(wins)}",
           "choose", True)
    if "numpy" in kinds:
        _rng_reference(n, repeats)


def _rng_reference(n: int, repeats: int) -> None:
    """What the "NumPy eager ECDSep / SGD <= 4x" target is up against, at the same N, side by
    side (interleaved, medians of the process's CPU time), as multiples of the SGD step:
    NumPy's own fastest normals (``default_rng().standard_normal(n, dtype=float32)``, PCG64 +
    ziggurat, not keyed), the library's N float32 normals (``physopt_ref.backends.normal``:
    Philox-4x32-10 + Box-Muller), the SGD step, ECDSep with ν = 0 (no draw) and with the
    default ν (one normal an element)."""
    from physopt_ref.backends import normal

    like = np.zeros(1, dtype=np.float32)
    gen = np.random.default_rng(0)
    cases = {
        "sgd": _stepper("numpy", "sgd", n, compiled=False)[0],
        "ecdsep nu=0": _stepper("numpy", "ecdsep", n, compiled=False, nu=0.0)[0],
        "ecdsep": _stepper("numpy", "ecdsep", n, compiled=False)[0],
        "numpy standard_normal": lambda: gen.standard_normal(n, dtype=np.float32),
        "library normal": lambda: normal(0, 1, (n,), like=like),
    }
    t = interleaved(cases, lambda _: None, repeats, clock=time.process_time)
    sgd = t["sgd"]
    print(f"  Reference, NumPy eager, N = {n:.0e} float32, CPU ms and multiples of the SGD step:")
    for k, v in t.items():
        print(f"    {k:<24}{v * 1e3:9.2f} ms {v / sgd:7.2f}x", flush=True)
    best = (t["ecdsep nu=0"] + t["numpy standard_normal"]) / sgd
    print(f"    ECDSep nu=0 + NumPy's own normals (a lower bound for any generator): "
          f"{best:.2f}x SGD; the jitter's share of the ECDSep step "
          f"{(t['ecdsep'] - t['ecdsep nu=0']) / t['ecdsep']:.0%}", flush=True)
    report("NumPy eager ECDSep / SGD (reference rows)", f"{t['ecdsep'] / sgd:.1f}x", "<= 4x",
           t["ecdsep"] / sgd <= 4.0)
    report("  ECDSep nu=0 + NumPy's own normals / SGD", f"{best:.1f}x", "<= 4x", best <= 4.0)


def _ensemble_runs(members: int, steps: int) -> dict[tuple[str, str], Callable[[], None]]:
    """One ``physopt_ref.run`` each of heavy ball and BBI on the 2-D Ackley ensemble, NumPy and
    JAX ``run(compile=True)`` (float64, tracing and compilation included, as a user sees it)."""
    import jax
    import jax.numpy as jnp
    from physopt_ref.problems import ackley

    import physopt_ref as po
    from physopt_ref.cli.problem_settings import SETTINGS as PROBLEMS

    setting = PROBLEMS["ackley_b0.02"]
    problem = ackley(**setting.kwargs)
    lo, hi = setting.box
    x0 = np.random.default_rng(0).uniform(lo, hi, size=(members, problem.dim))
    kw = {"target": problem.f_min + setting.target_tol, "record_every": 5, "check_every": 50}
    cases: dict[tuple[str, str], Callable[[], None]] = {}
    for name in ("heavy_ball", "bbi"):
        opt = po.get_optimizer(name, **setting.hyper[name].hp)

        def on_numpy(opt: Any = opt) -> None:
            po.run(opt, problem, x0, steps, **kw)

        def on_jax(opt: Any = opt) -> None:
            with jax.enable_x64(True):
                trace = po.run(opt, problem, jnp.asarray(x0), steps, compile=True, **kw)
            assert trace.losses.dtype == np.float64

        cases[name, "numpy"], cases[name, "jax"] = on_numpy, on_jax
    return cases


def section_ensembles(members: int = 100_000, steps: int = 300, repeats: int = 3,
                      kinds: tuple[str, ...] = ("numpy", "jax")) -> None:
    """BBI / heavy ball on the issue's ensemble: each run timed in CPU seconds of this process
    (``time.process_time``: one thread, so the time other processes take from the core does
    not count) and wall seconds, heavy ball and BBI alternating, ``repeats`` times; the figure
    is the ratio of the medians, with the spread of the per-repeat ratios."""
    print(f"Ensembles: 2-D Ackley (b = 0.02), {members:.0e} members, {steps} steps, float64, "
          f"physopt_ref.run, {repeats} alternating repeats (CPU s / wall s):")
    for case in _ensemble_runs(64, 2).values():  # start JAX and NumPy before any timing
        case()
    cases = _ensemble_runs(members, steps)
    for kind, label in (("numpy", "NumPy"), ("jax", "JAX run(compile=True)")):
        if kind not in kinds:
            continue
        cpu: dict[str, list[float]] = {"heavy_ball": [], "bbi": []}
        wall: dict[str, list[float]] = {"heavy_ball": [], "bbi": []}
        for _ in range(repeats):
            for name in ("heavy_ball", "bbi"):
                c0, w0 = time.process_time(), time.perf_counter()
                cases[name, kind]()
                cpu[name].append(time.process_time() - c0)
                wall[name].append(time.perf_counter() - w0)
        for name in cpu:
            print(f"    {kind:<6}{name:<12}cpu " + " ".join(f"{t:6.2f}" for t in cpu[name])
                  + "   wall " + " ".join(f"{t:6.2f}" for t in wall[name]), flush=True)
        per = sorted(b / a for a, b in zip(cpu["heavy_ball"], cpu["bbi"], strict=True))
        r = statistics.median(cpu["bbi"]) / statistics.median(cpu["heavy_ball"])
        rw = statistics.median(wall["bbi"]) / statistics.median(wall["heavy_ball"])
        print(f"    {kind:<6}BBI / heavy ball: cpu {r:.2f}x (per repeat "
              f"{per[0]:.2f}-{per[-1]:.2f}), wall {rw:.2f}x", flush=True)
        report(f"Ackley 1e5 ensemble, BBI / heavy ball, {label} (cpu; wall {rw:.2f}x)",
               f"{r:.2f}x", "<= 1.5x", r <= 1.5)


# ---------------------------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({_CHILD: "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "XLA_FLAGS": (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                              "intra_op_parallelism_threads=1").strip()})
    return env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--n", default="4e6", help="elements of the large steps (float32)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--small-steps", type=int, default=2000)
    parser.add_argument("--members", default="1e5", help="ensemble size of the ensembles section")
    parser.add_argument("--ensemble-steps", type=int, default=300)
    parser.add_argument("--ensemble-repeats", type=int, default=3)
    parser.add_argument("--ensemble-backends", default="numpy,jax")
    parser.add_argument("--rng-backends", default="numpy,torch,jax",
                        help="backends of the rng section")
    parser.add_argument("--floor-backends", default="torch,jax",
                        help="backends of the floor section")
    parser.add_argument("--floor-steps", default="bbi,ecdsep",
                        help="optimizers of the floor section")
    parser.add_argument("--compile-backends", default="numpy,torch,jax",
                        help="backends of the compile section")
    args = parser.parse_args(argv)
    if os.environ.get(_CHILD) != "1":  # one thread everywhere: re-run in a configured child
        raise SystemExit(subprocess.call([sys.executable, os.path.abspath(__file__),
                                          *(sys.argv[1:] if argv is None else argv)],
                                         env=_child_env()))
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
    n = int(float(args.n))
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in only:
        if s not in SECTIONS:
            parser.error(f"unknown section {s!r}; choose from {', '.join(SECTIONS)}")
    print(f"bench_ecd: one thread on CPU {cpu}; N = {n:.0e}; {args.repeats} interleaved repeats")
    for s in only:
        if s == "small":
            section_small(args.small_steps, args.repeats)
        elif s == "ensembles":
            section_ensembles(int(float(args.members)), args.ensemble_steps,
                              args.ensemble_repeats, tuple(args.ensemble_backends.split(",")))
        elif s == "rng":
            section_rng(n, args.repeats, tuple(args.rng_backends.split(",")))
        elif s == "floor":
            section_floor(n, args.repeats, tuple(args.floor_backends.split(",")),
                          tuple(args.floor_steps.split(",")))
        elif s == "compile":
            section_compile(n, args.repeats, tuple(args.compile_backends.split(",")))
        else:
            globals()[f"section_{s}"](n, args.repeats)
    print()
    print("| measure | measured | target | |\n|---|---|---|---|")
    for measure, figure, target, reached in RESULTS:
        print(f"| {measure} | {figure} | {target} | {'reached' if reached else 'missed'} |")


if __name__ == "__main__":
    main()
