"""Checkpoints: an optimizer's state (or a whole :func:`~physopt_ref.run`) in a portable file.

:func:`save_state` writes a NumPy ``.npz`` archive (a zip of ``.npy`` arrays; no pickle, no
code) holding

* ``meta.json``: the format tag and version, the library version, the kind of checkpoint, and
  the optimizer as data (its registry name, hyperparameters and chained transforms; see
  :mod:`physopt_ref.runner.spec` for how schedules, per-run arrays and functions are recorded);
* the state, field by field (``state/<field>`` or ``state/<field>/<leaf>``), every array with
  its exact dtype and bits;
* per-run hyperparameter arrays (``hp...``), and for a run the loop's arrays and records;
* in ``meta["members"]``, the shape and dtype of every array.

Reading is bounded by that layout (:mod:`physopt_ref.runner.checkpoint_file`: no member read
that the layout does not name, none larger than recorded, JSON no deeper than needed), and the
state read is checked against the layout ``optimizer.init`` makes (fields, shapes, dtypes, an
int32 count) before it is returned.

:func:`load_state` builds the optimizer again from the file, or checks the file against the
optimizer it is given, and returns the state on the host (NumPy) or on the backend and device
of ``like``. A checkpoint of another optimizer, a file of a newer format and a damaged file
(the zip's CRC-32 of every member is checked while reading) each give a :class:`CheckpointError`
that says which. Files are written to a temporary name and moved into place, so an interrupted
write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import array_namespace, device

from physopt_ref.backends import namespace_name, to_numpy
from physopt_ref.core.contract import Optimizer
from physopt_ref.runner.checkpoint_file import (
    FORMAT_VERSION,
    CheckpointError,
    read_checkpoint,
    read_meta,
    write_checkpoint,
)
from physopt_ref.runner.spec import SpecError, build_optimizer, optimizer_spec, spec_difference

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "LoadedState",
    "checkpoint_info",
    "load_state",
    "save_state",
]



class LoadedState(NamedTuple):
    """What :func:`load_state` returns: ``optimizer, state = load_state(path)``."""

    optimizer: Optimizer
    state: Any


# ---------------------------------------------------------------------------------------------
# Arrays and states


def to_backend(value: np.ndarray, like: Any) -> Any:
    """A host array on ``like``'s namespace and device with its own dtype (``like=None``: as
    it is). Refuses a dtype the backend cannot hold (JAX without x64 has no float64)."""
    if like is None:
        return value
    xp = array_namespace(like)
    dtype = getattr(xp, value.dtype.name, None)
    if dtype is None:
        raise CheckpointError(f"{namespace_name(xp)} has no dtype {value.dtype.name}")
    out = xp.asarray(value, dtype=dtype, device=device(like))
    if out.dtype != dtype:
        raise CheckpointError(
            f"{namespace_name(xp)} made {out.dtype} of the checkpoint's {value.dtype} data "
            "(for JAX, float64 needs jax.config.update('jax_enable_x64', True))"
        )
    return out


def pack_state(state: Any, arrays: dict[str, np.ndarray], prefix: str) -> dict[str, Any]:
    """Add the state's arrays to ``arrays`` (keys ``prefix + field[/leaf]``); return its layout."""
    fields = []
    for name, value in zip(state._fields, state, strict=True):
        if isinstance(value, tuple):
            for i, leaf in enumerate(value):
                arrays[f"{prefix}{name}/{i}"] = np.asarray(to_numpy(leaf))
            fields.append({"name": name, "leaves": len(value)})
        else:
            arrays[f"{prefix}{name}"] = np.asarray(to_numpy(value))
            fields.append({"name": name, "leaves": None})
    return {"type": type(state).__name__, "fields": fields}


def _state_fields(layout: Any, arrays: Mapping[str, np.ndarray], prefix: str
                  ) -> list[tuple[str, int | None]]:
    """``(name, leaves)`` of each field of a recorded state layout, checked to be well formed
    and to name arrays the file holds."""
    fields = layout.get("fields") if isinstance(layout, dict) else None
    if not isinstance(fields, list):
        raise CheckpointError(f"the checkpoint's state layout is not {{type, fields}}: "
                              f"{layout!r:.80}")
    out = []
    for f in fields:
        name = f.get("name") if isinstance(f, dict) else None
        leaves = f.get("leaves") if isinstance(f, dict) else None
        if not isinstance(name, str) or not (
                leaves is None or (type(leaves) is int and 0 <= leaves <= len(arrays))):
            raise CheckpointError(f"the checkpoint's state layout has a malformed field "
                                  f"{f!r:.80}")
        keys = [f"{prefix}{name}"] if leaves is None else [
            f"{prefix}{name}/{i}" for i in range(leaves)]
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise CheckpointError(f"the checkpoint lacks the state array {missing[0]!r}")
        out.append((name, leaves))
    return out


def _describe(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_describe(v) for v in value]
    return (tuple(value.shape), str(value.dtype))


def _layout_difference(state: Any, expected: Any) -> str | None:
    """The first field whose structure, shapes or dtypes differ from ``expected``'s."""
    for name, got, want in zip(state._fields, state, expected, strict=True):
        a, b = _describe(got), _describe(want)
        if a != b:
            return f"{name}: {a} in the file, {b} expected"
    return None


def _templates(xp: Any, state: Any) -> list[list[tuple[tuple[int, ...], Any, Any]]]:
    """Candidate parameter trees for a state, as (shape, dtype, device) per leaf: those of each
    tuple field whose arrays have the count's ensemble axes in front and a real floating dtype;
    then the same shapes in each half dtype the namespace has that is narrower (a state kept
    wider than its parameters, ``state_dtype``, is made for half-precision parameters)."""
    batch = tuple(state.count.shape)
    fields = [
        [(tuple(v.shape), v.dtype, device(v)) for v in value] for value in state
        if isinstance(value, tuple) and value and all(
            tuple(v.shape[:len(batch)]) == batch and xp.isdtype(v.dtype, "real floating")
            for v in value)
    ]
    out = list(fields)
    for name in ("float16", "bfloat16"):
        half = getattr(xp, name, None)
        if half is None:
            continue
        bits = xp.finfo(half).bits
        out.extend([(shape, half, dev) for shape, _, dev in leaves] for leaves in fields
                   if all(xp.finfo(dt).bits > bits for _, dt, _ in leaves))
    return out


def check_state(optimizer: Optimizer, state: Any, where: str,
                params: Any = None) -> None:
    """Refuse a ``state`` whose layout is not what ``optimizer.init`` makes.

    ``params``: the parameters the state is for (a tree of arrays of the state's backend);
    without them, the parameter-shaped fields of the state are tried as the template (a list of
    leaves: a transform that needs the parameters' tree, such as a mask of a dict, then checks
    nothing more). The count must be an int32 array.
    """
    count = state.count
    if isinstance(count, tuple) or not hasattr(count, "dtype"):
        raise CheckpointError(f"{where}: the state's count is not an array")
    empty = [name for name, value in zip(state._fields, state, strict=True)
             if isinstance(value, tuple) and not value]
    if empty:
        raise CheckpointError(f"{where}: the state's per-leaf field {empty[0]} has no leaves")
    xp = array_namespace(count)
    if count.dtype != xp.int32:
        raise CheckpointError(f"{where}: the state's count is {_describe(count)}; the contract "
                              "keeps it an int32 array")
    candidates = [None] if params is not None else _templates(xp, state)
    if not candidates and any(isinstance(v, tuple) and v for v in state):
        raise CheckpointError(
            f"{where}: the state's per-leaf arrays {_describe(tuple(state))[1:]} do not all "
            f"start with the count's ensemble shape {tuple(count.shape)}")
    found = None
    for template in candidates:
        try:
            expected = optimizer.init(
                params if template is None
                else [xp.zeros(shape, dtype=dt, device=dev) for shape, dt, dev in template],
                batch_ndim=count.ndim)
        except (TypeError, ValueError) as exc:
            if params is not None:
                raise CheckpointError(f"{where}: the parameters given are not valid for "
                                      f"{optimizer!r}: {exc}") from exc
            # A transform that needs the parameters' tree (a mask of a dict): the list of
            # leaves cannot stand in for it; only params= checks such a state fully.
            continue
        difference = _layout_difference(state, expected)
        if difference is None:
            return
        found = found or difference  # the first candidate's (the state's own dtypes)
    if found is not None:
        raise CheckpointError(f"{where}: the state does not fit {optimizer!r}: {found}")


def unpack_state(layout: Mapping[str, Any], arrays: Mapping[str, np.ndarray], prefix: str,
                 optimizer: Optimizer, like: Any, where: str,
                 params: Any = None) -> Any:
    """The state of ``layout`` as ``optimizer.state_type``, checked (:func:`check_state`), its
    arrays on ``like``'s backend."""
    state_type = optimizer.state_type
    fields = _state_fields(layout, arrays, prefix)
    names = tuple(name for name, _ in fields)
    if names != state_type._fields:
        raise CheckpointError(
            f"the checkpoint's state ({layout.get('type')!r:.40}) has the fields {names}; this "
            f"optimizer's {state_type.__name__} has {state_type._fields}"
        )
    state = state_type(*[
        to_backend(arrays[f"{prefix}{name}"], like) if leaves is None
        else tuple(to_backend(arrays[f"{prefix}{name}/{i}"], like) for i in range(leaves))
        for name, leaves in fields
    ])
    check_state(optimizer, state, where, params)
    return state


def optimizer_meta(optimizer: Optimizer, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The optimizer as data for a checkpoint (its per-run arrays added to ``arrays``)."""
    try:
        spec, hp_arrays = optimizer_spec(optimizer)
    except SpecError as exc:
        raise CheckpointError(f"cannot record {optimizer!r}: {exc}") from exc
    arrays.update(hp_arrays)
    return {"spec": spec, "repr": repr(optimizer)}


def resolve_optimizer(recorded: Any, arrays: Mapping[str, np.ndarray],
                      optimizer: Optimizer | None, like: Any) -> Optimizer:
    """The given optimizer, checked against the recorded one, or the recorded one built again."""
    spec = recorded.get("spec") if isinstance(recorded, dict) else None
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)
            and isinstance(spec.get("hyperparameters"), dict)
            and isinstance(spec.get("transforms"), list)):
        raise CheckpointError(f"the checkpoint's optimizer record is not "
                              f"{{spec: {{name, hyperparameters, transforms}}}}: {recorded!r:.80}")
    try:
        keys = _array_keys(spec)
        missing = [k for k in keys if not isinstance(k, str) or k not in arrays]
        if missing:
            raise SpecError(f"the spec names arrays the file lacks: {missing[:3]}")
        if optimizer is not None:
            found = spec_difference((spec, arrays), optimizer_spec(optimizer))
            if found:
                raise CheckpointError(
                    f"the checkpoint is for another optimizer, {recorded.get('repr')}, not "
                    f"{optimizer!r} ({found})"
                )
            return optimizer
        return build_optimizer(spec, {k: to_backend(arrays[k], like) for k in keys})
    except SpecError as exc:
        raise CheckpointError(str(exc)) from exc
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"the checkpoint's optimizer record is malformed: "
                              f"{type(exc).__name__}: {exc}") from exc


def _array_keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        if set(value) == {"array"}:
            return [value["array"]]
        return [k for v in value.values() for k in _array_keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in _array_keys(v)]
    return []


# ---------------------------------------------------------------------------------------------
# The public functions


def save_state(path: str | os.PathLike, optimizer: Optimizer, state: Any) -> None:
    """Write ``optimizer``'s ``state`` to ``path`` (a ``.npz`` archive; see the module notes).

    The state may live on any backend and device (it is copied to the host). Hyperparameters
    that are the library's schedules are recorded by name and arguments, per-run arrays as
    arrays; a function of the user's (a ``lambda`` schedule) is recorded by its ``repr`` only,
    so such a checkpoint is loaded with the optimizer passed in (``load_state(path,
    optimizer=...)``).
    """
    if type(state) is not optimizer.state_type:
        raise TypeError(
            f"save_state: the state is a {type(state).__name__}, not {optimizer!r}'s "
            f"{optimizer.state_type.__name__}"
        )
    arrays: dict[str, np.ndarray] = {}
    meta = {
        "kind": "optimizer_state",
        "optimizer": optimizer_meta(optimizer, arrays),
        "state": pack_state(state, arrays, "state/"),
        "backend": namespace_name(array_namespace(state.count)),
    }
    write_checkpoint(path, meta, arrays)


def load_state(path: str | os.PathLike, optimizer: Optimizer | None = None, *,
               like: Any = None, params: Any = None) -> LoadedState:
    """Read a checkpoint of :func:`save_state`: ``optimizer, state = load_state(path)``.

    Parameters
    ----------
    path : str or path
    optimizer : Optimizer, optional
        The optimizer the state is for: the file must record the same name, hyperparameters
        and transforms (else :class:`CheckpointError` says what differs), and this object is
        returned. Without it the optimizer is built again with its registered factory.
    like : array, optional
        Put the state (and per-run hyperparameter arrays) on this array's backend and device,
        with the recorded dtypes. Default: NumPy arrays.
    params : array or tree of arrays, optional
        The parameters the state will step (on ``like``'s backend): the state must be what
        ``optimizer.init(params)`` makes, shape for shape and dtype for dtype. Without them the
        state is checked against itself: an int32 count, per-leaf arrays with the count's
        ensemble axes, and every field what ``init`` makes for parameters shaped like the
        per-leaf arrays (a state saved for other parameters of a consistent shape is only
        refused with ``params``).

    Raises
    ------
    CheckpointError
        For a damaged file, a file of a newer format, a checkpoint of another optimizer, or a
        state whose layout is not the optimizer's (see ``params``).
    """
    meta, arrays = read_checkpoint(path, "optimizer_state")
    optimizer = resolve_optimizer(meta["optimizer"], arrays, optimizer, like)
    state = unpack_state(meta["state"], arrays, "state/", optimizer, like, os.fspath(path),
                         params)
    return LoadedState(optimizer, state)


def checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a checkpoint (format, versions, kind, the optimizer as data, the layout
    of its arrays, ...), read with the bounds of every checkpoint read."""
    return read_meta(path)
