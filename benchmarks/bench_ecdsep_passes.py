"""ECDSep's compiled step: its passes over the data, and its time next to an earlier revision's.

Usage::

    python benchmarks/bench_ecdsep_passes.py --rev 96f93c7 --n 1e6 --repeats 7
    python benchmarks/bench_ecdsep_passes.py --rev 96f93c7 --backends torch --nu 0,1e-5

For each backend (``torch``: ``physopt_ref.compile``, i.e. ``torch.compile`` of the donated
step; ``jax``: ``jax.jit`` with donation) and each ν it compiles three forms of the ECDSep
step (``lr = 0.01``, ``eta = 1``; one float32 leaf of N elements, the loss fixed at 1.5):

``rev``      the rule of git revision ``--rev`` (``optimizers/ecdsep.py`` read with
             ``git show`` and loaded next to the current package; ``ecd_common`` and the
             rest are the current ones);
``now``      the current rule;
``redraw``   the current rule with the jitter drawn twice in the graph (once for the
             reductions, once for the write): the "recompute z from the counter" choice,
             made by editing the loaded source (only for ν > 0).

and times them **interleaved** (A, B, C, A, B, C, ...; medians), next to the memory floor of
``bench_floor.Floor`` (NumPy passes reading params, momentum and grads and writing params and
momentum). One thread: the process pins itself to one core before JAX or torch start and sets
``torch.set_num_threads(1)``; the library never changes these settings.

``--count`` instead prints what the compilers make of the revision's rule and the current one
(no timing): at N = 1000, inductor's full-size buffers allocated every step (in the compiled
module's ``call``, outside the branch subgraphs that run only on a rare call) and its
full-size loops (the output code, from ``torch._inductor.utils.run_and_get_code``); at
N = ``--count-n`` (default 16384: XLA on the CPU hands reductions of 4096 elements or more
to YNNPACK, as at the timed sizes), the full-size results of the fusions and copies in the
entry computation of ``physopt_ref.compile``'s donated ``jax.jit`` step
(``.lower(...).compile().as_text()``), the two outputs (parameters and momentum) included.
Nothing here is a test; the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import types
import warnings
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
RULE = "physopt_ref/optimizers/ecdsep.py"

# The edit that makes the "redraw" form: the write pass takes a second draw of z.
_DRAW_AGAIN = (
    "for a, b in zip(kicked_momentum(), z, strict=True)]",
    "for a, b in zip(kicked_momentum(), draw(), strict=True)]",
)
_DRAW_DEF = (
    "        z = random_directions(\n",
    "        def draw() -> list[Any]:\n"
    "            return random_directions(xp, p, seed=hp['seed'], member=hp['member'],\n"
    "                                     counter=ctx.count, batch_ndim=bn, law='isotropic')\n"
    "\n"
    "        z = random_directions(\n",
)


def _load(source: str, name: str) -> types.ModuleType:
    """The rule module from ``source``, without registering it again."""
    source = source.replace("\nregister(\n", "\n_not_registered(\n")
    module = types.ModuleType(name)
    module.__dict__["_not_registered"] = lambda *args, **kwargs: None
    module.__file__ = f"<{name}>"
    sys.modules[name] = module
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def forms(rev: str, nu: float) -> dict[str, Any]:
    """The optimizers compared: the revision's rule, the current one, the redraw variant."""
    old = subprocess.run(["git", "show", f"{rev}:{RULE}"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    now = open(os.path.join(ROOT, RULE)).read()
    mods = {"rev": _load(old, "ecdsep_rev"), "now": _load(now, "ecdsep_now")}
    if nu > 0:
        assert _DRAW_AGAIN[0] in now and _DRAW_DEF[0] in now, "the rule changed: update the edit"
        redraw = now.replace(*_DRAW_AGAIN).replace(*_DRAW_DEF)
        mods["redraw"] = _load(redraw, "ecdsep_redraw")
    return {k: m.ecdsep(lr=0.01, eta=1.0, nu=nu) for k, m in mods.items()}


def time_forms(kind: str, n: int, repeats: int, nu: float, rev: str) -> None:
    from bench_floor import Floor, _case, _syncer

    floor = Floor("numpy", n, repeats)
    floor_run = floor.passes(2, 1)
    cases = {}
    for name, opt in forms(rev, nu).items():
        one, _ = _case(kind, opt, n, True, True)
        sync = _syncer("jax") if kind == "jax" else (lambda _: None)  # torch on the CPU: no wait
        for _ in range(3):  # compile and warm up
            sync(one())
        cases[name] = (one, sync)
    times: dict[str, list[float]] = {k: [] for k in [*cases, "floor"]}
    for _ in range(repeats):
        for name, (one, sync) in cases.items():
            t0 = time.perf_counter()
            sync(one())
            times[name].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        floor_run()
        times["floor"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name in cases:
        print(f"  {kind:<6} nu={nu:<7g} {name:<7} {med[name] * 1e3:9.2f} ms a step   "
              f"{med['floor'] / med[name]:.3f} of the floor   "
              f"{med[name] / med['now']:.2f}x the current rule", flush=True)


def count_torch(label: str, opt: Any, nu: float) -> None:
    """Full-size loops and buffers in inductor's output code for ``opt``."""
    import torch
    from torch._inductor.utils import run_and_get_code

    import physopt_ref as po

    n = 1000
    torch._dynamo.reset()
    x = torch.linspace(-1.0, 1.0, n)
    g, loss, state = 0.5 * x, torch.tensor(1.5), opt.init(x)
    _, codes = run_and_get_code(po.compile(opt), x, g, state, loss=loss)
    code = "\n".join(codes)
    call = code[code.index("    def call(self, args):"):]
    kernels = dict(re.findall(r"\n(cpp_fused_\w+) = async_compile\.cpp_pybinding\((.*?)'''\)",
                              code, re.S))
    every_step = set(re.findall(r"\n        (cpp_fused_\w+)\(", call))  # not in a branch
    full_loop = rf"x0<static_cast<int64_t>\((?:{n}|{n // 4})L\)"
    loops = sum(len(re.findall(full_loop, kernels[k])) for k in every_step)
    rare = sum(len(re.findall(full_loop, v)) for k, v in kernels.items() if k not in every_step)
    bufs = re.findall(rf"empty_strided_cpu\(\((?:{n}, |1, {n // 4}, 4)\)", call)
    print(f"  torch  nu={nu:g} {label:<4}: {len(bufs)} full-size buffers and {loops} full-size "
          f"loops every step; {rare} more loops in branches taken on rare calls")


def count_jax(label: str, opt: Any, nu: float, n: int) -> None:
    """Full-size arrays XLA writes in ``physopt_ref.compile``'s donated step for ``opt``."""
    import jax.numpy as jnp

    import physopt_ref as po

    x = jnp.linspace(-1.0, 1.0, n, dtype=jnp.float32)
    g, loss, state = 0.5 * x, jnp.float32(1.5), opt.init(x)
    text = po.compile(opt).for_array(x).lower(x, g, state, loss).compile().as_text()
    entry = text[text.index("\nENTRY"):]
    written = re.findall(r"= (?:f32|u32|s32|pred)\[(\d+)\]\{0\} (fusion|copy)\(", entry)
    full = [kind for size, kind in written if int(size) in (n, n // 4)]
    print(f"  jax    nu={nu:g} {label:<4}: {entry.count(' fusion(')} fusions in the entry "
          f"computation; full-size results: {full.count('fusion')} fusions (2 are the "
          f"outputs), {full.count('copy')} copies; {entry.count(' conditional(')} conditionals")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="HEAD", help="git revision whose rule is compared")
    ap.add_argument("--n", type=float, default=1e6)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--backends", default="torch,jax")
    ap.add_argument("--nu", default="0,1e-5", help="comma-separated ν values")
    ap.add_argument("--count", action="store_true", help="count passes instead of timing")
    ap.add_argument("--count-n", type=int, default=1 << 14, help="N of the JAX count")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="Dynamo detected a call")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                          "intra_op_parallelism_threads=1")
    import torch

    torch.set_num_threads(1)
    for kind in args.backends.split(","):
        for nu in (float(v) for v in args.nu.split(",")):
            if args.count:
                for label, opt in forms(args.rev, nu).items():
                    if label == "redraw":
                        continue
                    if kind == "torch":
                        count_torch(label, opt, nu)
                    else:
                        count_jax(label, opt, nu, args.count_n)
            else:
                time_forms(kind, int(args.n), args.repeats, nu, args.rev)


if __name__ == "__main__":
    main()
