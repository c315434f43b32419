"""Optimizer steps against the memory floor: eager, donated and compiled, next to torch and optax.

Usage::

    python benchmarks/bench_floor.py                       # CPU, one core, N = 1e7 float32
    python benchmarks/bench_floor.py --backend cupy        # GPU (CuPy), N = 1e8, HBM floor
    python benchmarks/bench_floor.py --backend torch       # GPU (torch on CUDA), N = 1e8

An element-wise step does almost no arithmetic: reading and writing its arrays once bounds it.
For every registered optimizer (one leaf of N elements, ``grads`` a separate array, the loss a
fixed positive number, each optimizer's benchmark settings of ``bench_steps.py``) it prints the
median time of a step and its *fraction of the floor*: the time of the floor divided by the
step's time (1 = at the floor).

**The floor** is measured next to every case, in the same process: in-place streaming passes
over scratch arrays of the same size that touch exactly the bytes the step must touch, i.e.
read the parameters, the gradient and every state array shaped like the parameters, and write
the parameters and those state arrays (one ``w += r`` pass pairing the gradient with a written
array, one ``w *= 1`` pass for every other written array; NumPy on the CPU, the backend's own
kernels on a GPU). Per-run scalars are not counted.

**The cases** (CPU): ``numpy`` the pure eager step; ``numpy donated`` ``step(...,
donate=True)``; ``jax jit`` ``physopt_ref.compile`` on JAX arrays (``jax.jit`` with
``params`` and ``state`` donated); ``torch compile`` ``physopt_ref.compile`` on torch tensors
(``torch.compile`` of the donated step). GPU: the backend's eager, donated and (torch)
compiled steps. **Peers** in the same run: torch's fused Adam and fused SGD with momentum
(``fused=True``; the foreach implementation where fused is unavailable, and the table says
which), and optax's Adam under ``jax.jit`` with donation (CPU).

On the CPU the process is pinned to one core (``os.sched_setaffinity``, before JAX starts, so
that XLA runs one thread) and torch to one thread (``torch.set_num_threads(1)``): the benchmark
sets these for itself; the library never changes a backend's settings.

**Ensembles** (CPU, ``--skip-ensembles`` to omit): ``physopt_ref.run`` on the 2-D Ackley
problem (b = 0.02, the compare settings: starts U[-4, 4]², target f* + 5e-4, heavy ball and
BBI with their compare hyperparameters) with 1e5 members for 1000 steps, float64, recording
every 5 steps: NumPy eager, JAX with ``run(..., compile=True)``, and a hand-written NumPy
heavy-ball loop for reference.

``--half`` adds **half-precision rows** (CPU): the ``torch compile`` step on bfloat16 and on
float16 parameters and state, each next to its own floor, the float32 passes over N/2 elements
(the same bytes: a half-precision step with a half-precision state moves
``(2 written + read-only) x 2 x N`` bytes, half of a float32 step's; BBI's and ECDSep's float32
state counts 4 bytes), with the bytes in the note.

``--chunks`` adds the scan behind ``physopt_ref.core.donate.CHUNK_ELEMENTS`` (NumPy donated steps
at several chunk sizes). Nothing here is a test; the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# --- what each row must reach (the targets) ------------------------------------------

FLOOR_TARGET = {  # compiled steps, CPU
    **dict.fromkeys(("sgd", "heavy_ball", "nesterov", "adam", "dyna", "dyna_prototype",
                     "coolmomentum", "gravity", "dynamic_relaxation"), 0.8),
    "bbi": 0.2, "ecdsep": 0.2,
}
CLASSIC = ("sgd", "heavy_ball", "nesterov", "adam")
DONATED_CLASSIC_TARGET = 0.3
WITHIN_FUSED = 1.2  # compiled elementwise steps: at most 20% slower per byte than torch fused
GPU_TARGET = {"bbi": 0.3, "ecdsep": 0.3}
GPU_ELEMENTWISE_TARGET = 0.7
LOSS = 1.5


def _pin_one_core() -> int:
    """Pin this process to one CPU (before JAX and torch start their thread pools)."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


# ---------------------------------------------------------------------------------------------
# Timing and the floor


def median_time(step: Callable[[], Any], sync: Callable[[Any], None], repeats: int,
                warmup: int = 3) -> float:
    """Median seconds of ``step()`` (each call synchronised), after ``warmup`` calls."""
    for _ in range(warmup):
        sync(step())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sync(step())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Floor:
    """In-place streaming passes over scratch arrays: the bytes a step must touch.

    :meth:`next_to` times a step and the passes that read as many arrays as the step reads
    and write as many as it writes, alternately in one loop, so that both see the same state
    of a shared machine.
    """

    def __init__(self, kind: str, n: int, repeats: int) -> None:
        self.kind, self.n, self.repeats = kind, n, repeats
        self.arrays: list[Any] = []
        if kind == "numpy":
            self._lib: Any = np
        elif kind == "cupy":
            import cupy

            self._lib = cupy
        else:
            import torch

            self._lib = torch
        self.sync = _syncer("torch-cuda" if kind == "torch" else kind)

    def _scratch(self, count: int) -> list[Any]:
        while len(self.arrays) < count:
            if self.kind == "torch":
                self.arrays.append(self._lib.full((self.n,), 0.5, device="cuda"))
            else:
                self.arrays.append(self._lib.full(self.n, 0.5, dtype=np.float32))
        return self.arrays[:count]

    def passes(self, written: int, read_only: int) -> Callable[[], Any]:
        """One floor: read ``written + read_only`` arrays, write ``written`` of them."""
        arrays = self._scratch(written + read_only)
        w, r = arrays[:written], arrays[written:]
        lib, torch = self._lib, self.kind == "torch"

        def run() -> Any:
            for i, a in enumerate(w):
                if i < len(r):
                    a.add_(r[i]) if torch else lib.add(a, r[i], out=a)
                else:
                    a.mul_(1.0) if torch else lib.multiply(a, 1.0, out=a)
            return w[0]

        return run

    def next_to(self, step: Callable[[], Any], sync: Callable[[Any], None], written: int,
                read_only: int, warmup: int = 3,
                clock: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
        """Median seconds of ``step()`` and of the floor, measured alternately with ``clock``
        (wall time by default; ``time.process_time`` for the CPU time of a one-thread process,
        which the load of other processes does not inflate)."""
        floor = self.passes(written, read_only)
        for _ in range(warmup):
            sync(step())
            self.sync(floor())
        t_step, t_floor = [], []
        for _ in range(self.repeats):
            t0 = clock()
            sync(step())
            t1 = clock()
            self.sync(floor())
            t2 = clock()
            t_step.append(t1 - t0)
            t_floor.append(t2 - t1)
        return statistics.median(t_step), statistics.median(t_floor)

    def bandwidth(self, written: int, read_only: int) -> float:
        """GB/s of the floor passes (median of the repeats)."""
        t = median_time(self.passes(written, read_only), self.sync, self.repeats)
        return (2 * written + read_only) * 4 * self.n / t / 1e9


def _syncer(kind: str) -> Callable[[Any], None]:
    if kind == "cupy":
        import cupy

        return lambda _: cupy.cuda.Device().synchronize()
    if kind in ("torch", "torch-cuda"):
        import torch

        return lambda _: torch.cuda.synchronize()
    if kind == "jax":
        return lambda out: out.block_until_ready() if hasattr(out, "block_until_ready") else None
    return lambda _: None


# ---------------------------------------------------------------------------------------------
# Cases


def settings() -> dict[str, dict[str, Any]]:
    """Each optimizer's benchmark hyperparameters (those of ``bench_steps.py``)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_steps import SETTINGS

    return SETTINGS


def traffic(opt: Any, x: Any) -> tuple[int, int]:
    """(written, read-only) arrays of the parameters' size: params + leaf-shaped state, grads."""
    state = opt.init(x)
    leafy = sum(1 for v in list(state)[1:] if isinstance(v, tuple)
                for a in v if tuple(a.shape) == tuple(x.shape))
    return 1 + leafy, 1


@dataclass
class Row:
    optimizer: str
    case: str
    seconds: float
    floor: float
    note: str = ""

    @property
    def fraction(self) -> float:
        return self.floor / self.seconds


def _case(kind: str, opt: Any, n: int, donate: bool, compiled: bool,
          dtype: str = "float32") -> tuple[Callable, Any]:
    """A closure taking one step on ``kind`` arrays, and its synchroniser (``dtype``: torch)."""
    import physopt_ref as po

    base = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    if kind == "numpy":
        x, g, loss = base.copy(), 0.5 * base, np.float32(LOSS)
    elif kind == "jax":
        import jax.numpy as jnp

        x, g, loss = jnp.asarray(base), jnp.asarray(0.5 * base), jnp.float32(LOSS)
    elif kind == "cupy":
        import cupy

        x, g, loss = cupy.asarray(base), cupy.asarray(0.5 * base), cupy.float32(LOSS)
    else:
        import torch

        dev = "cuda" if kind == "torch-cuda" else "cpu"
        x = torch.asarray(base, device=dev).to(getattr(torch, dtype))
        g, loss = 0.5 * x, torch.tensor(LOSS, device=dev, dtype=x.dtype)
    box = {"x": x, "state": opt.init(x)}
    step = po.compile(opt, donate=donate) if compiled else None

    def one() -> Any:
        if step is not None:
            box["x"], box["state"] = step(box["x"], g, box["state"], loss=loss)
        else:
            box["x"], box["state"] = opt.step(box["x"], g, box["state"], loss=loss, donate=donate)
        return box["x"]

    return one, _syncer(kind)


def half_rows(names: list[str], cfg: dict[str, dict[str, Any]], n: int, repeats: int
              ) -> list[Row]:
    """``torch compile`` on bfloat16 and float16 (CPU), each next to the floor of its bytes.

    The bytes count the state at its own dtype (BBI and ECDSep keep a float32 state for half
    parameters: ``state_dtype``); the floor is the float32 passes over as many bytes.
    """
    import torch

    import physopt_ref as po

    rows = []
    for name in names:
        opt = po.get_optimizer(name, **cfg[name])
        written, read_only = traffic(opt, np.zeros(4, dtype=np.float32))
        for dtype in ("bfloat16", "float16"):
            x = torch.zeros(4, dtype=getattr(torch, dtype))
            state = opt.init(x)
            state_bytes = sum(a.element_size() for v in list(state)[1:] if isinstance(v, tuple)
                              for a in v if tuple(a.shape) == tuple(x.shape))
            moved = (2 * (x.element_size() + state_bytes) + x.element_size()) * n
            floor = Floor("numpy", moved // ((2 * written + read_only) * 4), repeats)
            one, sync = _case("cpu", opt, n, True, True, dtype)
            row = Row(name, f"compile {dtype[:4]}", *floor.next_to(one, sync, written, read_only),
                      note=f"{moved / 1e6:.0f} MB/step")
            rows.append(row)
            print(_fmt_row(row, row.note, ""), flush=True)
            del one
    return rows


def torch_peers(device: str, n: int, repeats: int, floor: Floor) -> list[Row]:
    """torch's fused Adam and SGD with momentum (foreach where fused is unavailable)."""
    import torch

    rows = []
    for label, make, traffic_w in (
        ("torch Adam", lambda p, **kw: torch.optim.Adam([p], lr=1e-3, **kw), 3),
        ("torch SGD momentum", lambda p, **kw: torch.optim.SGD([p], lr=0.01, momentum=0.9, **kw),
         2),
    ):
        p = torch.nn.Parameter(torch.linspace(-1.0, 1.0, n, device=device))
        p.grad = 0.5 * p.detach()
        how = "fused"
        try:
            opt = make(p, fused=True)
            opt.step()
        except (RuntimeError, TypeError):
            opt, how = make(p, foreach=True), "foreach"
        sync = _syncer("torch-cuda" if device == "cuda" else "cpu")
        rows.append(Row(label, how, *floor.next_to(opt.step, sync, traffic_w, 1)))
        del opt, p
    return rows


def optax_stepper(tx: Any, n: int) -> Callable[[], Any]:
    """A closure taking one ``jax.jit`` step (params and state donated) of the optax ``tx``."""
    import jax
    import jax.numpy as jnp
    import optax

    def update(p: Any, g: Any, s: Any) -> tuple[Any, Any]:
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    jitted = jax.jit(update, donate_argnums=(0, 2))
    p = jnp.linspace(-1.0, 1.0, n, dtype=jnp.float32)
    box = {"p": p, "s": tx.init(p)}
    g = 0.5 * p

    def one() -> Any:
        box["p"], box["s"] = jitted(box["p"], g, box["s"])
        return box["p"]

    return one


def optax_peer(n: int, repeats: int, floor: Floor) -> Row:
    import optax

    one = optax_stepper(optax.adam(1e-3), n)
    return Row("optax adam", "jax jit", *floor.next_to(one, _syncer("jax"), 3, 1))


# ---------------------------------------------------------------------------------------------
# Report


def _fmt_row(r: Row, target: str, verdict: str) -> str:
    return (f"{r.optimizer:<20}{r.case:<15}{r.seconds * 1e3:>10.2f}{r.floor * 1e3:>10.2f}"
            f"{r.fraction:>8.2f}  {target:<40}{verdict}")


def _verdict(value: float, goal: float) -> str:
    if value >= goal:
        return f"reached (+{value - goal:.2f})"
    return f"missed by {goal - value:.2f}"


def cpu_report(rows: list[Row], peers: list[Row]) -> list[str]:
    """The table lines with each row's target and verdict, then the summary."""
    fused = {r.optimizer: r for r in peers if r.optimizer.startswith("torch")}
    out = []
    for r in rows + peers:
        target, verdict = "", ""
        compiled = r.case in ("jax jit", "torch compile") and r.optimizer in FLOOR_TARGET
        if compiled:
            goal = FLOOR_TARGET[r.optimizer]
            target = f">= {goal:.1f} of floor"
            verdict = _verdict(r.fraction, goal)
            if goal == 0.8:
                peer = fused["torch Adam" if r.optimizer in ("adam", "dyna", "dyna_prototype")
                             else "torch SGD momentum"]
                rel = r.fraction / peer.fraction
                target += f", >= {1 / WITHIN_FUSED:.2f}x fused {peer.optimizer.split()[1]}"
                verdict += (f"; {rel:.2f}x fused: "
                            + ("reached" if rel * WITHIN_FUSED >= 1.0 else "missed"))
        elif r.case == "numpy donated" and r.optimizer in CLASSIC:
            target = f">= {DONATED_CLASSIC_TARGET:.1f} of floor"
            verdict = _verdict(r.fraction, DONATED_CLASSIC_TARGET)
        out.append(_fmt_row(r, target, verdict))
    return out


def gpu_report(rows: list[Row]) -> list[str]:
    out = []
    for r in rows:
        target, verdict = "", ""
        if r.case not in ("eager",) and r.optimizer in FLOOR_TARGET:
            goal = GPU_TARGET.get(r.optimizer, GPU_ELEMENTWISE_TARGET)
            target = f">= {goal:.1f} of HBM floor"
            verdict = _verdict(r.fraction, goal)
        out.append(_fmt_row(r, target, verdict))
    return out


HEADER = (f"{'optimizer':<20}{'case':<15}{'step ms':>10}{'floor ms':>10}{'frac':>8}  "
          f"{'target':<40}verdict")


# ---------------------------------------------------------------------------------------------
# Ensembles


def ensembles(members: int, steps: int) -> list[str]:
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
    opts = {name: po.get_optimizer(name, **setting.hyper[name].hp)
            for name in ("heavy_ball", "bbi")}
    seconds: dict[tuple[str, str], float] = {}
    for name, opt in opts.items():
        t0 = time.perf_counter()
        po.run(opt, problem, x0, steps, **kw)
        seconds[name, "numpy"] = time.perf_counter() - t0
        with jax.enable_x64(True):
            xj = jnp.asarray(x0)
            t0 = time.perf_counter()
            trace = po.run(opt, problem, xj, steps, compile=True, **kw)
            seconds[name, "jax"] = time.perf_counter() - t0
            assert trace.losses.dtype == np.float64
    hp = setting.hyper["heavy_ball"].hp
    t0 = time.perf_counter()
    x, v = x0.copy(), np.zeros_like(x0)
    for _ in range(steps):
        _, g = problem.value_and_grad(x)
        v = hp["momentum"] * v - hp["lr"] * g
        x = x + v
    hand = time.perf_counter() - t0
    lines = [f"physopt_ref.run on 2-D Ackley (b = 0.02), {members:.0e} members, {steps} steps, "
             "float64, one core (wall seconds, tracing included):",
             f"{'optimizer':<14}{'numpy':>10}{'jax jit':>10}{'numpy / jax':>14}"]
    for name in opts:
        a, b = seconds[name, "numpy"], seconds[name, "jax"]
        lines.append(f"{name:<14}{a:>10.2f}{b:>10.2f}{a / b:>13.1f}x")
    lines.append(f"{'hand-written heavy-ball NumPy loop (no stops, no records)':<58}{hand:>8.2f}")
    ratio_np = seconds["bbi", "numpy"] / seconds["heavy_ball", "numpy"]
    ratio_jax = seconds["bbi", "jax"] / seconds["heavy_ball", "jax"]
    lines.append(f"target BBI <= 1.5x heavy ball: numpy {ratio_np:.2f}x "
                 f"({'reached' if ratio_np <= 1.5 else 'missed'}), jax {ratio_jax:.2f}x")
    for name in opts:
        s = seconds[name, "numpy"] / seconds[name, "jax"]
        lines.append(f"target jax jit >= 3x numpy, {name}: {s:.1f}x "
                     f"({'reached' if s >= 3 else 'missed'})")
    return lines


# ---------------------------------------------------------------------------------------------
# Chunk scan


def chunk_scan(n: int, repeats: int, floor: Floor) -> list[str]:
    import physopt_ref as po
    from physopt_ref.core import donate as _donate

    cfg = settings()
    default = _donate.CHUNK_ELEMENTS
    sizes = [1 << k for k in (12, 14, 15, 16, 17, 18, 20)]
    lines = [f"NumPy donated steps by chunk size (fraction of the floor; default {default}):",
             f"{'optimizer':<14}" + "".join(f"{s:>9}" for s in sizes)]
    for name in ("heavy_ball", "adam"):
        opt = po.get_optimizer(name, **cfg[name])
        moved = traffic(opt, np.zeros(4, dtype=np.float32))
        cells = []
        for size in sizes:
            _donate.CHUNK_ELEMENTS = size
            one, sync = _case("numpy", opt, n, donate=True, compiled=False)
            t, fl = floor.next_to(one, sync, *moved)
            cells.append(fl / t)
        lines.append(f"{name:<14}" + "".join(f"{c:>9.2f}" for c in cells))
    _donate.CHUNK_ELEMENTS = default
    return lines


# ---------------------------------------------------------------------------------------------


def _require_gpu(backend: str) -> None:
    try:
        if backend == "cupy":
            import cupy

            ok = cupy.cuda.runtime.getDeviceCount() > 0
        else:
            import torch

            ok = torch.cuda.is_available()
    except Exception as exc:  # no CuPy / no CUDA runtime
        raise SystemExit(f"bench_floor.py --backend {backend} needs a CUDA GPU: {exc!r}") from exc
    if not ok:
        raise SystemExit(f"bench_floor.py --backend {backend} needs a CUDA GPU; none is visible")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cpu", choices=["cpu", "cupy", "torch"])
    parser.add_argument("--size", type=float, default=None,
                        help="elements per step (default 1e7 on the CPU, 1e8 on a GPU)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--optimizers", default=None, help="comma-separated subset")
    parser.add_argument("--cases", default=None,
                        help="CPU subset of: numpy,donated,jax,torch (default all)")
    parser.add_argument("--skip-ensembles", action="store_true")
    parser.add_argument("--members", type=float, default=1e5)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--chunks", action="store_true", help="add the chunk-size scan")
    parser.add_argument("--half", action="store_true",
                        help="add torch-compile rows in bfloat16 and float16 (CPU)")
    args = parser.parse_args(argv)
    # Dynamo's notes on array-api-compat's lru_cache wrappers, once per compiled function
    warnings.filterwarnings("ignore", "Dynamo detected a call to a `functools.lru_cache`")

    gpu = args.backend != "cpu"
    if gpu:
        _require_gpu(args.backend)
    else:
        cpu = _pin_one_core()
    n = int(args.size or (1e8 if gpu else 1e7))

    import physopt_ref as po

    names = args.optimizers.split(",") if args.optimizers else po.registered_names()
    cfg = settings()
    rows: list[Row] = []
    t_start = time.perf_counter()
    if gpu:
        kind = "cupy" if args.backend == "cupy" else "torch-cuda"
        floor = Floor("cupy" if args.backend == "cupy" else "torch", n, args.repeats)
        cases = [("eager", False, False), ("donated", True, False)]
        if args.backend == "torch":
            cases.append(("torch compile", True, True))
        print(f"bench_floor: {args.backend} on the GPU, N = {n:.0e} float32, floor = the "
              "backend's in-place streaming passes over the same bytes")
    else:
        import torch

        torch.set_num_threads(1)
        floor = Floor("numpy", n, args.repeats)
        wanted = set((args.cases or "numpy,donated,jax,torch").split(","))
        cases = [c for c in (("numpy", "numpy", False, False), ("donated", "numpy", True, False),
                             ("jax", "jax", True, True), ("torch", "cpu", True, True))
                 if c[0] in wanted]
        print(f"bench_floor: CPU {cpu} only (affinity), torch 1 thread, N = {n:.0e} float32, "
              "floor = NumPy in-place streaming passes over the same bytes")
    print(HEADER)
    print("-" * len(HEADER))
    for name in names:
        opt = po.get_optimizer(name, **cfg[name])
        written, read_only = traffic(opt, np.zeros(4, dtype=np.float32))
        for case in cases:
            if gpu:
                label, donate, compiled = case
                backend_kind = kind
            else:
                key, backend_kind, donate, compiled = case
                label = {"numpy": "numpy", "donated": "numpy donated", "jax": "jax jit",
                         "torch": "torch compile"}[key]
            one, sync = _case(backend_kind, opt, n, donate, compiled)
            row = Row(name, label, *floor.next_to(one, sync, written, read_only))
            rows.append(row)
            print(_fmt_row(row, "", ""), flush=True)
            del one
    peers: list[Row] = []
    if gpu:
        if args.backend == "torch":
            peers = torch_peers("cuda", n, args.repeats, floor)
    else:
        peers = [*torch_peers("cpu", n, args.repeats, floor), optax_peer(n, args.repeats, floor)]
    for r in peers:
        print(_fmt_row(r, "", ""), flush=True)
    print()
    print("Targets (fraction = floor time / step time):")
    print(HEADER)
    print("-" * len(HEADER))
    for line in (gpu_report(rows + peers) if gpu else cpu_report(rows, peers)):
        print(line)
    print(f"floor bandwidth (3 written + 1 read-only arrays): {floor.bandwidth(3, 1):.1f} GB/s")
    if args.half and not gpu:
        print()
        print("Half precision, torch compile (floor: float32 passes over the same bytes, N/2):")
        print(HEADER)
        print("-" * len(HEADER))
        half_rows(names, cfg, n, args.repeats)
    if args.chunks and not gpu:
        print()
        print("\n".join(chunk_scan(n, args.repeats, floor)))
    if not gpu and not args.skip_ensembles:
        print()
        print("\n".join(ensembles(int(args.members), args.steps)))
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; command: python "
          f"benchmarks/bench_floor.py {' '.join(sys.argv[1:] if argv is None else argv)}")


if __name__ == "__main__":
    main()
