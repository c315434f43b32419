"""An optimizer as data: its registry name, hyperparameters and transforms, and back.

A *spec* is a JSON-able dict ``{"name", "hyperparameters", "transforms"}`` plus a dict of NumPy
arrays (the per-run hyperparameter arrays), written into checkpoints and used to build the
optimizer again with its registered factory. Values are tagged where JSON alone would lose them:

==============================================  ===============================================
Python value                                    JSON
==============================================  ===============================================
None, bool, int, str, finite float              itself
inf, -inf, nan                                  ``{"float": "inf"}``
tuple / list / dict (string keys)               ``{"tuple": [...]}``, ``{"list": [...]}``,
                                                ``{"dict": [[key, value], ...]}``
per-run array                                   ``{"array": key}`` (the data in the arrays)
the library's schedules (:mod:`.schedules`)      ``{"schedule": factory, "arguments": {...}}``
a gradient transform                            ``{"transform": name, "hyperparameters": ...}``
any other callable (a user's lambda or function)  ``{"callable": repr}``: recorded, not
                                                rebuilt (files hold no code)
==============================================  ===============================================

An optimizer whose spec holds a ``callable`` entry cannot be built from the file alone: the
caller passes the optimizer, and the rest of the spec is checked against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from physopt_ref.backends import to_numpy
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.registry import REGISTRY
from physopt_ref.core.schedules import (
    CoolingSchedule,
    DampingRamp,
    Schedule,
    _Constant,
    _CosineDecay,
    _ExponentialDecay,
    constant,
    coolmomentum_schedule,
    cosine_decay,
    damping_ramp,
    exponential_decay,
)
from physopt_ref.core.validate import is_array
from physopt_ref.transforms.chain import Chain, chain
from physopt_ref.transforms.gradient import TRANSFORMS, GradientTransform

__all__ = [
    "SpecError",
    "build_optimizer",
    "decode_value",
    "encode_value",
    "optimizer_spec",
    "spec_difference",
    "with_hyperparameters",
]

#: The library's schedule classes: (factory name, factory, the attributes that are its
#: arguments, in order).
_SCHEDULES: dict[type, tuple[str, Any, tuple[str, ...]]] = {
    _Constant: ("constant", constant, ("value",)),
    _ExponentialDecay: ("exponential_decay", exponential_decay, ("init", "rate", "steps")),
    _CosineDecay: ("cosine_decay", cosine_decay, ("init", "steps", "final")),
    DampingRamp: ("damping_ramp", damping_ramp, ("T", "zeta_start", "zeta_end")),
    CoolingSchedule: ("coolmomentum_schedule", coolmomentum_schedule,
                      ("name", "rho0", "cool_steps")),
}
_SCHEDULE_FACTORIES = {name: (fn, args) for name, fn, args in _SCHEDULES.values()}


class SpecError(ValueError):
    """An optimizer cannot be recorded, or built again, from its spec."""


# ---------------------------------------------------------------------------------------------
# Encoding


def _encode(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if is_array(value):
        arrays[where] = np.asarray(to_numpy(value))
        return {"array": where}
    if isinstance(value, GradientTransform):
        return _encode_transform(value, arrays, where)
    if isinstance(value, Schedule) and type(value) in _SCHEDULES:
        name, _, args = _SCHEDULES[type(value)]
        return {"schedule": name,
                "arguments": {a: _encode(getattr(value, a), arrays, f"{where}.{a}")
                              for a in args}}
    if isinstance(value, tuple | list):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {kind: [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": [[k, _encode(v, arrays, f"{where}.{k}")] for k, v in value.items()]}
    if callable(value):
        return {"callable": repr(value)}
    raise SpecError(
        f"{where}: cannot record a {type(value).__name__} ({value!r}) in a checkpoint; "
        "hyperparameters are numbers, strings, per-run arrays, schedules or trees of them"
    )


def encode_value(value: Any, where: str) -> Any:
    """One hyperparameter value as JSON-able data (no arrays: they need the archive)."""
    arrays: dict[str, np.ndarray] = {}
    out = _encode(value, arrays, where)
    if arrays:
        raise SpecError(f"{where}: an array value needs a checkpoint file (save_state)")
    return out


def decode_value(value: Any, where: str) -> Any:
    """The value :func:`encode_value` recorded (a ``callable`` entry raises :class:`SpecError`)."""
    return _decode(value, {}, where)


def _encode_transform(t: GradientTransform, arrays: dict[str, np.ndarray], where: str) -> dict:
    return {"transform": t.name,
            "hyperparameters": {k: _encode(v, arrays, f"{where}.{k}")
                                for k, v in t.hyperparameters.items()}}


def optimizer_spec(optimizer: Optimizer) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(spec, arrays)``: the optimizer as JSON-able data and its per-run arrays (NumPy)."""
    arrays: dict[str, np.ndarray] = {}
    transforms: tuple[GradientTransform, ...] = ()
    if isinstance(optimizer, Chain):
        transforms = optimizer.transforms
        optimizer = optimizer.optimizer
    spec = {
        "name": optimizer.name,
        "hyperparameters": {k: _encode(v, arrays, f"hp.{k}")
                            for k, v in optimizer.hyperparameters.items()},
        "transforms": [_encode_transform(t, arrays, f"transforms[{i}]")
                       for i, t in enumerate(transforms)],
    }
    return spec, arrays


# ---------------------------------------------------------------------------------------------
# Decoding


def _decode(value: Any, arrays: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, list):
        raise SpecError(f"{where}: unreadable value {value!r:.80} (lists are tagged)")
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (kind, body), = value.items()
        if kind == "float":
            try:
                return float(body)
            except (TypeError, ValueError):
                raise SpecError(f"{where}: unreadable float {body!r:.40}") from None
        if kind == "array":
            if not isinstance(body, str) or body not in arrays:
                raise SpecError(f"{where}: the per-run array {body!r:.40} is not in the file")
            return arrays[body]
        if kind in ("tuple", "list"):
            if not isinstance(body, list):
                raise SpecError(f"{where}: a {kind} must hold a list, got {body!r:.80}")
            items = [_decode(v, arrays, f"{where}[{i}]") for i, v in enumerate(body)]
            return tuple(items) if kind == "tuple" else items
        if kind == "dict":
            if not (isinstance(body, list) and all(
                    isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in body)):
                raise SpecError(f"{where}: a dict must hold [key, value] pairs, got {body!r:.80}")
            return {k: _decode(v, arrays, f"{where}.{k}") for k, v in body}
        if kind == "callable":
            raise SpecError(
                f"{where} was a function ({body}), which a checkpoint does not hold: pass the "
                "optimizer itself (optimizer=...) to load this file"
            )
    if "transform" in value:
        return _decode_transform(value, arrays, where)
    if "schedule" in value:
        return _decode_schedule(value, arrays, where)
    raise SpecError(f"{where}: unreadable value {value!r:.80}")


def _decode_schedule(value: Mapping[str, Any], arrays: Mapping[str, Any], where: str) -> Any:
    name, arguments = value["schedule"], value.get("arguments")
    if not isinstance(name, str) or name not in _SCHEDULE_FACTORIES:
        raise SpecError(f"{where}: unknown schedule {name!r:.40}; known: "
                        f"{sorted(_SCHEDULE_FACTORIES)}")
    fn, args = _SCHEDULE_FACTORIES[name]
    if not isinstance(arguments, dict) or set(arguments) != set(args):
        got = sorted(arguments) if isinstance(arguments, dict) else arguments
        raise SpecError(f"{where}: the schedule {name} takes the arguments {list(args)}; the "
                        f"file has {got!r:.80}")
    try:
        return fn(*(_decode(arguments[a], arrays, f"{where}.{a}") for a in args))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"{where}: the schedule {name} cannot be built: {exc}") from exc


def _decode_transform(value: Mapping[str, Any], arrays: Mapping[str, Any], where: str) -> Any:
    name, hyperparameters = value.get("transform"), value.get("hyperparameters")
    if not isinstance(name, str) or name not in TRANSFORMS:
        raise SpecError(f"{where}: unknown transform {name!r:.40}; known: {sorted(TRANSFORMS)}")
    if not isinstance(hyperparameters, dict):
        raise SpecError(f"{where}: the transform {name} has no hyperparameters table")
    hp = {k: _decode(v, arrays, f"{where}.{k}") for k, v in hyperparameters.items()}
    try:
        return TRANSFORMS[name](**hp)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"{where}: the transform {name} cannot be built: {exc}") from exc


def build_optimizer(spec: Mapping[str, Any], arrays: Mapping[str, Any]) -> Optimizer:
    """The optimizer of ``spec``, built with its registered factory (and re-chained).

    ``arrays`` maps the spec's array keys to arrays of the namespace the optimizer will run on.
    """
    name = spec["name"]
    if name not in REGISTRY:
        raise SpecError(
            f"the checkpoint is for the optimizer {name!r}, which is not registered here; "
            "register it (physopt_ref.register) or pass the optimizer itself"
        )
    hp = {k: _decode(v, arrays, f"hp.{k}") for k, v in spec["hyperparameters"].items()}
    try:
        optimizer = REGISTRY[name].factory(**hp)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{name} cannot be built from the recorded hyperparameters: {exc}") from exc
    transforms = [_decode_transform(t, arrays, f"transforms[{i}]")
                  for i, t in enumerate(spec["transforms"])]
    return chain(*transforms, optimizer) if transforms else optimizer


def with_hyperparameters(optimizer: Optimizer, **changes: Any) -> Optimizer:
    """``optimizer`` built again by its registered factory with some hyperparameters changed
    (its chain's transforms kept)."""
    transforms: tuple[GradientTransform, ...] = ()
    inner = optimizer
    if isinstance(optimizer, Chain):
        transforms, inner = optimizer.transforms, optimizer.optimizer
    if inner.name not in REGISTRY:
        raise SpecError(f"{inner.name!r} is not a registered optimizer: it cannot be rebuilt")
    unknown = set(changes) - set(inner.hyperparameters)
    if unknown:
        raise SpecError(f"{inner.name} has no hyperparameter {sorted(unknown)}")
    rebuilt = REGISTRY[inner.name].factory(**{**inner.hyperparameters, **changes})
    return chain(*transforms, rebuilt) if transforms else rebuilt


# ---------------------------------------------------------------------------------------------
# Comparison


def _difference(a: Any, b: Any, arrays_a: Mapping, arrays_b: Mapping, where: str) -> str | None:
    """Where two encoded values differ (``None`` where they agree); a recorded function agrees
    with any function."""
    if isinstance(a, dict) and isinstance(b, dict):
        if "callable" in a and "callable" in b:
            return None
        if "array" in a and "array" in b:
            x, y = np.asarray(arrays_a[a["array"]]), np.asarray(arrays_b[b["array"]])
            same = x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
            return None if same else f"{where}: per-run arrays {x} vs {y}"
        if set(a) != set(b):
            return f"{where}: {a!r} vs {b!r}"
        found = (_difference(a[k], b[k], arrays_a, arrays_b, f"{where}.{k}") for k in a)
        return next((f for f in found if f), None)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        found = (_difference(x, y, arrays_a, arrays_b, f"{where}[{i}]")
                 for i, (x, y) in enumerate(zip(a, b, strict=True)))
        return next((f for f in found if f), None)
    if type(a) is not type(b) or a != b:
        return f"{where}: {a!r} vs {b!r}"
    return None


def spec_difference(
    recorded: tuple[Mapping[str, Any], Mapping[str, Any]],
    given: tuple[Mapping[str, Any], Mapping[str, Any]],
) -> str | None:
    """The first difference between two ``(spec, arrays)`` pairs, as ``"where: a vs b"``."""
    (a, arrays_a), (b, arrays_b) = recorded, given
    if a["name"] != b["name"]:
        return f"the optimizer: {a['name']} vs {b['name']}"
    for part in ("hyperparameters", "transforms"):
        found = _difference(a[part], b[part], arrays_a, arrays_b, part)
        if found:
            return found
    return None
