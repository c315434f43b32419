"""Checkpoints: an optimizer's state (or a whole :func:`~physopt_ref.run`) in a portable file.

:func:`save_state` writes a NumPy ``.npz`` archive (a zip of ``.npy`` arrays, read back with
``np.load(..., allow_pickle=False)``: no pickle, no code) holding

* ``meta.json``: the format tag and version, the library version, the kind of checkpoint, and
  the optimizer as data (its registry name, hyperparameters and chained transforms; see
  :mod:`physopt_ref.runner.spec` for how schedules, per-run arrays and functions are recorded);
* the state, field by field (``state/<field>`` or ``state/<field>/<leaf>``), every array with
  its exact dtype and bits;
* per-run hyperparameter arrays (``hp...``), and for a run the loop's arrays and records.

:func:`load_state` builds the optimizer again from the file, or checks the file against the
optimizer it is given, and returns the state on the host (NumPy) or on the backend and device
of ``like``. A checkpoint of another optimizer, a file of a newer format and a damaged file
(the zip's CRC-32 of every member is checked while reading) each give a :class:`CheckpointError`
that says which. Files are written to a temporary name and moved into place, so an interrupted
write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import array_namespace, device

from physopt_ref.backends import namespace_name, to_numpy
from physopt_ref.core.contract import Optimizer
from physopt_ref.runner.spec import SpecError, build_optimizer, optimizer_spec, spec_difference

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "LoadedState",
    "checkpoint_info",
    "load_state",
    "save_state",
]

#: The checkpoint format this version writes (and the newest it reads).
FORMAT_VERSION = 1
_FORMAT = "physopt_ref checkpoint"
_META = "meta.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, of a newer format, or of another optimizer."""


class LoadedState(NamedTuple):
    """What :func:`load_state` returns: ``optimizer, state = load_state(path)``."""

    optimizer: Optimizer
    state: Any


def _library_version() -> str:
    from importlib.metadata import version


    return version("physopt_ref")


# ---------------------------------------------------------------------------------------------
# The file


def write_checkpoint(path: str | os.PathLike, meta: Mapping[str, Any],
                     arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``meta`` (JSON) and ``arrays`` to ``path`` atomically (temporary file, then move)."""
    full: dict[str, Any] = {  # savez(**full): numpy's stub types the keywords as bool
        _META: np.asarray(json.dumps({"format": _FORMAT, "format_version": FORMAT_VERSION,
                                      "library_version": _library_version(), **meta})),
        **arrays,
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **full)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(meta, arrays)`` of a checkpoint of ``kind``, every array read (and CRC-checked)."""
    with open(path, "rb") as f:  # closed by us, also when np.load fails on a damaged file
        try:
            with np.load(f, allow_pickle=False) as data:
                files = list(data.files)
                if _META not in files:
                    raise KeyError(f"no {_META} entry (entries: {files[:5]})")
                meta = json.loads(str(data[_META][()]))
                arrays = {k: data[k] for k in files if k != _META}

        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, AttributeError,
                TypeError) as exc:
            raise CheckpointError(
                f"{os.fspath(path)} is not a readable physopt_ref checkpoint (damaged, truncated "
                f"or another kind of file): {type(exc).__name__}: {exc}"
            ) from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise CheckpointError(f"{os.fspath(path)} is not a physopt_ref checkpoint")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{os.fspath(path)}: unreadable format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{os.fspath(path)} was written in checkpoint format {version} by physopt_ref "
            f"{meta.get('library_version')}; this physopt_ref ({_library_version()}) reads "
            f"formats up to {FORMAT_VERSION}: upgrade physopt_ref to read it"
        )
    if meta.get("kind") != kind:
        raise CheckpointError(
            f"{os.fspath(path)} holds a {meta.get('kind')!r} checkpoint, not a {kind!r} one"
        )
    return meta, arrays


def checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a checkpoint (format, versions, kind, the optimizer as data, ...)."""
    with open(path, "rb") as f:
        try:
            with np.load(f, allow_pickle=False) as data:
                return json.loads(str(data[_META][()]))
        except Exception as exc:
            raise CheckpointError(
                f"{os.fspath(path)} is not a readable physopt_ref checkpoint: {exc}"
            ) from exc


# ---------------------------------------------------------------------------------------------
# Arrays and states


def to_backend(value: np.ndarray, like: Any) -> Any:
    """A host array on ``like``'s namespace and device with its own dtype (``like=None``: as
    it is). Refuses a dtype the backend cannot hold (JAX without x64 has no float64)."""
    if like is None:
        return value
    xp = array_namespace(like)
    dtype = getattr(xp, value.dtype.name)
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


def unpack_state(layout: Mapping[str, Any], arrays: Mapping[str, np.ndarray], prefix: str,
                 state_type: type[Any], like: Any) -> Any:
    """The state of ``layout`` as ``state_type``, its arrays on ``like``'s backend."""
    names = tuple(f["name"] for f in layout["fields"])
    if names != state_type._fields:
        raise CheckpointError(
            f"the checkpoint's state ({layout['type']}) has the fields {names}; this optimizer's "
            f"{state_type.__name__} has {state_type._fields}"
        )
    try:
        values = [
            to_backend(arrays[f"{prefix}{f['name']}"], like) if f["leaves"] is None
            else tuple(to_backend(arrays[f"{prefix}{f['name']}/{i}"], like)
                       for i in range(f["leaves"]))
            for f in layout["fields"]
        ]
    except KeyError as exc:
        raise CheckpointError(f"the checkpoint lacks the state array {exc}") from exc
    return state_type(*values)


def optimizer_meta(optimizer: Optimizer, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The optimizer as data for a checkpoint (its per-run arrays added to ``arrays``)."""
    try:
        spec, hp_arrays = optimizer_spec(optimizer)
    except SpecError as exc:
        raise CheckpointError(f"cannot record {optimizer!r}: {exc}") from exc
    arrays.update(hp_arrays)
    return {"spec": spec, "repr": repr(optimizer)}


def resolve_optimizer(recorded: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                      optimizer: Optimizer | None, like: Any) -> Optimizer:
    """The given optimizer, checked against the recorded one, or the recorded one built again."""
    spec = recorded["spec"]
    if optimizer is not None:
        given = optimizer_spec(optimizer)
        found = spec_difference((spec, arrays), given)
        if found:
            raise CheckpointError(
                f"the checkpoint is for another optimizer, {recorded['repr']}, not {optimizer!r}"
                f" ({found})"
            )
        return optimizer
    keys = _array_keys(spec)
    try:
        return build_optimizer(spec, {k: to_backend(arrays[k], like) for k in keys})
    except SpecError as exc:
        raise CheckpointError(str(exc)) from exc


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
               like: Any = None) -> LoadedState:
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

    Raises
    ------
    CheckpointError
        For a damaged file, a file of a newer format, or a checkpoint of another optimizer.
    """
    meta, arrays = read_checkpoint(path, "optimizer_state")
    optimizer = resolve_optimizer(meta["optimizer"], arrays, optimizer, like)
    state = unpack_state(meta["state"], arrays, "state/", optimizer.state_type, like)
    return LoadedState(optimizer, state)
