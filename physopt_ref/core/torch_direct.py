"""A ``torch.compile``\\ d donated step called without Dynamo around it, for callers that pass
arguments of one fixed layout (the torch adapter, :mod:`physopt_ref.adapters.torch`).

Every call of a ``torch.compile``\\ d function goes through Dynamo: its frame hook, the guards
on every input (dtype, shape, strides, the tree's structure, the optimizer's attributes) and
the reconstruction of the result. On the 2.4 M-parameter MLP of
``benchmarks/bench_adapters.py`` (one thread, CPU clock) that cost about 0.3-0.4 ms of a
1.5 ms heavy-ball step and of a 2.3 ms Adam step (``--parts``: the same compiled graph called
through Dynamo and directly).

:class:`DirectStep` compiles the step with inductor through Dynamo once, as
``torch.compile(fullgraph=True, dynamic=False)`` does, and keeps what Dynamo handed to inductor:
where each input of the graph comes from (``params[i]``, ``state.mu[i]``, a hyperparameter
tensor of the optimizer) and which graph output is which field of the returned state (matched
by identity on that first call). Later calls fetch the inputs from the arguments and call
inductor's compiled function directly.

What Dynamo's guards checked and the direct call does not:

* **sizes and strides**: inductor's compiled code checks them itself
  (``assert_size_stride``) before any kernel runs; on a mismatch (a gradient of other strides)
  the call goes through Dynamo, which compiles for the new layout, and the direct path is
  given up for this step;
* **dtypes and devices**: checked here against the first call's (a mismatch goes through
  Dynamo the same way);
* **the structure of the arguments** (the number of leaves, the state's fields, ``loss``
  None or a tensor): the caller's promise (``fixed_layout=True`` of
  :class:`~physopt_ref.core.compile.CompiledStep`); a ``loss`` that is a Python number is
  never called directly (Dynamo bakes it into the graph);
* **global torch state** (grad mode, default dtype): the step runs under ``no_grad`` as
  compiled, and the library's steps take every dtype from their arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from physopt_ref.core.tree import tree_flatten, tree_unflatten

__all__ = ["DirectStep", "detached"]

_ARGS = ("params", "grads", "state", "loss")


class DirectStep:
    """``fn(params, grads, state, loss)`` compiled by Dynamo and inductor, then called directly.

    Parameters
    ----------
    fn : callable
        The donated step (a function of its own code object, see ``_own_code``).
    options : dict
        inductor's options (``torch.compile(options=...)``).
    """

    __slots__ = ("_compiled", "_entry", "_options", "_plan", "direct")

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        import torch

        self._options = dict(options)
        #: What the first graph's compilation recorded, until the plan is made from it.
        self._entry: dict[str, Any] | None = None
        self._compiled = torch.compile(fn, backend=self._backend, fullgraph=True, dynamic=False)
        self._plan: _Plan | None = None
        #: False once the direct path is given up (a layout the first graph does not fit).
        self.direct = True

    def _backend(self, gm: Any, example_inputs: list[Any]) -> Callable[..., Any]:
        """inductor (``compile_fx``, as ``torch.compile``'s own backend calls it); for the first
        graph, recording its inputs and the outputs of its first run."""
        from torch._inductor.compile_fx import compile_fx

        compiled: Any = compile_fx(gm, example_inputs, config_patches=dict(self._options))
        if not self.direct or self._plan is not None or self._entry is not None:
            return compiled
        entry: dict[str, Any] = {
            "sources": [getattr(node.meta.get("grapharg"), "source", None)
                        for node in gm.graph.nodes if node.op == "placeholder"],
            "inputs": list(example_inputs),
            "fn": compiled,
            "out": None,
            "record": True,
        }
        self._entry = entry

        def run(*args: Any) -> Any:
            out = compiled(*args)
            if entry["record"]:
                entry["out"], entry["record"] = out, False
            return out

        return run

    def __call__(self, params: Any, grads: Any, state: Any, loss: Any) -> tuple[Any, Any]:
        plan = self._plan
        if plan is not None:
            args = plan.inputs(params, grads, state, loss)
            if args is not None:
                try:
                    out = plan.fn(*args)
                except AssertionError:  # inductor's size/stride checks, before any kernel
                    self._give_up()
                else:
                    return params, plan.result(state, out)
            else:
                self._give_up()
        params = detached(params)
        result = self._compiled(params, grads, state, loss)
        entry = self._entry
        if entry is not None and self._plan is None and self.direct:
            self._entry = None
            self._plan = _Plan.build(entry, (params, grads, state, loss), result)
            entry["inputs"] = entry["out"] = None  # the first call's tensors are not kept
            if self._plan is None:
                self._give_up()
        return result

    def _give_up(self) -> None:
        self.direct = False
        self._plan = None
        self._entry = None


class _Plan:
    """Where the graph's inputs come from, and where its outputs go in the returned state."""

    __slots__ = ("checks", "fields", "fn", "getters", "kinds", "state_type")

    def __init__(self) -> None:
        import torch

        self.fn: Callable[..., Any] = lambda *a: None
        self.getters: list[Callable[[tuple[Any, ...]], Any]] = []
        #: (position among the inputs, dtype, device or None) of the inputs that come from the
        #: arguments (a device is checked for the parameters only: torch keeps a ``.grad`` on
        #: its parameter's device, and the state is made there).
        self.checks: list[tuple[int, Any, Any]] = []
        #: Per field of the state: ``(True, i)`` graph output i, ``(False, None)`` the input's.
        self.fields: list[tuple[bool, int | None]] = []
        self.state_type: Any = None
        self.kinds = (torch.Tensor, torch.nn.Parameter)

    @classmethod
    def build(cls, entry: dict[str, Any], args: tuple[Any, ...], result: Any) -> _Plan | None:
        """The plan for the graph of ``entry``, or None where the direct call cannot be made
        safely (an input whose origin is not understood, an output not found)."""
        import torch

        plan = cls()
        plan.fn = entry["fn"]
        inputs = entry["inputs"]
        state = args[2]
        if len(inputs) != len(entry["sources"]) or not _is_namedtuple(state):
            return None
        if args[3] is not None and not isinstance(args[3], torch.Tensor):
            return None  # a Python-number loss is baked into the graph
        for position, (source, example) in enumerate(zip(entry["sources"], inputs,
                                                         strict=True)):
            if not isinstance(example, torch.Tensor):
                return None
            found = _getter(source, example)
            if found is None:
                return None
            getter, root = found
            plan.getters.append(getter)
            if root is not None:
                plan.checks.append((position, example.dtype, example.device if root == 0
                                    else None))
        new_params, new_state = result
        out = entry["out"]
        outputs = list(out) if isinstance(out, list | tuple) else []
        if any(a is not b for a, b in zip(tree_flatten(new_params)[0], tree_flatten(args[0])[0],
                                          strict=True)):
            return None  # a parameter not donated
        if type(new_state) is not type(state):
            return None
        plan.state_type = type(state)
        for old, new in zip(state, new_state, strict=True):
            if new is old or (isinstance(old, tuple) and len(old) == len(new)
                              and all(a is b for a, b in zip(old, new, strict=True))):
                plan.fields.append((False, None))
                continue
            found_at = [j for j, o in enumerate(outputs) if o is new]
            if len(found_at) != 1:
                return None  # a field rebuilt around new arrays, or not a graph output
            plan.fields.append((True, found_at[0]))
        return plan

    def inputs(self, params: Any, grads: Any, state: Any, loss: Any) -> list[Any] | None:
        """The graph's inputs from the arguments, or None where a dtype or device differs."""
        args = (params, grads, state, loss)
        values = [get(args) for get in self.getters]
        kinds = self.kinds
        for position, dtype, device in self.checks:
            value = values[position]
            if (type(value) not in kinds or value.dtype is not dtype
                    or (device is not None and value.device != device)):
                return None
        return values

    def result(self, state: Any, out: Any) -> Any:
        return self.state_type(*[out[i] if from_graph else old
                                 for old, (from_graph, i) in zip(state, self.fields,
                                                                 strict=True)])


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_fields")


def detached(params: Any) -> Any:
    """``params`` with the leaves that require grad detached (what Dynamo traces); ``params``
    itself where none does."""
    if isinstance(params, list) and not any(getattr(p, "requires_grad", False) for p in params):
        return params
    leaves, treedef = tree_flatten(params)
    if not any(getattr(p, "requires_grad", False) for p in leaves):
        return params
    return tree_unflatten(treedef, [p.detach() if getattr(p, "requires_grad", False) else p
                                    for p in leaves])


Getter = Callable[[tuple[Any, ...]], Any]


def _getter(source: Any, example: Any) -> tuple[Getter, int | None] | None:
    """A function of the call's arguments giving the graph input named by ``source``, and the
    argument it comes from (0 params, 1 grads, 2 state, 3 loss; None for an input that does not
    come from them: a hyperparameter tensor held by the optimizer, the same object at every
    call). None for a source of a kind not understood here."""
    from torch._dynamo.source import AttrSource, GetItemSource, LocalSource

    path: list[tuple[bool, Any]] = []
    node = source
    while node is not None and not isinstance(node, LocalSource):
        if isinstance(node, GetItemSource) and not node.index_is_slice:
            path.append((True, node.index))
        elif isinstance(node, AttrSource):
            path.append((False, node.member))
        else:  # not rooted at an argument: the optimizer's own tensor
            return (lambda args: example), None
        node = node.base
    if node is None:
        return None
    if node.local_name not in _ARGS:
        return (lambda args: example), None
    index = _ARGS.index(node.local_name)
    steps = path[::-1]
    if len(steps) == 1 and steps[0][0]:  # params[i], grads[i]
        key = steps[0][1]
        return (lambda args: args[index][key]), index
    if len(steps) == 2 and not steps[0][0] and steps[1][0]:  # state.field[i]
        member, key = steps[0][1], steps[1][1]
        return (lambda args: getattr(args[index], member)[key]), index

    def get(args: tuple[Any, ...]) -> Any:
        value = args[index]
        for item, key in steps:
            value = value[key] if item else getattr(value, key)
        return value

    return get, index
