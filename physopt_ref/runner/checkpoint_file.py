"""The checkpoint file itself: a ``.npz`` archive read with bounds taken from its own layout.

:func:`write_checkpoint` writes ``meta.json`` (JSON in a 0-d string array) and the arrays with
:func:`numpy.savez`, and records in ``meta["members"]`` the shape and dtype of every array.
:func:`read_checkpoint` never hands a member to :func:`numpy.load`. It reads

1. ``meta.json``, at most :data:`META_LIMIT` bytes, its JSON nesting checked to be at most
   :data:`DEPTH_LIMIT` deep before it is parsed (so no ``RecursionError``);
2. then each member named in ``meta["members"]``: its ``.npy`` header must give exactly the
   recorded shape and dtype (no object dtype), its size must be possible for the bytes the
   archive holds for it (a stored member holds its data; a deflated one expands at most
   :data:`DEFLATE_RATIO` times), and exactly that many bytes are read, then the end of the
   member, which makes :mod:`zipfile` check its CRC-32.

A member the layout does not name is refused without being read, as is a layout member the
archive lacks. Every failure is a :class:`CheckpointError` that says what is wrong.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEPTH_LIMIT", "FORMAT_VERSION", "META_LIMIT", "CheckpointError", "read_checkpoint",
           "write_checkpoint"]

#: The checkpoint format this version writes (and the only one it reads: format 1 recorded no
#: layout of its arrays, so its reads could not be bounded).
FORMAT_VERSION = 2
FORMAT = "physopt_ref checkpoint"
META = "meta.json"
#: Most bytes of ``meta.json`` read.
META_LIMIT = 4 << 20
#: Deepest JSON nesting of ``meta.json`` (the deepest spec the library writes is far less).
DEPTH_LIMIT = 48
#: Most a deflated member may expand (deflate's own limit is about 1032:1).
DEFLATE_RATIO = 1100


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, of a newer format, or of another optimizer."""


def library_version() -> str:
    """The installed physopt_ref's version."""
    from importlib.metadata import version

    return version("physopt_ref")


def write_checkpoint(path: str | os.PathLike, meta: Mapping[str, Any],
                     arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``meta`` (JSON, with the layout of ``arrays`` added) and ``arrays`` to ``path``
    atomically (temporary file, then move)."""
    members = {k: {"shape": list(a.shape), "dtype": np.lib.format.dtype_to_descr(a.dtype)}
               for k, a in arrays.items()}
    full: dict[str, Any] = {  # savez(**full): numpy's stub types the keywords as bool
        META: np.asarray(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION,
                                     "library_version": library_version(), **meta,
                                     "members": members})),
        **arrays,
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **full)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def json_depth_ok(text: str, limit: int = DEPTH_LIMIT) -> bool:
    """Whether the JSON text nests arrays and objects at most ``limit`` deep (strings skipped)."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _header(stream: Any, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"{name}: .npy format {version} is not read")
    return tuple(shape), bool(fortran), dtype


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str,
                 layout: Mapping[str, Any] | None) -> np.ndarray:
    """One ``.npy`` member, checked against its ``layout`` (shape, dtype; None: ``meta.json``)."""
    with zf.open(info) as stream:
        shape, fortran, dtype = _header(stream, name)
        if dtype.hasobject:
            raise ValueError(f"{name} has an object dtype ({dtype}), which is never read")
        if layout is None:  # meta.json: a 0-d string
            if shape != () or dtype.kind != "U" or dtype.itemsize > META_LIMIT:
                raise ValueError(f"{name} is not a JSON string of at most {META_LIMIT} bytes "
                                 f"(header: shape {shape}, dtype {dtype})")
        else:
            want_shape = tuple(layout["shape"])
            want_dtype = np.lib.format.descr_to_dtype(layout["dtype"])
            if shape != want_shape or dtype != want_dtype:
                raise ValueError(
                    f"{name} holds an array of shape {shape} and dtype {dtype}; the layout "
                    f"recorded in meta says shape {want_shape} and dtype {want_dtype}")
        nbytes = math.prod(shape) * dtype.itemsize
        room = info.compress_size * (DEFLATE_RATIO if info.compress_type else 1)
        if nbytes > room:
            raise ValueError(
                f"{name} claims {nbytes} bytes of data, more than the {info.compress_size} "
                "bytes the archive holds for it can give")
        data = bytearray(stream.read(nbytes))
        if len(data) != nbytes:
            raise ValueError(f"{name} is truncated ({len(data)} of {nbytes} bytes)")
        if stream.read(1):  # reaching the end also checks the member's CRC-32
            raise ValueError(f"{name} holds more data than its header says")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C")


def _check_layout(members: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(members, dict):
        raise CheckpointError(f"meta['members'] must be a table of arrays, got {members!r:.80}")
    for name, entry in members.items():
        ok = (isinstance(entry, dict) and isinstance(entry.get("shape"), list)
              and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                      for n in entry["shape"])
              and isinstance(entry.get("dtype"), str))
        if not ok:
            raise CheckpointError(f"meta['members'][{name!r}] is not {{shape, dtype}}: "
                                  f"{entry!r:.80}")
        try:
            dtype = np.lib.format.descr_to_dtype(entry["dtype"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"meta['members'][{name!r}]: unreadable dtype "
                                  f"{entry['dtype']!r:.40}") from exc
        if dtype.hasobject:
            raise CheckpointError(f"meta['members'][{name!r}]: object dtypes are never read")
    return members


def _check_meta(meta: Any, where: str, kind: str) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a physopt_ref checkpoint")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{where}: unreadable format version {version!r:.40}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{where} was written in checkpoint format {version} by physopt_ref "
            f"{meta.get('library_version')!r:.40}; this physopt_ref ({library_version()}) reads "
            f"formats up to {FORMAT_VERSION}: upgrade physopt_ref to read it"
        )
    if version < FORMAT_VERSION:
        raise CheckpointError(
            f"{where} is in checkpoint format {version}, which records no layout of its arrays; "
            f"this physopt_ref reads format {FORMAT_VERSION}: save the state again"
        )
    if meta.get("kind") != kind:
        raise CheckpointError(f"{where} holds a {meta.get('kind')!r:.40} checkpoint, "
                              f"not a {kind!r} one")
    for key in ("optimizer", "state"):
        if key not in meta:
            raise CheckpointError(f"{where}: meta.json lacks {key!r}")


def _read_meta(zf: zipfile.ZipFile, where: str) -> Any:
    try:
        info = zf.getinfo(META + ".npy")
    except KeyError:
        raise CheckpointError(
            f"{where} is not a readable physopt_ref checkpoint (damaged, truncated or another "
            f"kind of file): no {META} entry") from None
    text = str(_read_member(zf, info, META, None)[()])
    if not json_depth_ok(text):
        raise CheckpointError(f"{where}: {META} nests deeper than {DEPTH_LIMIT} levels")
    return json.loads(text)


#: What reading a damaged or foreign file raises, turned into a CheckpointError.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, struct.error, NotImplementedError, ValueError,
                OSError, EOFError, KeyError, IndexError, OverflowError, AttributeError,
                TypeError, UnicodeDecodeError, RecursionError, MemoryError)


@contextlib.contextmanager
def _archive(path: str | os.PathLike) -> Iterator[zipfile.ZipFile]:
    """The checkpoint's zip archive; any failure to read it is a :class:`CheckpointError`."""
    where = os.fspath(path)
    with open(path, "rb") as f:  # closed by us, also when reading a damaged file fails
        try:
            with zipfile.ZipFile(f) as zf:
                yield zf
        except CheckpointError:
            raise
        except _READ_ERRORS as exc:
            raise CheckpointError(
                f"{where} is not a readable physopt_ref checkpoint (damaged, truncated "
                f"or another kind of file): {type(exc).__name__}: {exc}"
            ) from exc


def read_checkpoint(path: str | os.PathLike, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(meta, arrays)`` of a checkpoint of ``kind``: every array of the recorded layout read
    (bounded and CRC-checked); see the module notes."""
    where = os.fspath(path)
    with _archive(path) as zf:
        meta = _read_meta(zf, where)
        if isinstance(meta, dict) and "members" in meta:
            meta["members"] = _check_layout(meta["members"])
        _check_meta(meta, where, kind)
        members = meta.get("members")
        if members is None:
            raise CheckpointError(f"{where}: meta.json lacks the layout 'members'")
        infos = {i.filename: i for i in zf.infolist()}
        names = {n.removesuffix(".npy") for n in infos} - {META}
        unknown = sorted(names - set(members))
        if unknown:
            raise CheckpointError(
                f"{where} holds members its layout does not name (not read): {unknown[:5]}")
        arrays = {}
        for name, layout in members.items():
            info = infos.get(name + ".npy")
            if info is None:
                raise CheckpointError(f"{where} lacks the array {name!r} of its layout")
            arrays[name] = _read_member(zf, info, name, layout)
    return meta, arrays


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a checkpoint, read with the bounds of :func:`read_checkpoint`."""
    with _archive(path) as zf:
        meta = _read_meta(zf, os.fspath(path))
    if not isinstance(meta, dict):
        raise CheckpointError(f"{os.fspath(path)} is not a physopt_ref checkpoint")
    return meta
