"""The key of a compiled loop step: everything its trace reads, as hashable plain values.

:func:`settings_key` turns the optimizer, the objective and the run settings into a nested
tuple of Python numbers, strings, types, functions' code objects and array digests, so that two
runs get the same key only when tracing :func:`physopt_ref.runner.advance._advance` for them
gives the same program (:mod:`physopt_ref.runner.compiled` keeps the compiled step under it).
The key holds no array: an array (a per-run hyperparameter, a problem's data) enters as its
type, shape, dtype, device and a SHA-256 digest of its bytes. What cannot be keyed that way (a
tracer, an object of unknown kind, a structure nested too deep) raises :class:`Uncacheable`,
and the run then compiles its own step as before.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import types
from typing import Any

import numpy as np

from physopt_ref.core.contract import Optimizer
from physopt_ref.core.schedules import Schedule
from physopt_ref.problems import Problem

__all__ = ["Uncacheable", "settings_key"]

# Python values that stand for themselves in a key (their type is kept too: 1, 1.0 and True
# are equal in Python but trace differently).
_PLAIN = (type(None), bool, int, float, complex, str, bytes, type(Ellipsis))
# Objects keyed by identity: they are immutable or are code, and live as long as the program.
_BY_IDENTITY = (type, types.ModuleType, types.BuiltinFunctionType, types.CodeType,
                types.MethodWrapperType, types.WrapperDescriptorType, np.dtype, enum.Enum)
_MAX_DEPTH = 12
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement


class Uncacheable(Exception):  # noqa: N818 (a signal, caught in physopt_ref.runner.compiled)
    """A value that the key cannot capture; the run compiles its own step."""


def _array_key(value: Any) -> tuple[Any, ...]:
    """Type, shape, dtype, device, weak type and a digest of the bytes (no array is kept)."""
    try:
        host = np.ascontiguousarray(np.asarray(value))
    except Exception as exc:  # a tracer, a key array: nothing to digest
        raise Uncacheable(f"an array of type {type(value).__name__}") from exc
    if host.dtype == object:
        raise Uncacheable("an object array")
    devices = getattr(value, "devices", None)
    where = repr(sorted(map(str, devices()))) if callable(devices) else repr(
        getattr(value, "device", None))
    return ("array", type(value), tuple(np.shape(value)), str(host.dtype), where,
            bool(getattr(value, "weak_type", False)),
            hashlib.sha256(host.data).hexdigest())


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray | np.generic) or (
        hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "__array__"))


def _function_key(fn: types.FunctionType, depth: int) -> tuple[Any, ...]:
    """Code, closure contents, defaults and the module globals the code names."""
    code = fn.__code__
    cells = tuple(_key(c.cell_contents, depth) if _filled(c) else ("empty",)
                  for c in fn.__closure__ or ())
    names = sorted(n for n in _names(code) if n in fn.__globals__)
    used = tuple((n, _global_key(fn.__globals__[n], depth)) for n in names)
    return ("function", code, cells, _key(fn.__defaults__, depth),
            _key(fn.__kwdefaults__, depth), used)


def _global_key(value: Any, depth: int) -> Any:
    """A module-level name: functions and classes by identity (as ``jax.jit`` keys a function),
    values (constants, arrays) by content."""
    if isinstance(value, types.FunctionType | type):
        return ("id", value)
    return _key(value, depth)


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 (an empty cell raises)
    except ValueError:
        return False
    return True


def _names(code: types.CodeType) -> set[str]:
    """The global names a code object and the code nested in it refer to."""
    out = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out |= _names(const)
    return out


def _object_key(value: Any, depth: int) -> tuple[Any, ...]:
    """An instance of this library's classes, of a subclass of an optimizer, schedule or
    problem, or of a dataclass, by its class and attributes (``__dict__`` and every
    ``__slots__``). Other objects, and classes with a part written in C (whose state may live
    outside those attributes, as ``functools.partial``'s does), cannot be keyed."""
    cls = type(value)
    known = isinstance(value, Optimizer | Schedule | Problem) or dataclasses.is_dataclass(
        value) or cls.__module__.partition(".")[0] == "physopt_ref"
    if not known or any(not c.__flags__ & _HEAPTYPE for c in cls.__mro__[:-1]):
        raise Uncacheable(f"a value of type {cls.__name__}")
    attrs: dict[str, Any] = dict(getattr(value, "__dict__", {}))
    for c in cls.__mro__:
        slots = vars(c).get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(value, name):
                attrs[name] = getattr(value, name)
    return ("object", cls, tuple((k, _key(attrs[k], depth)) for k in sorted(attrs)))


def _key(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise Uncacheable("a structure nested too deep")
    depth += 1
    if isinstance(value, _PLAIN):
        return (type(value), value)
    if isinstance(value, _BY_IDENTITY):
        return ("id", value)
    if _is_array(value):
        return _array_key(value)
    if isinstance(value, tuple | list | frozenset | set):
        items = sorted(value, key=repr) if isinstance(value, frozenset | set) else value
        return (type(value), tuple(_key(v, depth) for v in items))
    if isinstance(value, dict | types.MappingProxyType):
        return (type(value), tuple((_key(k, depth), _key(value[k], depth))
                                   for k in sorted(value, key=repr)))
    if isinstance(value, types.FunctionType):
        return _function_key(value, depth)
    if isinstance(value, types.MethodType):
        return ("method", _key(value.__func__, depth), _key(value.__self__, depth))
    return _object_key(value, depth)


def settings_key(*values: Any) -> tuple[Any, ...]:
    """The hashable key of ``values`` (raises :class:`Uncacheable` where there is none)."""
    key = tuple(_key(v) for v in values)
    try:
        hash(key)
    except TypeError as exc:
        raise Uncacheable(str(exc)) from None
    return key
