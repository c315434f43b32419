"""Every registered optimizer as a ``torch.optim.Optimizer`` (``pip install 'physopt_ref[torch]'``).

>>> from physopt_ref.torch import BBI                                      # doctest: +SKIP
>>> opt = BBI(model.parameters(), lr=0.05, delta_e=0.5)                   # doctest: +SKIP
>>> def closure():                                                        # doctest: +SKIP
...     opt.zero_grad()
...     loss = loss_fn(model(x), y)
...     loss.backward()
...     return loss
>>> opt.step(closure)                                                     # doctest: +SKIP

One class per registered optimizer (:data:`SGD`, :data:`HeavyBall`, :data:`Nesterov`,
:data:`Adam`, :data:`Dyna`, :data:`DynaPrototype`, :data:`DynamicRelaxation`,
:data:`CoolMomentum`, :data:`BBI`, :data:`ECDSep`, :data:`Gravity`; :func:`optimizer_class`
for any registered name), or :class:`PhysicsOptimizer` built from a name or from an
:class:`~physopt_ref.Optimizer` (a :func:`~physopt_ref.chain` too). The step is the library's
functional step on the parameters' tensors, so it equals ``physopt_ref``'s own step bit for bit.

* **Param groups.** Each group is one parameter tree with its own hyperparameters and state,
  except for the energy-conserving family (``bbi``, ``ecdsep``: registry family ``"ecd"``),
  whose energy, :math:`|p|^2`, bounces and floor are global: all its parameters are one tree
  and every group must carry the same hyperparameters (a per-layer setting goes through
  :func:`~physopt_ref.masked` transforms instead). ``one_tree=`` overrides the choice. A
  changed group value (an ``torch.optim.lr_scheduler`` moving ``lr``) rebuilds the step with
  it; the state is kept.
* **The loss.** ``step(closure)`` evaluates the closure with gradients on and passes its loss
  to the step; an optimizer that needs the loss refuses ``step()`` without one.
* **No host synchronisation.** The step runs on the device: no ``.item()``, no ``bool()`` of a
  tensor (the library's steps use ``xp.where``; on the CPU a few decisions read host memory,
  which costs no synchronisation).
* **Gradients and autograd.** ``step`` runs under ``torch.no_grad`` (it works inside one) and
  writes the new values into the parameters (``p.copy_``): they stay leaves without history. A
  parameter without a gradient gets a zero gradient (the tree keeps its shape; torch's own
  optimizers skip it instead).
* **State.** ``opt.state[p]`` holds the per-parameter fields (momenta, ...) of ``p``; the fields
  of the whole tree (count, energies, floors, counters, bounce state) are in the state of the
  tree's first parameter. ``state_dict()`` / ``load_state_dict()`` round-trip them exactly,
  integer and boolean fields included (torch would cast them to the parameters' dtype).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from physopt_ref.core.contract import Optimizer
from physopt_ref.core.registry import REGISTRY, get_optimizer
from physopt_ref.runner.spec import SpecError, decode_value, encode_value, with_hyperparameters
from physopt_ref.transforms.chain import optimizer_parts

__all__ = [
    "BBI",
    "SGD",
    "Adam",
    "CoolMomentum",
    "Dyna",
    "DynaPrototype",
    "DynamicRelaxation",
    "ECDSep",
    "Gravity",
    "HeavyBall",
    "Nesterov",
    "PhysicsOptimizer",
    "optimizer_class",
]

_STATE_KEY = "physopt_ref"
_ENCODED = "physopt_ref_value"  # a group value stored as data (see state_dict)


def _same(a: Any, b: Any) -> bool:
    """Group values compare by value for plain data, by identity otherwise."""
    if a is b:
        return True
    plain = (bool, int, float, str, type(None))
    return isinstance(a, plain) and type(a) is type(b) and a == b


class PhysicsOptimizer(torch.optim.Optimizer):
    """A physopt_ref optimizer as a ``torch.optim.Optimizer``.

    Parameters
    ----------
    params : iterable of tensors or of dicts
        The parameters, or param groups (dicts with ``"params"`` and hyperparameter overrides).
    optimizer : str or physopt_ref.Optimizer
        A registered name (then ``hyperparameters`` build it) or a built optimizer (a chain
        too; its hyperparameters are the groups' defaults).
    one_tree : bool, optional
        All parameters as one tree (default for the energy-conserving family) or one tree per
        group (default otherwise).
    **hyperparameters
        The optimizer's hyperparameters (with a name).
    """

    def __init__(
        self,
        params: Iterable[Any],
        optimizer: str | Optimizer,
        *,
        one_tree: bool | None = None,
        **hyperparameters: Any,
    ) -> None:
        if isinstance(optimizer, str):
            optimizer = get_optimizer(optimizer, **hyperparameters)
        elif not isinstance(optimizer, Optimizer):
            raise TypeError(
                "optimizer must be a registered name or a physopt_ref.Optimizer, got "
                f"{type(optimizer).__name__}"
            )
        elif hyperparameters:
            raise TypeError(
                f"hyperparameters {sorted(hyperparameters)} given with a built optimizer; "
                "build it with them, or pass its name"
            )
        core, _ = optimizer_parts(optimizer)
        if one_tree is None:
            entry = REGISTRY.get(core.name)
            one_tree = entry is not None and entry.family == "ecd"
        self._optimizer = optimizer
        self._one_tree = bool(one_tree)
        self._built: dict[int, tuple[tuple[Any, ...], Optimizer]] = {}
        self._layouts: dict[int, tuple[tuple[str, bool], ...]] = {}
        super().__init__(params, dict(optimizer.hyperparameters))

    # -- trees and their optimizers --------------------------------------------------------

    def _trees(self) -> list[list[dict[str, Any]]]:
        """The param groups of each tree (one tree of all groups, or one per group)."""
        groups = self.param_groups
        return [groups] if self._one_tree else [[g] for g in groups]

    def _functional(self, index: int, groups: list[dict[str, Any]]) -> Optimizer:
        """The step for a tree: built again when its groups' hyperparameters change."""
        names = list(self._optimizer.hyperparameters)
        values = tuple(groups[0][k] for k in names)
        for group in groups[1:]:
            for k, v in zip(names, values, strict=True):
                if not _same(group[k], v):
                    raise ValueError(
                        f"{self._optimizer.name} treats all parameters as one tree (its energy "
                        f"is global): every param group needs the same {k} (got {v!r} and "
                        f"{group[k]!r}); set per-layer weight decay with physopt_ref.masked "
                        "transforms"
                    )
        built = self._built.get(index)
        if built is not None and all(_same(a, b) for a, b in zip(built[0], values, strict=True)):
            return built[1]
        base = self._optimizer.hyperparameters
        changed = {k: v for k, v in zip(names, values, strict=True) if not _same(base[k], v)}
        functional = with_hyperparameters(self._optimizer, **changed) if changed else (
            self._optimizer
        )
        self._built[index] = (values, functional)
        return functional

    @staticmethod
    def _params(groups: list[dict[str, Any]]) -> list[torch.Tensor]:
        return [p for g in groups for p in g["params"]]

    def _layout(self, index: int, opt: Optimizer, params: list[torch.Tensor]
                ) -> tuple[tuple[str, bool], ...]:
        """The state's fields of a tree, each marked per parameter or for the whole tree."""
        layout = self._layouts.get(index)
        if layout is None:
            template = opt.init(params)
            layout = tuple((name, isinstance(value, tuple))
                           for name, value in zip(template._fields, template, strict=True))
            self._layouts[index] = layout
        return layout

    def _read_state(self, opt: Optimizer, layout: tuple[tuple[str, bool], ...],
                    params: list[torch.Tensor], leaves: list[torch.Tensor]) -> Any:
        first = self.state[params[0]]
        if layout[0][0] not in first:
            return opt.init(leaves)
        try:
            values = [tuple(self.state[p][name] for p in params) if per_param else first[name]
                      for name, per_param in layout]
        except KeyError as exc:
            raise RuntimeError(
                f"the state of {self._optimizer.name} lacks the field {exc} (a param group added "
                "after the first step to a one-tree optimizer, or a state of another optimizer)"
            ) from exc
        return opt.state_type(*values)

    def _write_state(self, layout: tuple[tuple[str, bool], ...], params: list[torch.Tensor],
                     leaves: list[torch.Tensor], state: Any) -> None:
        ids = {id(leaf) for leaf in leaves}  # a state field that is a parameter gets a copy
        first = self.state[params[0]]
        for (name, per_param), value in zip(layout, state, strict=True):
            if per_param:
                for p, v in zip(params, value, strict=True):
                    self.state[p][name] = v.clone() if id(v) in ids else v
            else:
                first[name] = value

    # -- the step --------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of every tree; ``closure`` re-evaluates the model and returns the loss.

        Required for the optimizers that need the loss (BBI, ECDSep): without it a
        ``RuntimeError`` says so. Returns the closure's loss (None without a closure).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if loss is None and self._optimizer.needs_loss:
            raise RuntimeError(
                f"{self._optimizer.name} needs the loss: call step(closure) with a closure that "
                "zeroes the gradients, evaluates the model, calls backward() and returns the loss"
            )
        value = loss.detach() if isinstance(loss, torch.Tensor) else loss
        for index, groups in enumerate(self._trees()):
            params = self._params(groups)
            if not params:
                continue
            opt = self._functional(index, groups)
            # The step sees detached views: nothing it makes can carry autograd history.
            leaves = [p.detach() for p in params]
            layout = self._layout(index, opt, leaves)
            grads = []
            for p in params:
                if p.grad is not None and p.grad.is_sparse:
                    raise RuntimeError("physopt_ref optimizers do not take sparse gradients")
                grads.append(p.grad.detach() if p.grad is not None else torch.zeros_like(p))
            state = self._read_state(opt, layout, params, leaves)
            new_leaves, state = opt.step(leaves, grads, state, loss=value)
            for p, leaf, q in zip(params, leaves, new_leaves, strict=True):
                if q is not leaf:
                    p.copy_(q)
            self._write_state(layout, params, leaves, state)
        return loss

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, with the optimizer's name and state fields under
        ``"physopt_ref"`` (checked when loading).

        Group values other than numbers, strings and tensors (schedules, trees of per-leaf
        settings) are stored as plain data (:mod:`physopt_ref.runner.spec`), so that
        ``torch.load(..., weights_only=True)`` reads the file; a function of the user's is
        stored by name and taken from the loading optimizer's group.
        """
        out = super().state_dict()
        for group in out["param_groups"]:
            for key in self._optimizer.hyperparameters:
                value = group[key]
                if not isinstance(value, bool | int | float | str | torch.Tensor | None):
                    group[key] = {_ENCODED: encode_value(value, key)}
        out[_STATE_KEY] = {"optimizer": repr(self._optimizer), "name": self._optimizer.name,
                           "fields": list(self._optimizer.state_type._fields)}
        return out

    def _decoded_groups(self, saved: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for mine, group in zip(self.param_groups, saved, strict=False):
            group = dict(group)
            for key, value in group.items():
                if isinstance(value, dict) and set(value) == {_ENCODED}:
                    try:
                        group[key] = decode_value(value[_ENCODED], key)
                    except SpecError:  # a user's function: the one this optimizer was given
                        group[key] = mine[key]
            out.append(group)
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state dict of the same optimizer, every field with its own dtype."""
        mine = {"name": self._optimizer.name, "fields": list(self._optimizer.state_type._fields)}
        theirs = state_dict.get(_STATE_KEY)
        if theirs is None or any(theirs.get(k) != v for k, v in mine.items()):
            made_by = theirs["optimizer"] if theirs else "another optimizer (not physopt_ref)"
            raise ValueError(
                f"this state dict was made by {made_by}, not by {self._optimizer!r}"
            )
        plain = {k: v for k, v in state_dict.items() if k != _STATE_KEY}
        plain["param_groups"] = self._decoded_groups(state_dict["param_groups"])
        super().load_state_dict(plain)
        # torch casts every tensor of a floating parameter's state to the parameter's dtype;
        # put the integer and boolean fields (counts, flags) back as they were saved.
        saved = [i for g in state_dict["param_groups"] for i in g["params"]]
        mine_params = [p for g in self.param_groups for p in g["params"]]
        for i, p in zip(saved, mine_params, strict=True):
            for key, value in state_dict["state"].get(i, {}).items():
                if isinstance(value, torch.Tensor) and not value.is_floating_point():
                    self.state[p][key] = value.to(device=p.device, copy=True)
        self._built.clear()


_CLASS_NAMES = {
    "sgd": "SGD", "heavy_ball": "HeavyBall", "nesterov": "Nesterov", "adam": "Adam",
    "dyna": "Dyna", "dyna_prototype": "DynaPrototype", "dynamic_relaxation": "DynamicRelaxation",
    "coolmomentum": "CoolMomentum", "bbi": "BBI", "ecdsep": "ECDSep", "gravity": "Gravity",
}
_CLASSES: dict[str, type[PhysicsOptimizer]] = {}


def optimizer_class(name: str) -> type[PhysicsOptimizer]:
    """The ``torch.optim.Optimizer`` class of a registered optimizer:
    ``optimizer_class("bbi")(model.parameters(), lr=0.05)``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; registered: {sorted(REGISTRY)}")
    cls = _CLASSES.get(name)
    if cls is None:
        factory = REGISTRY[name].factory

        def init(self: PhysicsOptimizer, params: Iterable[Any], *,
                 one_tree: bool | None = None, **hyperparameters: Any) -> None:
            PhysicsOptimizer.__init__(self, params, name, one_tree=one_tree, **hyperparameters)

        class_name = _CLASS_NAMES.get(name) or "".join(w.title() for w in name.split("_"))
        init.__doc__ = f"``{class_name}(params, **hyperparameters)``: see below."
        cls = type(class_name, (PhysicsOptimizer,), {
            "__init__": init,
            "__module__": __name__,
            "__doc__": f"physopt_ref.{name} as a torch.optim.Optimizer (see "
                       f"physopt_ref.torch).\n\n{factory.__doc__ or ''}",
        })
        _CLASSES[name] = cls
    return cls


SGD = optimizer_class("sgd")
HeavyBall = optimizer_class("heavy_ball")
Nesterov = optimizer_class("nesterov")
Adam = optimizer_class("adam")
Dyna = optimizer_class("dyna")
DynaPrototype = optimizer_class("dyna_prototype")
DynamicRelaxation = optimizer_class("dynamic_relaxation")
CoolMomentum = optimizer_class("coolmomentum")
BBI = optimizer_class("bbi")
ECDSep = optimizer_class("ecdsep")
Gravity = optimizer_class("gravity")
