"""Checkpoints of :func:`physopt_ref.run`: where every run of the loop stands, and its records.

A run checkpoint (kind ``"run"`` of :mod:`physopt_ref.runner.checkpoint`) holds the optimizer as
data
and its state, the loop's per-run arrays (point, value, gradient, activity, status, step
counters, best value and point), the loop's step ``k`` (the gradient-noise draws are keyed by
it), the records so far (steps, losses, state fields, points) and the settings that shape the
trace. Resuming puts them back on the backend, device and dtype of the start given to ``run``
and continues the loop at ``k``: the trace is the uninterrupted run's, bit for bit.

A record that was only taken because the interrupted call ended at ``k`` (``k`` not a multiple
of ``record_every``) is dropped on resume unless the resumed call ends at ``k`` too, since the
uninterrupted run has no record there.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from physopt_ref.backends import namespace_name, to_numpy
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.tree import tree_unflatten
from physopt_ref.runner.checkpoint import (
    CheckpointError,
    optimizer_meta,
    pack_state,
    read_checkpoint,
    resolve_optimizer,
    to_backend,
    unpack_state,
    write_checkpoint,
)

__all__ = ["load_run", "save_run"]

#: The settings of ``run`` that shape the trace: a resumed call must pass the same ones.
SETTINGS = ("target", "gtol", "record_every", "check_every", "grad_noise", "noise_seed",
            "noise_member", "record_x", "stop_when_done")
#: Settings added later, with the value a checkpoint written before them implies.
_IMPLIED = {"noise_member": 0}
#: The per-run arrays of the loop (fields of ``_run._Runs``); the tree-valued ones hold leaves.
_ARRAYS = ("f", "active", "status", "steps_taken", "steps_to_target", "best_f")
_TREES = ("x", "g", "best_x")


def _host(value: Any) -> np.ndarray:
    return np.asarray(to_numpy(value))


def problem_fingerprint(problem: Any, leaves: list[Any]) -> dict[str, Any]:
    """What a run checkpoint records of its problem: the name (a Problem's ``name``, else the
    callable's qualified name), its plain arguments (the int / float / str / bool attributes of
    a Problem) and the dimension (the last axis of a one-leaf start, else the leaf sizes)."""
    name = getattr(problem, "name", None)
    if not isinstance(name, str):
        name = getattr(problem, "__qualname__", None) or type(problem).__qualname__
    arguments = {}
    if hasattr(problem, "value_and_grad"):
        for key, value in sorted(getattr(problem, "__dict__", {}).items()):
            if not key.startswith("_") and isinstance(value, bool | int | float | str) and (
                    not isinstance(value, float) or value == value):
                arguments[key] = value
    if len(leaves) == 1 and leaves[0].ndim:
        dim: Any = int(leaves[0].shape[-1])
    else:
        dim = [list(leaf.shape) for leaf in leaves]
    return {"name": name, "arguments": arguments, "dim": dim}


def save_run(path: str | os.PathLike, optimizer: Optimizer, ens: Any, cfg: Any, runs: Any,
             rec: Any, k: int, *, done: bool, stopped: bool, elapsed: float) -> None:
    """Write the loop at step ``k`` (``runs``: the ``_Runs``; ``rec``: the ``_Recorder``)."""
    arrays: dict[str, np.ndarray] = {}
    for name in _ARRAYS:
        arrays[f"run/{name}"] = _host(getattr(runs, name))
    for name in _TREES:
        for i, leaf in enumerate(getattr(runs, name)):
            arrays[f"run/{name}/{i}"] = _host(leaf)
    steps, losses, _, xs = rec.host()
    arrays["records/steps"] = steps
    arrays["records/losses"] = losses
    for name, values in rec.field_arrays().items():
        arrays[f"records/field/{name}"] = values
    if xs is not None:
        arrays["records/xs"] = xs
    like = runs.x[0]
    meta = {
        "kind": "run",
        "optimizer": optimizer_meta(optimizer, arrays),
        "state": pack_state(runs.state, arrays, "state/"),
        "run": {
            "step": k,
            "done": done,
            "stopped": stopped,
            "elapsed": elapsed,
            "settings": {name: getattr(cfg, name) for name in SETTINGS},
            "batch_shape": list(ens.batch_shape),
            "leaves": [list(leaf.shape) for leaf in runs.x],
            "record_fields": sorted(rec.fields),
            "backend": namespace_name(ens.xp),
            "dtype": str(like.dtype),
            "problem": cfg.problem,
        },
    }
    write_checkpoint(path, meta, arrays)


def load_run(path: str | os.PathLike, optimizer: Optimizer, ens: Any, cfg: Any,
             start: list[Any]) -> dict[str, Any]:
    """The loop's arrays, records and position from ``path``, on the backend, device and dtype
    of the ``start`` leaves given to ``run`` (which must have the checkpoint's shapes).

    Returns a dict: ``runs`` (fields of ``_Runs``), ``records`` (steps, losses, xs, fields as
    lists), ``step``, ``done`` and ``elapsed``.
    """
    meta, arrays = read_checkpoint(path, "run")
    where = os.fspath(path)
    info = _check_info(meta.get("run"), where)
    for name in SETTINGS:
        recorded, given = info["settings"].get(name, _IMPLIED.get(name)), getattr(cfg, name)
        if recorded != given:
            raise CheckpointError(
                f"{where} was written by a run with {name}={recorded!r}; resume it with the "
                f"same setting (got {name}={given!r}): the trace would differ otherwise"
            )
    _check_problem(info.get("problem"), cfg.problem, where)
    k = info["step"]
    if k > cfg.steps:
        raise CheckpointError(f"{where} is at step {k}, past steps={cfg.steps}")
    if tuple(info["batch_shape"]) != tuple(ens.batch_shape):
        raise CheckpointError(
            f"{where} holds an ensemble of shape {tuple(info['batch_shape'])}, the start given "
            f"has {tuple(ens.batch_shape)}"
        )
    start_shapes = [list(x.shape) for x in start]
    if info["leaves"] != start_shapes:
        raise CheckpointError(f"{where} holds points of shapes {info['leaves']}; the start "
                              f"given has {start_shapes}")
    like = ens.like
    optimizer = resolve_optimizer(meta["optimizer"], arrays, optimizer, like)
    count = len(info["leaves"])
    names = [f"run/{n}" for n in _ARRAYS] + [f"run/{n}/{i}" for n in _TREES for i in range(count)]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise CheckpointError(f"{where} lacks the array {missing[0]!r}")
    batch = tuple(ens.batch_shape)
    for name in names:
        want = batch if name.count("/") == 1 else tuple(start[int(name.rsplit("/", 1)[1])].shape)
        if tuple(arrays[name].shape) != want:
            raise CheckpointError(f"{where}: {name} has the shape {arrays[name].shape}, "
                                  f"expected {want}")
    runs = {name: to_backend(arrays[f"run/{name}"], like) for name in _ARRAYS}
    runs.update({name: [to_backend(arrays[f"run/{name}/{i}"], like) for i in range(count)]
                 for name in _TREES})
    dtypes = [leaf.dtype for leaf in runs["x"]]
    if dtypes != [x.dtype for x in start]:
        raise CheckpointError(
            f"{where} holds points of dtypes {dtypes}; the start given has "
            f"{[x.dtype for x in start]}"
        )
    template = tree_unflatten(ens.treedef, [ens.xp.zeros(x.shape, dtype=x.dtype, device=ens.dev)
                                            for x in start])
    runs["state"] = unpack_state(meta["state"], arrays, "state/", optimizer, like, where,
                                 template)
    records = _records(arrays, info, batch, where, forced_kept=k == cfg.steps,
                       every=cfg.record_every, k=k)
    return {"runs": runs, "records": records, "step": k, "done": info["done"],
            "elapsed": info["elapsed"]}


def _check_info(info: Any, where: str) -> dict[str, Any]:
    """The ``run`` section of a run checkpoint's meta, checked to be well formed."""
    kinds: dict[str, type | tuple[type, ...]] = {
        "step": int, "done": bool, "stopped": bool, "elapsed": (int, float), "settings": dict,
        "batch_shape": list, "leaves": list, "record_fields": list}
    if not isinstance(info, dict):
        raise CheckpointError(f"{where}: meta.json lacks the 'run' section")
    for key, kind in kinds.items():
        value = info.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CheckpointError(f"{where}: meta['run'][{key!r}] is {value!r:.60}, not a "
                                  f"{getattr(kind, '__name__', 'number')}")
    if info["step"] < 0 or any(name not in info["settings"] for name in SETTINGS):
        raise CheckpointError(f"{where}: meta['run'] has a negative step or lacks settings")
    shapes_ok = all(isinstance(s, list) and all(type(n) is int and n >= 0 for n in s)
                    for s in info["leaves"]) and all(
        type(n) is int and n >= 0 for n in info["batch_shape"])
    if not shapes_ok or not all(isinstance(n, str) for n in info["record_fields"]):
        raise CheckpointError(f"{where}: meta['run'] has malformed shapes or record fields")
    return info


def _check_problem(recorded: Any, given: Mapping[str, Any], where: str) -> None:
    """Refuse to resume a checkpoint of another problem (name, arguments or dimension)."""
    if recorded is None:
        return
    if not isinstance(recorded, dict):
        raise CheckpointError(f"{where}: meta['run']['problem'] is malformed: {recorded!r:.60}")
    for key in ("name", "dim", "arguments"):
        if recorded.get(key) != given.get(key):
            raise CheckpointError(
                f"{where} was written for another problem ({key}: {recorded.get(key)!r:.80} in "
                f"the file, {given.get(key)!r:.80} given): resume it on the same problem"
            )


def _records(arrays: Mapping[str, np.ndarray], info: Mapping[str, Any],
             batch: tuple[int, ...], where: str, *, forced_kept: bool, every: int,
             k: int) -> dict[str, Any]:
    names = ["records/steps", "records/losses"] + [
        f"records/field/{name}" for name in info["record_fields"]]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise CheckpointError(f"{where} lacks the records {missing[0]!r}")
    steps_array = arrays["records/steps"]
    n = len(steps_array) if steps_array.ndim == 1 else -1
    if n < 1 or steps_array.dtype.kind not in "iu" or tuple(arrays["records/losses"].shape) != (
            n, *batch):
        raise CheckpointError(f"{where}: the records' steps and losses do not fit "
                              f"(steps {steps_array.shape}, losses "
                              f"{arrays['records/losses'].shape}, ensemble {batch})")
    steps = [int(s) for s in steps_array]
    if steps[0] != 0 or steps[-1] > k or any(b <= a for a, b in itertools.pairwise(steps)):
        raise CheckpointError(f"{where}: the recorded steps are not 0 < ... <= {k}")
    for name in names[2:] + (["records/xs"] if "records/xs" in arrays else []):
        length = len(arrays[name]) if arrays[name].ndim else -1
        if not 0 <= length <= n:
            raise CheckpointError(f"{where}: {name} holds {length} records, the steps {n}")
    losses = list(arrays["records/losses"])
    xs = list(arrays["records/xs"]) if "records/xs" in arrays else []
    fields = {name: list(arrays[f"records/field/{name}"]) for name in info["record_fields"]}
    # A record taken only because the interrupted call ended at k.
    if steps[-1] == k and k % every != 0 and not info["done"] and not forced_kept:
        steps, losses, xs = steps[:-1], losses[:-1], xs[:-1]
        fields = {name: values[:-1] for name, values in fields.items()}
    return {"steps": steps, "losses": losses, "xs": xs, "fields": fields}
