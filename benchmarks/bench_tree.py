"""Flatten + unflatten of parameter trees: physopt_ref's own code against optree and jax.tree_util.

Usage::

    python benchmarks/bench_tree.py                # physopt_ref vs optree (and jax if installed)
    python benchmarks/bench_tree.py --repeats 15 --no-jax

Every step flattens ``params`` and ``grads`` and unflattens the new ``params``, so the cost of
:func:`physopt_ref.tree_flatten` / :func:`physopt_ref.tree_unflatten` is paid on every step.
This times one ``flatten`` followed by one ``unflatten`` of the same tree for typical trees:
one array (the common case), a 10-leaf dict, and two 100-leaf nested trees: flax-like nested
dicts (50 layers of ``{"kernel", "bias"}``) and a mix (a list of 20 layers, each a dict holding a
NamedTuple, a tuple, an OrderedDict and a ``None`` slot). The
implementations are timed interleaved (round robin over ``--repeats`` rounds, the median of each
taken), so the ratios hold on a loaded machine. For scale it also times one eager NumPy ``sgd``
step on each tree (the step includes its own flattens), and the import time of optree and of
jax next to that of ``physopt_ref`` (``python -X importtime`` in fresh processes).

Ratios are ``other / physopt_ref`` (above 1: physopt_ref's code is faster). Nothing here is a
test; the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

import physopt_ref as po


class Affine(NamedTuple):
    """A layer's weight and bias, as a NamedTuple (a typical flax/equinox-like grouping)."""

    w: Any
    b: Any


def trees() -> dict[str, Any]:
    """The benchmark trees (float32 leaves of a few elements: the walk dominates)."""

    def leaf(*shape: int) -> np.ndarray:
        return np.ones(shape, dtype=np.float32)

    layers = [
        {
            "affine": Affine(leaf(4, 4), leaf(4)),
            "norm": (leaf(4), leaf(4)),
            "extra": OrderedDict([("scale", leaf(1))]),
            "frozen": None,
        }
        for _ in range(20)
    ]
    return {
        "1 array": leaf(1000),
        "10-leaf dict": {f"layer{i}": leaf(10) for i in range(10)},
        "100-leaf dicts": {f"layer{i}": {"kernel": leaf(4, 4), "bias": leaf(4)} for i in range(50)},
        "100-leaf mixed": layers,
    }


def _roundtrip_physopt(tree: Any) -> Any:
    leaves, treedef = po.tree_flatten(tree)
    return po.tree_unflatten(treedef, leaves)


def implementations(use_jax: bool) -> dict[str, Callable[[Any], Any]]:
    """``name -> flatten+unflatten``, for every implementation installed."""
    impls: dict[str, Callable[[Any], Any]] = {"physopt_ref": _roundtrip_physopt}
    if importlib.util.find_spec("optree") is not None:
        import optree

        def _roundtrip_optree(tree: Any) -> Any:
            leaves, spec = optree.tree_flatten(tree)
            return optree.tree_unflatten(spec, leaves)

        impls["optree"] = _roundtrip_optree
    if use_jax and importlib.util.find_spec("jax") is not None:
        import jax

        def _roundtrip_jax(tree: Any) -> Any:
            leaves, treedef = jax.tree_util.tree_flatten(tree)
            return jax.tree_util.tree_unflatten(treedef, leaves)

        impls["jax.tree_util"] = _roundtrip_jax
    return impls


def _per_call(fn: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def _import_ms(module: str) -> float:
    """Cumulative import time of ``module`` in a fresh interpreter (ms)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, check=True,
    ).stderr
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip() == module:
            return int(parts[1]) / 1000
    raise RuntimeError(f"no import time for {module}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="interleaved rounds (median)")
    parser.add_argument("--number", type=int, default=2000, help="calls per timing")
    parser.add_argument("--no-jax", action="store_true", help="leave jax.tree_util out")
    args = parser.parse_args()

    impls = implementations(not args.no_jax)
    sgd = po.sgd(lr=0.1)
    rows = []
    for name, tree in trees().items():
        for fn in impls.values():  # same structure back from every implementation
            back = fn(tree)
            assert po.tree_flatten(back)[1] == po.tree_flatten(tree)[1], name
        state = sgd.init(tree)
        calls: dict[str, Callable[[], Any]] = {
            k: (lambda f=f, t=tree: f(t)) for k, f in impls.items()
        }
        calls["sgd step"] = lambda t=tree, s=state: sgd.step(t, t, s)
        times: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(args.repeats):
            for k, call in calls.items():
                number = max(1, args.number // 10) if k == "sgd step" else args.number
                times[k].append(_per_call(call, number))
        rows.append((name, po.tree_flatten(tree)[1].num_leaves,
                     {k: statistics.median(v) for k, v in times.items()}))

    others = [k for k in impls if k != "physopt_ref"]
    head = f"{'tree':<17}{'leaves':>7}{'physopt_ref':>13}"
    head += "".join(f"{k:>15}{'ratio':>7}" for k in others) + f"{'sgd step':>11}{'share':>7}"
    print("flatten + unflatten, median µs per call; ratio = other / physopt_ref;")
    print("share = physopt_ref's flatten+unflatten / one eager NumPy sgd step")
    print(head)
    for name, n, t in rows:
        base = t["physopt_ref"]
        line = f"{name:<17}{n:>7}{base * 1e6:>13.2f}"
        line += "".join(f"{t[k] * 1e6:>15.2f}{t[k] / base:>7.2f}" for k in others)
        line += f"{t['sgd step'] * 1e6:>11.1f}{base / t['sgd step']:>7.2f}"
        print(line)
    print("import time (ms, fresh interpreter, cumulative):",
          ", ".join(f"{m} {_import_ms(m):.0f}" for m in
                    ["physopt_ref", *(["optree"] if "optree" in impls else []),
                     *(["jax"] if "jax.tree_util" in impls else [])]))


if __name__ == "__main__":
    main()
