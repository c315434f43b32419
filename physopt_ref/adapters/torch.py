"""Every registered optimizer as a ``torch.optim.Optimizer`` (``pip install 'physopt_ref[torch]'``).

>>> from physopt_ref.torch import BBI                                      # doctest: +SKIP
>>> opt = BBI(model.parameters(), lr=0.05, delta_e=0.5)                   # doctest: +SKIP
>>> def closure():                                                        # doctest: +SKIP
...     opt.zero_grad()
...     loss = loss_fn(model(x), y)
...     loss.backward()
...     return loss
>>> opt.step(closure)                                                     # doctest: +SKIP

One class per registered optimizer, each with the factory's hyperparameters as typed keyword
arguments (:mod:`physopt_ref.adapters.torch_classes`: ``SGD``, ``HeavyBall``, ``Nesterov``,
``Adam``, ``Dyna``, ``DynaPrototype``, ``DynamicRelaxation``, ``CoolMomentum``, ``BBI``,
``ECDSep``, ``Gravity``; :func:`~physopt_ref.adapters.torch_classes.optimizer_class` for any
registered name), or :class:`PhysicsOptimizer` built from a name or from an
:class:`~physopt_ref.Optimizer` (a :func:`~physopt_ref.chain` too). It follows torch.optim's
conventions (``docs/frameworks.md``):

* **Parameters without a gradient** (``p.grad is None``) are skipped: not moved, their state
  untouched. For the energy-conserving family (``bbi``, ``ecdsep``) the energy, :math:`|p|^2`,
  bounces and rescale of that step are taken over the parameters that have a gradient; a
  frozen parameter keeps its momentum and rejoins the dynamics when it gets a gradient again.
* **Param groups.** Each group is one parameter tree with its own hyperparameters and state,
  except for the energy-conserving family, whose energy is global: all its parameters are one
  tree and every group must carry the same hyperparameters (compared by value). ``one_tree=``
  overrides the choice.
* **Schedulers.** The step size is ``group["lr"]`` (Dyna's :math:`\\gamma`, dynamic
  relaxation's :math:`h`); Adam and Dyna's prototype show ``betas = (b1, b2)``; heavy ball and
  Nesterov show ``momentum``: torch's schedulers (``CosineAnnealingLR`` down to 0, ``LambdaLR``
  warm-ups from 0, ``OneCycleLR``/``CyclicLR`` cycling momentum) drive them. ``lr = 0`` is a
  legal no-op. These values live in 0-d tensors of the compute dtype (the parameters', float32
  for float16/bfloat16 ones: bfloat16 rounds β₂ = 0.999 to 1) inside the adapter, so
  a changed value is written into a tensor (checked on the host) and a compiled step does not
  recompile. Other group values, when changed, rebuild the step. The adapter's own compiled
  step (below) takes a value that has not changed since it was built as a constant of its
  kernels (rounded to the tensor's dtype, as the eager step reads it) and, once the value
  changes (or is a tensor), reads it from its tensor: one more compile the first time a
  scheduler changes it, none after.
* **The step** is the library's functional step with those hyperparameters. Trees of 65 536
  elements or more (``compiled=None``, the default) run :func:`physopt_ref.compile`'s step
  (``torch.compile`` of the donated step, written into the parameters: no copies; called past
  Dynamo after its first call, :mod:`physopt_ref.core.torch_direct`; one compiled step per
  subset of parameters that have a gradient, up to 8), smaller ones the eager donated step;
  ``compiled=True``/``False`` forces the choice. Under
  ``torch.compile(opt.step)`` the pure functional step is traced (exact: the same values as
  eager up to rounding) and the book-keeping runs outside the graph.
* **The loss.** ``step(closure)`` evaluates the closure with gradients on and passes its loss
  (a number, or a tensor of one element) to the step; an optimizer that needs the loss refuses
  ``step()`` without one.
* **No host synchronisation** on the step's data; it runs under ``torch.no_grad``; the
  parameters stay leaves without history.
* **State.** ``opt.state[p]`` holds the per-parameter fields (momenta, ...) of ``p``; the fields
  of the whole tree (count, energies, floors, counters, bounce state) are in the state of the
  tree's first parameter. ``state_dict()`` / ``load_state_dict()`` round-trip them exactly,
  integer and boolean fields included, and a float32 state on half-precision parameters stays
  float32 (torch's loader would cast it to the parameters' dtype); loading checks every
  field's shape and dtype against the parameters and names the parameter it refuses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from physopt_ref.adapters.torch_state import Checkpoints, state_fields
from physopt_ref.adapters.torch_values import (
    ALIASES,
    SCHEDULED,
    STEP_SIZES,
    baked,
    check_one_value,
    for_active,
    holds_tensor,
    host_values,
    loss_value,
    real,
    rebuilt,
    same,
    silence_dynamo_lru_warnings,
)
from physopt_ref.core.compile import CompiledStep
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.registry import REGISTRY, get_optimizer
from physopt_ref.runner.spec import with_hyperparameters
from physopt_ref.transforms.chain import optimizer_parts

__all__ = ["ALIASES", "COMPILE_ELEMENTS", "PhysicsOptimizer"]

silence_dynamo_lru_warnings()

#: Trees with at least this many elements run the compiled step by default (``compiled=None``):
#: below it the one-off compile time outweighs the gain.
COMPILE_ELEMENTS = 1 << 16
#: At most this many compiled steps a tree for subsets of its parameters (those with a
#: gradient, when some have none); further subsets run the eager step.
_SUBSETS = 8


class _Tree:
    """One tree's step: its functional optimizer, hyperparameter tensors and compiled step."""

    __slots__ = ("active", "compiled", "floats", "functional", "init_opt", "key", "layout",
                 "runs", "seen", "tensors", "varying")

    def __init__(self) -> None:
        self.functional: Optimizer | None = None
        self.init_opt: Optimizer | None = None
        self.key: tuple[Any, ...] | None = None
        self.tensors: dict[str, torch.Tensor] = {}
        self.floats: dict[str, float] = {}
        #: Scheduled values the compiled step reads from their tensors (tensor values, and
        #: values that changed); the others are constants in its kernels.
        self.varying: set[str] = set()
        self.compiled: CompiledStep | None = None
        #: The compiled steps' functions, by the positions of the parameters that step (None:
        #: all of them, ``compiled``'s).
        self.runs: dict[tuple[int, ...] | None, Any] = {}
        #: The group values of the last step (compared by identity: unchanged, nothing to do).
        self.seen: list[Any] | None = None
        self.layout: tuple[tuple[str, bool], ...] = ()
        #: The step for a subset of the parameters (some without a gradient), by positions.
        self.active: dict[tuple[int, ...], Optimizer] = {}


class PhysicsOptimizer(Checkpoints):
    """A physopt_ref optimizer as a ``torch.optim.Optimizer`` (see the module notes).

    Parameters
    ----------
    params : iterable of tensors or of dicts
        The parameters, or param groups (dicts with ``"params"`` and hyperparameter overrides,
        by the factory's or torch's names: ``b1`` or ``betas``).
    optimizer : str or physopt_ref.Optimizer
        A registered name (then ``hyperparameters`` build it) or a built optimizer (a chain
        too; its hyperparameters are the groups' defaults).
    one_tree : bool, optional
        All parameters as one tree (default for the energy-conserving family) or one tree per
        group (default otherwise).
    compiled : bool, optional
        Run :func:`physopt_ref.compile`'s step (``True``), the eager donated step (``False``),
        or choose by size (``None``: compiled from :data:`COMPILE_ELEMENTS` elements a tree).
    **hyperparameters
        The optimizer's hyperparameters (with a name), by the factory's or torch's names.
    """

    def __init__(
        self,
        params: Iterable[Any],
        optimizer: str | Optimizer,
        *,
        one_tree: bool | None = None,
        compiled: bool | None = None,
        **hyperparameters: Any,
    ) -> None:
        for key, value in hyperparameters.items():
            check_one_value(key, value)
        if isinstance(optimizer, str):
            if optimizer not in REGISTRY:
                raise ValueError(
                    f"unknown optimizer {optimizer!r}; registered: {sorted(REGISTRY)}"
                )
            hyperparameters = self._factory_names(optimizer, hyperparameters)
            optimizer = get_optimizer(optimizer, **host_values(hyperparameters))
            if any(isinstance(v, torch.Tensor) for v in hyperparameters.values()):
                optimizer = rebuilt(optimizer, hyperparameters)
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
        for flag, given in (("compiled", compiled), ("one_tree", one_tree)):
            if given is not None and not isinstance(given, bool):
                raise TypeError(f"{flag} must be True, False or None, got {given!r}")
        core, _ = optimizer_parts(optimizer)
        if one_tree is None:
            entry = REGISTRY.get(core.name)
            one_tree = entry is not None and entry.family == "ecd"
        self._optimizer = optimizer
        self._core_name = core.name
        self._aliases = ALIASES.get(core.name, {})
        self._one_tree = bool(one_tree)
        self._compiled = compiled
        self._trees_state: dict[int, _Tree] = {}
        defaults = self._group_defaults(optimizer.hyperparameters)
        self._keys = tuple(defaults)
        self._initial: list[Optimizer] = []  # each group's optimizer as it was added
        super().__init__(params, defaults)

    # -- names: the factory's and torch's ----------------------------------------------------

    def _factory_names(self, name: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Group or keyword values with torch's names (``betas``) spelled as the factory's."""
        out = dict(values)
        for torch_key, names in ALIASES.get(name, {}).items():
            if torch_key in out and torch_key not in names:
                value = out.pop(torch_key)
                given = [n for n in names if n in out]
                if given:
                    raise TypeError(f"give either {torch_key} or {', '.join(given)}, not both")
                parts = value if len(names) > 1 else (value,)
                if not isinstance(parts, tuple | list) or len(parts) != len(names):
                    raise ValueError(
                        f"{torch_key} must be a tuple of {len(names)} values "
                        f"({', '.join(names)}), got {value!r}"
                    )
                out.update(zip(names, parts, strict=True))
        return out

    def _group_defaults(self, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        """The factory's hyperparameters with torch's names (``betas = (b1, b2)``)."""
        out = dict(hyperparameters)
        for torch_key, names in self._aliases.items():
            values = tuple(out.pop(n) for n in names)
            out[torch_key] = values if len(names) > 1 else values[0]
        return out

    def _values(self, group: Mapping[str, Any]) -> dict[str, Any]:
        """A group's hyperparameters by the factory's names."""
        out = {}
        for key in self._keys:
            names = self._aliases.get(key)
            if names is None:
                out[key] = group[key]
            elif len(names) == 1:
                out[names[0]] = group[key]
            else:
                out.update(zip(names, tuple(group[key]), strict=True))
        return out

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``, with the group's values checked now: a tensor value
        must have one element, and every value passes the factory's checks."""
        group = dict(param_group)
        for torch_key, names in self._aliases.items():
            given = self._factory_names(self._core_name, {k: group.pop(k) for k in
                                                           (torch_key, *names) if k in group})
            if given:
                default = self.defaults[torch_key]
                base = dict(zip(names, default if len(names) > 1 else (default,), strict=True))
                parts = tuple({**base, **given}[n] for n in names)
                group[torch_key] = parts if len(names) > 1 else parts[0]
        for key, value in group.items():
            if key != "params":
                check_one_value(key, value)
        super().add_param_group(group)
        values = host_values(self._values(self.param_groups[-1]))
        changed = {k: v for k, v in values.items()
                   if not same(v, self._optimizer.hyperparameters[k])}
        # Checked now; the tree's state starts from these values (Gravity's V0 from its lr).
        self._initial.append(with_hyperparameters(self._optimizer, **changed) if changed
                             else self._optimizer)
        if self._one_tree and len(self.param_groups) > 1:
            self._check_same_values(self.param_groups)

    def _check_same_values(self, groups: list[dict[str, Any]]) -> None:
        first = groups[0]
        for group in groups[1:]:
            for key in self._keys:
                if not same(first[key], group[key]):
                    raise ValueError(
                        f"{self._optimizer.name} treats all parameters as one tree (its energy "
                        f"is global): every param group needs the same {key} (got "
                        f"{first[key]!r} and {group[key]!r}); set per-layer weight decay with "
                        "physopt_ref.masked transforms"
                    )

    # -- trees and their steps ---------------------------------------------------------------

    def _trees(self) -> list[list[dict[str, Any]]]:
        """The param groups of each tree (one tree of all groups, or one per group)."""
        groups = self.param_groups
        return [groups] if self._one_tree else [[g] for g in groups]

    def _tree(self, index: int, groups: list[dict[str, Any]], like: torch.Tensor) -> _Tree:
        """The tree's step for its groups' current values (hyperparameter tensors refreshed)."""
        tree = self._trees_state.get(index)
        if tree is None:
            tree = self._trees_state[index] = _Tree()
        keys = self._keys
        seen = [g[k] for g in groups for k in keys]
        last = tree.seen
        if (last is not None and tree.key is not None and len(last) == len(seen)
                and all(a is b for a, b in zip(seen, last, strict=True))
                and not any(holds_tensor(v) for v in seen)):
            return tree  # the same objects as at the last step (tensors are read every step)
        tree.seen = None
        if self._one_tree and len(groups) > 1:
            self._check_same_values(groups)
        values = self._values(groups[0])
        slots = {k for k in SCHEDULED if k in values
                 and (real(values[k]) or isinstance(values[k], torch.Tensor))}
        key = tuple((k, "slot") if k in slots else (k, v) for k, v in values.items())
        if tree.key is None or len(key) != len(tree.key) or not all(
            a[0] == b[0] and same(a[1], b[1]) for a, b in zip(key, tree.key, strict=True)
        ):
            if tree.init_opt is None:  # the state starts with the values given at construction
                tree.init_opt = self._initial[index]
            checked = tree.init_opt.hyperparameters
            for k in slots:  # the factory checks the tensors with values it accepts
                if k not in tree.tensors:
                    tree.tensors[k] = torch.zeros((), dtype=_slot_dtype(like.dtype),
                                                  device=like.device)
                tree.tensors[k].fill_(float(checked[k]) if real(checked[k]) else 0.0)
                tree.floats.pop(k, None)
            built = {**values, **{k: tree.tensors[k] for k in slots}}
            tree.functional = rebuilt(self._optimizer, built)
            for k in slots:
                self._refresh(tree, k, values[k])
            tree.key = key
            tree.compiled = None
            tree.active = {}
        else:
            for k in slots:
                self._refresh(tree, k, values[k])
        tree.seen = seen
        return tree

    def _refresh(self, tree: _Tree, name: str, value: Any) -> None:
        """Write a scheduled hyperparameter's value into its tensor (checked when it changes)."""
        slot = tree.tensors[name]
        if isinstance(value, torch.Tensor):
            slot.copy_(value.reshape(()))
            tree.floats.pop(name, None)
            self._vary(tree, name)
            return
        if tree.floats.get(name) == value:
            return
        value = float(value)
        if name in STEP_SIZES:
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        else:
            with_hyperparameters(self._optimizer, **{name: value})  # the factory's checks
        slot.fill_(value)
        if name in tree.floats:  # changed since the compiled step was built
            self._vary(tree, name)
        tree.floats[name] = value

    @staticmethod
    def _vary(tree: _Tree, name: str) -> None:
        """From now on the compiled step reads ``name`` from its tensor (one more compile)."""
        if name not in tree.varying:
            tree.varying.add(name)
            tree.compiled = None

    def _use_compiled(self, params: list[torch.Tensor]) -> bool:
        if self._compiled is not None:
            return self._compiled
        return sum(p.numel() for p in params) >= COMPILE_ELEMENTS

    def _prepare(self, loss: Any, traced: bool = False) -> list[tuple[Any, ...]]:
        """Everything before the arithmetic, outside any graph: trees, values, state.

        Per tree ``(run, functional, params, active, leaves, grads, layout, state, loss)``:
        ``run`` the compiled step for the active parameters (None: the eager step of
        ``functional``); ``leaves`` are the active parameters themselves where ``run`` steps
        (it writes into them under ``no_grad``), detached otherwise. ``traced``: for
        ``torch.compile(opt.step)``, which traces the pure step (no compiled step of ours).
        """
        value = loss_value(loss, self._optimizer)
        work = []
        for index, groups in enumerate(self._trees()):
            params = [p for g in groups for p in g["params"]]
            if not params:
                continue
            tree = self._tree(index, groups, params[0])
            active, grads, positions = [], [], []
            for i, p in enumerate(params):
                grad = p.grad
                if grad is None:
                    continue
                if grad.is_sparse:
                    raise RuntimeError("physopt_ref optimizers do not take sparse gradients")
                active.append(p)
                grads.append(grad.detach() if grad.requires_grad else grad)
                positions.append(i)
            if not active:
                continue
            layout, state = self._read_state(tree, params, active)
            tree_loss = value
            if tree_loss is not None and not isinstance(tree_loss, torch.Tensor):
                tree_loss = torch.tensor(tree_loss, dtype=params[0].dtype,
                                         device=params[0].device)
            full = tree.functional
            assert full is not None
            functional = full
            key = tuple(positions) if len(active) < len(params) else None
            if key is not None:  # per-parameter values cut to the active ones
                if key not in tree.active:
                    tree.active[key] = for_active(full, key, len(params))
                functional = tree.active[key]
            if tree.compiled is None and not traced and self._use_compiled(params):
                tree.compiled = CompiledStep(baked(full, tree.floats, tree.tensors,
                                                   tree.varying), fixed_layout=True)
                tree.runs = {}
            run = None
            if tree.compiled is not None and not traced:
                run = tree.runs.get(key)
                if run is None and (key is None or len(tree.runs) <= _SUBSETS):
                    step = tree.compiled if key is None else CompiledStep(
                        for_active(tree.compiled.optimizer, key, len(params)), fixed_layout=True)
                    run = tree.runs[key] = step.for_array(params[0])
            # the compiled step writes into the parameters themselves (under no_grad)
            leaves = active if run is not None else [p.detach() for p in active]
            work.append((run, functional, params, active, leaves, grads, layout, state,
                         tree_loss))
        return work

    def _read_state(self, tree: _Tree, params: list[torch.Tensor], active: list[torch.Tensor]
                    ) -> tuple[tuple[tuple[str, bool], ...], Any]:
        """The state of the active parameters (the whole tree's state made on first use)."""
        first = self.state[params[0]]
        opt = tree.init_opt
        assert opt is not None
        fields = state_fields(opt)
        if not tree.layout:
            template = opt.init([torch.empty_like(p, device="meta") for p in params])
            tree.layout = tuple((n, isinstance(v, tuple))
                                for n, v in zip(fields, template, strict=True))
        if fields[0] not in first:
            leaves = [p.detach() for p in params]
            ids = {id(leaf) for leaf in leaves}  # a state field that is a parameter: a copy
            made = opt.init(leaves)
            made = opt.state_type(*[
                tuple(v.clone() if id(v) in ids else v for v in value)
                if isinstance(value, tuple) else value for value in made])
            self._store(params, params, tree.layout, made, None)
        try:
            values = [tuple(self.state[p][n] for p in active) if per_param else first[n]
                      for n, per_param in tree.layout]
        except KeyError as exc:
            raise RuntimeError(
                f"the state of {self._optimizer.name} lacks the field {exc} (a param group added "
                "after the first step to a one-tree optimizer, or a state of another optimizer)"
            ) from exc
        return tree.layout, opt.state_type(*values)

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
        if torch.compiler.is_compiling():  # torch.compile(opt.step): the pure step, traced
            for _, functional, params, active, leaves, grads, layout, state, value in (
                    self._prepare_outside(loss, True)):
                new, state = functional.step(leaves, grads, state, loss=value)
                torch._foreach_copy_(leaves, new)
                self._store_outside(params, active, layout, state, None)
            return loss
        # Eager: the book-keeping called as it is (a torch.compiler.disable wrapper costs
        # microseconds a call).
        for run, functional, params, active, leaves, grads, layout, state, value in (
                self._prepare(loss)):
            if run is not None:
                _, new = run(leaves, grads, state, value)
            else:
                _, new = functional.step(leaves, grads, state, loss=value, donate=True)
            self._store(params, active, layout, new, state)
        return loss

    def _store(self, params: list[torch.Tensor], active: list[torch.Tensor],
               layout: tuple[tuple[str, bool], ...], state: Any, old: Any) -> None:
        """The new state into ``self.state``: per-parameter fields under their parameters, the
        tree's fields under its first parameter. A per-parameter field that is ``old``'s own
        tuple (the compiled step wrote into its tensors) is already there."""
        first = self.state[params[0]]
        for i, ((name, per_param), value) in enumerate(zip(layout, state, strict=True)):
            if not per_param:
                first[name] = value
            elif old is None or value is not old[i]:
                for p, v in zip(active, value, strict=True):
                    self.state[p][name] = v

    _prepare_outside = torch.compiler.disable(_prepare)
    _store_outside = torch.compiler.disable(_store)


def _slot_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the hyperparameter tensors: the compute dtype ``result_type(param dtype,
    float32)`` (``docs/precision.md``), so that β₂ = 0.999 is not 1 on bfloat16 parameters."""
    return torch.promote_types(dtype, torch.float32)
