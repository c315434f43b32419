"""State dicts of :class:`physopt_ref.adapters.torch.PhysicsOptimizer`: group values stored as
data, and the layout of a loaded state checked against the parameters.

torch's ``Optimizer.load_state_dict`` takes any tensors it is given (it only casts floating
ones to the parameter's dtype), so a state saved for a model of other shapes would load and
fail deep inside the next step. :func:`check_loaded_layout` compares every field of every
parameter with the state ``init`` makes for the loading optimizer's parameters (built on
torch's ``meta`` device: no memory, no data) and names the parameter it refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from physopt_ref.adapters.torch_values import host_values, rebuilt
from physopt_ref.core.contract import Optimizer
from physopt_ref.runner.spec import SpecError, decode_value, encode_value

__all__ = [
    "Checkpoints",
    "check_loaded_layout",
    "decode_groups",
    "encode_groups",
    "restore_exact_dtypes",
    "state_fields",
]

_STATE_KEY = "physopt_ref"

_ENCODED = "physopt_ref_value"  # a group value stored as data (see encode_groups)


def _stored_as_is(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_stored_as_is(v) for v in value)
    return isinstance(value, bool | int | float | str | torch.Tensor | None)


def encode_groups(groups: list[dict[str, Any]], keys: list[str]) -> None:
    """Replace, in place, group values that torch cannot load with ``weights_only`` by data."""
    for group in groups:
        for key in keys:
            value = group[key]
            if not _stored_as_is(value):
                group[key] = {_ENCODED: encode_value(value, key)}


def decode_groups(mine: list[dict[str, Any]], saved: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The saved groups with encoded values decoded (a user's function: the loading group's)."""
    out = []
    for current, group in zip(mine, saved, strict=False):
        group = dict(group)
        for key, value in group.items():
            if isinstance(value, dict) and set(value) == {_ENCODED}:
                try:
                    group[key] = decode_value(value[_ENCODED], key)
                except SpecError:  # a user's function: the one this optimizer was given
                    group[key] = current[key]
        out.append(group)
    return out


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} of shape {tuple(value.shape)}"
    return type(value).__name__


def check_loaded_layout(opt: Any, state_dict: Mapping[str, Any]) -> None:
    """Refuse a state whose fields do not fit ``opt``'s parameters (``ValueError``).

    Per parameter: either no state (not stepped yet) or every field of the optimizer's state,
    each a tensor of the shape ``init`` gives it; a floating field must be floating (torch
    casts it to the parameter's dtype), an integer or boolean field (the ``int32`` count,
    counters, flags) must have exactly its dtype.
    """
    saved_groups = state_dict.get("param_groups")
    saved_state = state_dict.get("state")
    if not isinstance(saved_groups, list) or not isinstance(saved_state, Mapping):
        raise ValueError("a state dict needs 'param_groups' (a list) and 'state' (a mapping)")
    if len(saved_groups) != len(opt.param_groups):
        raise ValueError(
            f"the state dict has {len(saved_groups)} param groups, this optimizer "
            f"{len(opt.param_groups)}"
        )
    ids: list[Any] = []
    for g, (mine, theirs) in enumerate(zip(opt.param_groups, saved_groups, strict=True)):
        if len(theirs.get("params", ())) != len(mine["params"]):
            raise ValueError(
                f"param group {g} of the state dict has {len(theirs.get('params', ()))} "
                f"parameters, this optimizer's {len(mine['params'])}"
            )
        ids.extend((g, i, saved) for i, saved in enumerate(theirs["params"]))
    where_of = {}
    for g, group in enumerate(opt.param_groups):
        for i, p in enumerate(group["params"]):
            where_of[id(p)] = (f"param_groups[{g}]['params'][{i}] ({p.dtype} of shape "
                               f"{tuple(p.shape)})")
    saved_by_param = {}
    flat = [p for group in opt.param_groups for p in group["params"]]
    for (_, _, saved), p in zip(ids, flat, strict=True):
        saved_by_param[id(p)] = saved_state.get(saved, {})
    for params, fields in _templates(opt):
        entries = [saved_by_param[id(p)] for p in params]
        for p, name, want in fields:
            entry = saved_by_param[id(p)]
            if not entry and not any(entries):
                continue  # a tree not stepped yet
            _check_field(entry, name, want, where_of[id(p)])


def _templates(opt: Any) -> list[tuple[list[Any], list[tuple[Any, str, Any]]]]:
    """Per tree: its parameters, and (parameter, field name, ``init``'s value) for each field
    (a field shared by the tree, the count say, under its first parameter)."""
    out = []
    for index, groups in enumerate(opt._trees()):
        params = [p for group in groups for p in group["params"]]
        if not params:
            continue
        template = opt._template(index, groups)
        fields: list[tuple[Any, str, Any]] = []
        for name, value in zip(template._fields, template, strict=True):
            if isinstance(value, tuple):
                fields.extend((p, name, want) for p, want in zip(params, value, strict=True))
            else:
                fields.append((params[0], name, value))
        out.append((params, fields))
    return out


def _check_field(entry: Mapping[str, Any], name: str, want: Any, where: str) -> None:
    if name not in entry:
        raise ValueError(f"the state dict lacks the field {name!r} of {where}")
    got = entry[name]
    if not isinstance(got, torch.Tensor):
        raise ValueError(f"state field {name!r} of {where} is a {_describe(got)}, not a tensor")
    if tuple(got.shape) != tuple(want.shape):
        raise ValueError(
            f"state field {name!r} of {where} has shape {tuple(got.shape)}, expected "
            f"{tuple(want.shape)} (a state saved for other parameters?)"
        )
    if want.is_floating_point():
        if not got.is_floating_point():
            raise ValueError(
                f"state field {name!r} of {where} is {got.dtype}, expected a floating dtype"
            )
    elif got.dtype != want.dtype:
        raise ValueError(f"state field {name!r} of {where} is {got.dtype}, expected {want.dtype}")


def restore_exact_dtypes(opt: Any, state_dict: Mapping[str, Any]) -> None:
    """Give every loaded field the dtype ``init`` gives it, from the saved tensor.

    torch's loader casts floating state to the parameter's dtype and leaves the rest as saved;
    here an integer or boolean field keeps its exact dtype, and a floating field the state
    dtype (float32 for BBI's, ECDSep's and Gravity's state and Gravity's residual on
    half-precision parameters: cast to bfloat16 they would lose what they are kept for).
    """
    saved = [i for g in state_dict["param_groups"] for i in g["params"]]
    params = [p for g in opt.param_groups for p in g["params"]]
    saved_of = {id(p): state_dict["state"].get(i, {}) for i, p in zip(saved, params, strict=True)}
    for _, fields in _templates(opt):
        for p, name, want in fields:
            value = saved_of[id(p)].get(name)
            if isinstance(value, torch.Tensor) and name in opt.state[p]:
                opt.state[p][name] = value.to(device=p.device, dtype=want.dtype, copy=True)


def state_fields(optimizer: Optimizer) -> tuple[str, ...]:
    """The names of the optimizer's state fields (its ``NamedTuple``'s)."""
    return tuple(optimizer.state_type._fields)


class Checkpoints(torch.optim.Optimizer):
    """``state_dict`` / ``load_state_dict`` of
    :class:`~physopt_ref.adapters.torch.PhysicsOptimizer` (its base class)."""

    _optimizer: Optimizer
    _keys: tuple[str, ...]
    _trees_state: dict[int, Any]

    def _values(self, group: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, with the optimizer's name and state fields under
        ``"physopt_ref"`` (checked when loading).

        Group values other than numbers, strings, tuples of numbers and tensors (schedules,
        trees of per-leaf settings) are stored as plain data (:mod:`physopt_ref.runner.spec`),
        so that ``torch.load(..., weights_only=True)`` reads the file; a function of the
        user's is stored by name and taken from the loading optimizer's group.
        """
        out = super().state_dict()
        encode_groups(out["param_groups"], list(self._keys))
        out[_STATE_KEY] = {"optimizer": repr(self._optimizer), "name": self._optimizer.name,
                           "fields": list(state_fields(self._optimizer))}
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state dict of the same optimizer, every field with its own dtype.

        Refused (``ValueError``, naming the parameter) when a field's shape or dtype does not
        fit the parameters (a model of other shapes, an ``int8`` count, a field missing).
        """
        mine = {"name": self._optimizer.name, "fields": list(state_fields(self._optimizer))}
        theirs = state_dict.get(_STATE_KEY)
        if theirs is None or any(theirs.get(k) != v for k, v in mine.items()):
            made_by = theirs["optimizer"] if theirs else "another optimizer (not physopt_ref)"
            raise ValueError(
                f"this state dict was made by {made_by}, not by {self._optimizer!r}"
            )
        check_loaded_layout(self, state_dict)
        plain = {k: v for k, v in state_dict.items() if k != _STATE_KEY}
        plain["param_groups"] = decode_groups(self.param_groups, state_dict["param_groups"])
        super().load_state_dict(plain)
        restore_exact_dtypes(self, state_dict)
        for tree in self._trees_state.values():
            tree.key = None  # rebuilt from the loaded groups at the next step

    def _template(self, index: int, groups: list[dict[str, Any]]) -> Any:
        """The state ``init`` makes for a tree, on the ``meta`` device (no memory)."""
        params = [p for g in groups for p in g["params"]]
        values = host_values(self._values(groups[0]))
        opt = rebuilt(self._optimizer, values)
        return opt.init([torch.empty_like(p, device="meta") for p in params])
