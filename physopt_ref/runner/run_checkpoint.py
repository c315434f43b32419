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

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from physopt_ref.backends import namespace_name, to_numpy
from physopt_ref.core.contract import Optimizer
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
    for name, values in rec.fields.items():
        arrays[f"records/field/{name}"] = np.stack(
            [np.asarray(to_numpy(v), dtype=np.float64) for v in values])
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
    info = meta["run"]
    for name in SETTINGS:
        recorded, given = info["settings"].get(name, _IMPLIED.get(name)), getattr(cfg, name)
        if recorded != given:
            raise CheckpointError(
                f"{where} was written by a run with {name}={recorded!r}; resume it with the "
                f"same setting (got {name}={given!r}): the trace would differ otherwise"
            )
    k = int(info["step"])
    if k > cfg.steps:
        raise CheckpointError(f"{where} is at step {k}, past steps={cfg.steps}")
    if tuple(info["batch_shape"]) != tuple(ens.batch_shape):
        raise CheckpointError(
            f"{where} holds an ensemble of shape {tuple(info['batch_shape'])}, the start given "
            f"has {tuple(ens.batch_shape)}"
        )
    like = ens.like
    optimizer = resolve_optimizer(meta["optimizer"], arrays, optimizer, like)

    def leaves(name: str) -> list[Any]:
        count = len(info["leaves"])
        return [to_backend(arrays[f"run/{name}/{i}"], like) for i in range(count)]

    try:
        runs = {name: to_backend(arrays[f"run/{name}"], like) for name in _ARRAYS}
        runs.update({name: leaves(name) for name in _TREES})
    except KeyError as exc:
        raise CheckpointError(f"{where} lacks the array {exc}") from exc
    shapes = [tuple(leaf.shape) for leaf in runs["x"]]
    dtypes = [leaf.dtype for leaf in runs["x"]]
    if shapes != [tuple(x.shape) for x in start] or dtypes != [x.dtype for x in start]:
        raise CheckpointError(
            f"{where} holds points of shapes {shapes} and dtypes {dtypes}; the start given has "
            f"{[tuple(x.shape) for x in start]} and {[x.dtype for x in start]}"
        )
    runs["state"] = unpack_state(meta["state"], arrays, "state/", optimizer.state_type, like)
    records = _records(arrays, info, forced_kept=k == cfg.steps, every=cfg.record_every, k=k)
    return {"runs": runs, "records": records, "step": k, "done": bool(info["done"]),
            "elapsed": float(info["elapsed"])}


def _records(arrays: Mapping[str, np.ndarray], info: Mapping[str, Any], *, forced_kept: bool,
             every: int, k: int) -> dict[str, Any]:
    steps = [int(s) for s in arrays["records/steps"]]
    losses = list(arrays["records/losses"])
    xs = list(arrays["records/xs"]) if "records/xs" in arrays else []
    fields = {name: list(arrays[f"records/field/{name}"]) for name in info["record_fields"]}
    # A record taken only because the interrupted call ended at k.
    if steps[-1] == k and k % every != 0 and not info["done"] and not forced_kept:
        steps, losses, xs = steps[:-1], losses[:-1], xs[:-1]
        fields = {name: values[:-1] for name, values in fields.items()}
    return {"steps": steps, "losses": losses, "xs": xs, "fields": fields}
