"""One step of the torch and optax adapters against the framework's best, side by side.

Usage::

    python benchmarks/bench_adapters.py [--repeats 15] [--threads 1] [--skip-torch]
                                        [--skip-optax] [--clock wall|cpu] [--parts]

The model is an MLP 784-2048-384-10 (2 398 346 parameters, float32, CPU; ``--threads`` torch
and XLA threads, default 1). Gradients are fixed; only the optimizer step is timed, as the
median over ``--repeats`` rounds in which every contender steps three times in turn
(interleaved, so that the load of other processes falls on all of them alike).

* **torch** (issue 21's targets): ``physopt_ref.torch.Adam`` against ``torch.optim.Adam``
  (``fused=True``, and ``foreach=True``); ``physopt_ref.torch.HeavyBall`` against
  ``torch.optim.SGD(momentum=0.9)`` (``fused=True``, and ``foreach=True``). The adapter runs
  its default for a model of this size: the compiled, donated step (compiled before timing).
  Target: at most 1.2x the fused step. With ``--parts``, the same steps without the adapter
  (``physopt_ref.compile`` on the model's tensors: ``compile`` through Dynamo, ``direct``
  with ``fixed_layout=True``, called past Dynamo as the adapter calls it), with the
  hyperparameters as 0-d tensors (how the adapter reads a value that a scheduler changes)
  and as Python floats (constants in the kernel: how the adapter bakes a value that has not
  changed); and both optimizers with a new lr written into the group before every step (as a
  scheduler does; ``lr changed``).
* **optax**: ``physopt_ref.optax.ecdsep`` and ``physopt_ref.optax.adam`` in a jitted
  ``update`` + ``apply_updates`` against ``physopt_ref.compile`` of the same optimizer (JAX:
  ``jax.jit`` with donated buffers) and ``optax.adam`` under jit. Target: ECDSep through optax
  within 1.5x of ``physopt_ref.compile(ecdsep)``.

The numbers depend on the machine; the ratios are what the targets are about. A ratio is the
median over the rounds of the ratio within a round, with its quartiles as the spread. On a
loaded machine ``--clock cpu`` (with ``--skip-optax``) times each step by the CPU time of the
calling thread, which leaves out the time spent waiting for other processes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

SIZES = ((784, 2048), (2048, 384), (384, 10))


def _clock(name: str) -> Callable[[], float]:
    """``wall``: ``time.perf_counter``; ``cpu``: the calling thread's CPU time
    (``time.thread_time``), which leaves out the time the process waits while other processes
    run (torch with ``--threads 1`` only: XLA computes on threads of its own)."""
    return time.thread_time if name == "cpu" else time.perf_counter


def _round_times(fns: dict[str, Callable[[], Any]], repeats: int,
                 clock: Callable[[], float]) -> dict[str, list[float]]:
    """Per contender, the time of one step in each of ``repeats`` interleaved rounds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = clock()
            fn()
            fn()
            fn()
            times[name].append((clock() - t) / 3)
    return times


Row = tuple[str, list[float], str, list[float], float]


def _torch_rows(repeats: int, clock: Callable[[], float], with_parts: bool) -> list[Row]:
    import torch

    import physopt_ref as po
    import physopt_ref.torch as pot
    from physopt_ref.core.compile import CompiledStep

    def model() -> Any:
        torch.manual_seed(0)
        layers = [torch.nn.Linear(a, b) for a, b in SIZES]
        params = [p for layer in layers for p in layer.parameters()]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-2
        return params

    def stepper(make: Callable[[list[Any]], Any], scheduled: bool = False) -> Callable[[], Any]:
        """``opt.step``; ``scheduled``: with a new lr in the group before every step (as a
        scheduler writes it), alternating between two values."""
        opt = make(model())
        if not scheduled:
            opt.step()  # compiles where it compiles
            opt.step()
            return opt.step
        group = opt.param_groups[0]
        values = [1e-3, 9e-4]

        def step() -> None:
            values.reverse()
            group["lr"] = float(values[0])  # a new float object, as a scheduler's
            opt.step()
        for _ in range(3):
            step()
        return step

    def compiled(opt: Any, direct: bool = False) -> Callable[[], Any]:
        """``physopt_ref.compile`` on the model's tensors, without the adapter around it
        (``direct``: ``fixed_layout=True``, called past Dynamo as the adapter does)."""
        params = model()
        box = [[p.detach() for p in params], None]
        box[1] = opt.init(box[0])
        grads = [p.grad for p in params]
        step = CompiledStep(opt, fixed_layout=direct)

        def run() -> None:
            box[0], box[1] = step(box[0], grads, box[1])
        run()
        run()
        return run

    def hp(**values: float) -> dict[str, Any]:  # the adapter's 0-d tensors
        return {k: torch.tensor(v) for k, v in values.items()}

    parts = {
        "compile(adam), 0-d tensor hps": compiled(po.adam(**hp(lr=1e-3, b1=0.9, b2=0.999))),
        "compile(adam), float hps": compiled(po.adam(lr=1e-3)),
        "compile(heavy_ball), tensor hps": compiled(
            po.heavy_ball(**hp(lr=1e-3, momentum=0.9))),
        "compile(heavy_ball), float hps": compiled(po.heavy_ball(lr=1e-3, momentum=0.9)),
        "direct(adam), tensor hps": compiled(po.adam(**hp(lr=1e-3, b1=0.9, b2=0.999)), True),
        "direct(adam), float hps": compiled(po.adam(lr=1e-3), True),
        "direct(heavy_ball), tensor hps": compiled(
            po.heavy_ball(**hp(lr=1e-3, momentum=0.9)), True),
        "direct(heavy_ball), float hps": compiled(po.heavy_ball(lr=1e-3, momentum=0.9), True),
        "pot.Adam, lr changed": stepper(lambda p: pot.Adam(p, lr=1e-3), True),
        "Adam fused, lr changed": stepper(
            lambda p: torch.optim.Adam(p, lr=1e-3, fused=True), True),
        "pot.HeavyBall, lr changed": stepper(
            lambda p: pot.HeavyBall(p, lr=1e-3, momentum=0.9), True),
        "SGD(momentum) fused, lr changed": stepper(
            lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, fused=True), True),
    } if with_parts else {}
    contenders = {
        **parts,
        "physopt_ref.torch.Adam": stepper(lambda p: pot.Adam(p, lr=1e-3)),
        "torch Adam fused": stepper(lambda p: torch.optim.Adam(p, lr=1e-3, fused=True)),
        "torch Adam foreach": stepper(lambda p: torch.optim.Adam(p, lr=1e-3, foreach=True)),
        "physopt_ref.torch.HeavyBall": stepper(
            lambda p: pot.HeavyBall(p, lr=1e-3, momentum=0.9)),
        "torch SGD(momentum) fused": stepper(
            lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, fused=True)),
        "torch SGD(momentum) foreach": stepper(
            lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, foreach=True)),
    }
    t = _round_times(contenders, repeats, clock)
    part_rows: list[Row] = [
        (name, t[name], base, t[base], float("nan")) for name, base in (
            ("compile(adam), 0-d tensor hps", "torch Adam fused"),
            ("compile(adam), float hps", "torch Adam fused"),
            ("compile(heavy_ball), tensor hps", "torch SGD(momentum) fused"),
            ("compile(heavy_ball), float hps", "torch SGD(momentum) fused"),
            ("direct(adam), tensor hps", "torch Adam fused"),
            ("direct(adam), float hps", "torch Adam fused"),
            ("direct(heavy_ball), tensor hps", "torch SGD(momentum) fused"),
            ("direct(heavy_ball), float hps", "torch SGD(momentum) fused"),
            ("pot.Adam, lr changed", "Adam fused, lr changed"),
            ("pot.HeavyBall, lr changed", "SGD(momentum) fused, lr changed"),
        )] if with_parts else []
    return [
        *part_rows,
        ("physopt_ref.torch.Adam", t["physopt_ref.torch.Adam"], "torch Adam fused",
         t["torch Adam fused"], 1.2),
        ("physopt_ref.torch.Adam", t["physopt_ref.torch.Adam"], "torch Adam foreach",
         t["torch Adam foreach"], float("nan")),
        ("physopt_ref.torch.HeavyBall", t["physopt_ref.torch.HeavyBall"],
         "torch SGD(momentum) fused", t["torch SGD(momentum) fused"], 1.2),
        ("physopt_ref.torch.HeavyBall", t["physopt_ref.torch.HeavyBall"],
         "torch SGD(momentum) foreach", t["torch SGD(momentum) foreach"], float("nan")),
    ]


def _optax_rows(repeats: int, clock: Callable[[], float]) -> list[Row]:
    import jax
    import jax.numpy as jnp
    import optax

    import physopt_ref as po
    import physopt_ref.optax as pox

    key = jax.random.PRNGKey(0)
    params = {f"{i}": jax.random.normal(jax.random.fold_in(key, i), shape, dtype=jnp.float32)
              for i, shape in enumerate(SIZES)}
    grads = {k: v * 1e-2 for k, v in params.items()}
    loss = jnp.float32(2.0)

    def through_optax(tx: Any) -> Callable[[], Any]:
        box = [dict(params), tx.init(params)]

        @jax.jit
        def step(p: Any, s: Any) -> Any:
            updates, s = tx.update(grads, s, p, value=loss)
            return optax.apply_updates(p, updates), s

        def run() -> Any:
            box[0], box[1] = step(box[0], box[1])
            jax.block_until_ready(box[0])
        run()
        return run

    def compiled(opt: Any) -> Callable[[], Any]:
        leaves = [jnp.array(v) for v in params.values()]
        box = [leaves, opt.init(leaves)]
        step = po.compile(opt)
        g = list(grads.values())

        def run() -> Any:
            box[0], box[1] = step(box[0], g, box[1], loss=loss)
            jax.block_until_ready(box[0])
        run()
        return run

    ecd = {"lr": 0.05, "eta": 1.0}
    contenders = {
        "physopt_ref.optax.ecdsep": through_optax(pox.ecdsep(**ecd)),
        "physopt_ref.compile(ecdsep)": compiled(po.ecdsep(**ecd)),
        "physopt_ref.optax.adam": through_optax(pox.adam(lr=1e-3)),
        "physopt_ref.compile(adam)": compiled(po.adam(lr=1e-3)),
        "optax.adam": through_optax(optax.adam(1e-3)),
    }
    t = _round_times(contenders, repeats, clock)
    return [
        ("physopt_ref.optax.ecdsep", t["physopt_ref.optax.ecdsep"],
         "physopt_ref.compile(ecdsep)", t["physopt_ref.compile(ecdsep)"], 1.5),
        ("physopt_ref.optax.adam", t["physopt_ref.optax.adam"], "optax.adam", t["optax.adam"],
         float("nan")),
        ("physopt_ref.compile(adam)", t["physopt_ref.compile(adam)"], "optax.adam",
         t["optax.adam"], float("nan")),
        ("physopt_ref.optax.ecdsep", t["physopt_ref.optax.ecdsep"], "optax.adam",
         t["optax.adam"], float("nan")),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--skip-optax", action="store_true")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--parts", action="store_true")
    args = parser.parse_args()
    if args.threads == 1:  # XLA's CPU matrix kernels on one thread (set before JAX starts)
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    if args.clock == "cpu" and not args.skip_optax:
        parser.error("--clock cpu times the calling thread only: use it with --skip-optax")
    clock = _clock(args.clock)
    rows = []
    if not args.skip_torch:
        import torch

        torch.set_num_threads(args.threads)
        rows += _torch_rows(args.repeats, clock, args.parts)
    if not args.skip_optax:
        rows += _optax_rows(args.repeats, clock)
    n = sum(a * b + b for a, b in SIZES)
    print(f"MLP {'-'.join(str(s[0]) for s in SIZES)}-10, {n} parameters, float32, CPU, "
          f"{args.threads} thread(s); {args.clock} clock; median of {args.repeats} interleaved "
          "rounds (ratio: median of the per-round ratios, spread: their quartiles)\n")
    print(f"| {'step':30} | {'ms':>7} | {'baseline':30} | {'ms':>7} | ratio | spread    | "
          "target |")
    print(f"|{'-' * 32}|{'-' * 9}|{'-' * 32}|{'-' * 9}|-------|-----------|--------|")
    for name, t, base, tb, target in rows:
        ratios = [a / b for a, b in zip(t, tb, strict=True)]
        ratio = statistics.median(ratios)
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratio,) * 3
        verdict = "" if target != target else (
            f"<= {target:g}: {'reached' if ratio <= target else 'MISSED'}")
        print(f"| {name:30} | {statistics.median(t) * 1e3:7.2f} | {base:30} | "
              f"{statistics.median(tb) * 1e3:7.2f} | {ratio:5.2f} | {q1:4.2f}-{q3:4.2f} | "
              f"{verdict} |")


if __name__ == "__main__":
    main()
