r"""Donated steps: a step that writes its results into the memory of its inputs.

``params, state = opt.step(params, grads, state, loss=..., donate=True)`` returns the values of
the pure step, bit for bit, in the arrays passed in: every parameter leaf and every state array
shaped like its parameter leaf (momenta, moment estimates: where the memory is) is overwritten
and comes back as the same object. The per-run fields of the state (arrays of the ensemble's
batch shape: the count, energies, Dyna's :math:`\mu`) come back as new small arrays. The caller
promises not to use the ``params`` and ``state`` it passed in again; ``grads`` and ``loss`` are
only read (a gradient may even be the parameter array itself).

Why: a pure step allocates a fresh output for every array it returns, and at large sizes on a
CPU most of its time goes to page faults on that fresh memory, not to arithmetic
(``benchmarks/bench_floor.py``). The rules stay written once; donation is a way of *running*
them:

* **Element-wise rules** (``Optimizer(elementwise=True)``: no reduction over the parameters;
  SGD, heavy ball, Nesterov, Adam, CoolMomentum, Dyna, Dyna's prototype, dynamic relaxation)
  on host memory (NumPy, array-api-strict, eager PyTorch on the CPU): the same rule runs on
  cache-sized chunks of the flattened event axes (views of the buffers), and each chunk's
  results are written back into its slice. Temporaries stay a few hundred kilobytes, every
  element goes through exactly the operations of the pure step (so the bits are equal), and the
  per-run outputs, the same from every chunk, are taken from the first chunk that computes
  them. Leaves smaller than a chunk are evaluated together in one call; a call sees a subset of
  the leaves, which the rule maps to the whole tree through :meth:`StepContext.per_leaf`.
* **Other rules** (Gravity's :math:`\max|G|` per leaf, the tree norms of BBI and ECDSep, whose
  summation order a chunking would change), device backends (CuPy, PyTorch on an accelerator,
  where memory pools make fresh allocations cheap and every chunk would cost kernel launches)
  and steps traced by ``torch.compile``: the rule runs on the whole arrays and its results are
  copied into the buffers. Eagerly this saves no time (the copies cost a pass), only memory
  identity (buffers registered elsewhere, e.g. in a ``torch.nn.Module``, stay valid); under
  ``torch.compile`` inductor fuses the copies into the kernels that compute the values, which
  is how a compiled step reaches the memory floor (:func:`physopt_ref.compile`).

Refused, with a clear error: JAX arrays (immutable: use :func:`physopt_ref.compile`, i.e.
``jax.jit`` with ``donate_argnums``), Dask and other namespaces that cannot write in place,
read-only NumPy arrays and NumPy scalars, expanded (stride-0) tensors, and a buffer passed twice
(params and state sharing an array). Overlapping views of one buffer are not detected.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

from array_api_compat import (
    array_namespace,
    is_array_api_strict_namespace,
    is_cupy_namespace,
    is_jax_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)

from physopt_ref.core.control import host_resident
from physopt_ref.core.tree import tree_flatten, tree_unflatten

__all__ = ["CHUNK_ELEMENTS", "check_donatable", "donated_update", "write_into"]

#: Elements per chunk of an element-wise rule (all ensemble members together): 64 Ki elements,
#: 256 KiB in float32, so that the rule's dozen temporaries stay in the L2 cache. Measured by
#: ``benchmarks/bench_floor.py --chunks``.
CHUNK_ELEMENTS = 1 << 16


def donated_update(
    opt: Any, ctx: Any, params: list[Any], grads: list[Any], state: Any, loss: Any
) -> tuple[list[Any], dict[str, Any]]:
    """Run ``opt``'s update rule writing into ``params`` and ``state``; return leaves and fields.

    Called by :meth:`Optimizer.step` with ``donate=True``, after its checks. The returned
    parameter leaves are the donated arrays; the fields hold the donated per-leaf arrays and
    new per-run arrays.
    """
    xp = ctx.xp
    layout = _Layout(state, params)
    traced = _traced(xp, params[0])
    if not traced:
        check_donatable(xp, params, layout.buffers(state))
    with _no_grad(xp):
        plan = None
        if opt.elementwise and not traced and host_resident(xp, params[0]):
            plan = _chunk_plan(params, ctx.batch_ndim)
        if plan is None:
            return _whole(opt, ctx, params, grads, state, loss, layout, traced)
        return _chunked(opt, ctx, params, grads, state, loss, layout, plan)


# ---------------------------------------------------------------------------------------------
# Which arrays are donated


class _Layout:
    """Which state fields are per-leaf tuples, and which of their arrays are shaped like a leaf.

    ``donated[name][i]`` is True when ``state.name[i]`` has the shape of parameter leaf ``i``
    (written in place); other arrays of a tuple field, and every non-tuple field, are per-run
    values that come back as new arrays.
    """

    __slots__ = ("donated", "names")

    def __init__(self, state: Any, params: list[Any]) -> None:
        self.names = state._fields[1:]
        self.donated: dict[str, list[bool]] = {}
        for name in self.names:
            value = getattr(state, name)
            if isinstance(value, tuple):
                self.donated[name] = [
                    tuple(a.shape) == tuple(p.shape) for a, p in zip(value, params, strict=True)
                ]

    def buffers(self, state: Any) -> list[tuple[str, Any]]:
        """``(description, array)`` of every donated state array."""
        out = []
        for name, flags in self.donated.items():
            for i, (a, flag) in enumerate(zip(getattr(state, name), flags, strict=True)):
                if flag:
                    out.append((f"state.{name}[{i}]", a))
        return out


def check_donatable(xp: Any, params: list[Any], state_buffers: list[tuple[str, Any]]) -> None:
    """Refuse donation, with the reason, where the arrays cannot be written in place.

    ``state_buffers`` are ``(description, array)`` pairs; the parameter leaves are described as
    ``params leaf i``.
    """
    named = [(f"params leaf {i}", p) for i, p in enumerate(params)] + list(state_buffers)
    if is_jax_namespace(xp):
        raise TypeError(
            "donate=True cannot write into JAX arrays (they are immutable); compile the step "
            "with physopt_ref.compile(opt), i.e. jax.jit with donate_argnums, which reuses "
            "their buffers"
        )
    if is_numpy_namespace(xp) or is_array_api_strict_namespace(xp):
        import numpy as np

        for what, a in named:
            raw = a._array if is_array_api_strict_namespace(xp) else a  # strict wraps NumPy
            if not isinstance(raw, np.ndarray):
                raise TypeError(
                    f"donate=True writes into the inputs, but {what} is an immutable NumPy "
                    f"scalar ({type(raw).__name__}); pass arrays (np.asarray)"
                )
            if not raw.flags.writeable:
                raise ValueError(
                    f"donate=True writes into the inputs, but {what} is read-only (a NumPy "
                    "array with writeable=False, a broadcast view, ...); pass writeable arrays "
                    "or use the pure step"
                )
    elif is_torch_namespace(xp):
        import torch

        for what, a in named:
            if any(s == 0 and n > 1 for s, n in zip(a.stride(), a.shape, strict=True)):
                raise ValueError(
                    f"donate=True writes into the inputs, but {what} is an expanded tensor "
                    "(stride 0: several elements share memory); pass a contiguous tensor"
                )
            if a.is_inference() and not torch.is_inference_mode_enabled():
                raise ValueError(
                    f"donate=True writes into the inputs, but {what} is an inference tensor, "
                    "which cannot be modified outside torch.inference_mode()"
                )
    elif not is_cupy_namespace(xp):
        raise TypeError(
            f"donate=True needs arrays that can be written in place (NumPy, array-api-strict, "
            f"PyTorch, CuPy); {xp.__name__} arrays cannot: use the pure step"
        )
    seen: dict[int, str] = {}
    for what, a in named:
        other = seen.setdefault(id(a), what)
        if other != what:
            raise ValueError(
                f"donate=True needs distinct buffers, but {other} and {what} are the same array"
            )


def _traced(xp: Any, like: Any) -> bool:
    """Inside ``torch.compile`` (the only tracer that reaches a donated step)."""
    if is_torch_namespace(xp):
        import torch

        return bool(torch.compiler.is_compiling())
    return False


@contextlib.contextmanager
def _no_grad(xp: Any) -> Iterator[None]:
    """PyTorch: write into parameters that require grad, as ``torch.optim`` does."""
    if is_torch_namespace(xp):
        import torch

        with torch.no_grad():
            yield
    else:
        yield


def _write(xp: Any, pairs: list[tuple[Any, Any]], inputs: list[Any] | None) -> None:
    """``dst[...] = src`` for each pair, in order; sources that are another donated input are
    copied first (a rule may return an input unchanged, and that buffer may be written first).

    ``inputs=None`` under ``torch.compile``, whose functionalised graph computes every result
    before it writes any.
    """
    if inputs is not None:
        ids = {id(a) for a in inputs}
        pairs = [
            (dst, xp.asarray(src, copy=True) if id(src) in ids and src is not dst else src)
            for dst, src in pairs
        ]
    torch = is_torch_namespace(xp)
    for dst, src in pairs:
        if src is dst:
            continue
        if torch:
            dst.copy_(src)
        else:
            dst[...] = src


# ---------------------------------------------------------------------------------------------
# Whole arrays


def _whole(
    opt: Any, ctx: Any, params: list[Any], grads: list[Any], state: Any, loss: Any,
    layout: _Layout, traced: bool = False,
) -> tuple[list[Any], dict[str, Any]]:
    """The rule on the whole arrays, its results copied into the donated buffers.

    Under ``torch.compile`` the rule may write them itself (``ctx.in_place``) and return the
    buffers; the copies of those are then skipped (:func:`_write`).
    """
    ctx.in_place = traced
    new, fields = opt._update_rule(opt._rule_hp, ctx, params, grads, state, loss)
    return _write_back(ctx.xp, params, state, layout, new, fields, traced)


def _write_back(
    xp: Any, params: list[Any], state: Any, layout: _Layout, new: list[Any],
    fields: dict[str, Any], traced: bool,
) -> tuple[list[Any], dict[str, Any]]:
    """Copy a step's results into the donated arrays; return the leaves and fields to keep."""
    pairs = list(zip(params, new, strict=True))
    inputs = list(params)
    out_fields = dict(fields)
    for name, flags in layout.donated.items():
        old, res = getattr(state, name), fields[name]
        kept = []
        for a, r, flag in zip(old, res, flags, strict=True):
            if flag:
                pairs.append((a, r))
                inputs.append(a)
            kept.append(a if flag else r)
        out_fields[name] = tuple(kept)
    _write(xp, pairs, None if traced else inputs)
    return list(params), out_fields


def write_into(params: Any, state: Any, new_params: Any, new_state: Any) -> tuple[Any, Any]:
    """Copy the results of a pure step into ``params`` and ``state``, as a donated step would.

    ``params`` / ``state`` are the step's inputs (checked with :func:`check_donatable`),
    ``new_params`` / ``new_state`` its results. Returns ``(params, state)`` holding the donated
    arrays (and the new per-run fields): what ``step(..., donate=True)`` returns.
    """
    leaves, treedef = tree_flatten(params)
    new_leaves, new_def = tree_flatten(new_params)
    if new_def != treedef:
        raise ValueError(f"new_params must have the structure of params: {new_def} vs {treedef}")
    xp = array_namespace(*leaves)
    layout = _Layout(state, leaves)
    check_donatable(xp, leaves, layout.buffers(state))
    fields = {name: getattr(new_state, name) for name in layout.names}
    with _no_grad(xp):
        kept, out = _write_back(xp, leaves, state, layout, new_leaves, fields, False)
    names = state._fields
    new_state = tuple.__new__(type(state), (new_state.count, *[out[k] for k in names[1:]]))
    return tree_unflatten(treedef, kept), new_state


# ---------------------------------------------------------------------------------------------
# Chunks (element-wise rules on host memory)


def _flat(xp: Any, a: Any, batch_shape: tuple[int, ...]) -> Any:
    """``a`` as a view of shape ``batch_shape + (E,)`` (event axes flattened); None if that
    needs a copy (a non-contiguous array) or ``a`` has no event axis."""
    if a.ndim == len(batch_shape):
        return None
    try:
        return xp.reshape(a, (*batch_shape, -1), copy=False)
    except (ValueError, RuntimeError, AttributeError):
        # NumPy and torch raise ValueError, array-api-strict AttributeError, for a copy.
        return None


def _chunk_plan(
    params: list[Any], batch_ndim: int
) -> list[list[tuple[int, int, int]]] | None:
    """Rounds of ``(leaf, start, stop)`` slices of the flattened event axes; None: no chunking.

    Leaves larger than a chunk are cut into chunks, one round each; smaller leaves are grouped,
    in order, into rounds of at most a chunk. None when a single round would cover everything,
    or when a leaf has no event axis (then the whole-array form runs).
    """
    batch_shape = tuple(params[0].shape[:batch_ndim])
    rows = math.prod(batch_shape)
    width = max(1, CHUNK_ELEMENTS // max(rows, 1))  # event elements per chunk
    sizes = []
    for p in params:
        if p.ndim == batch_ndim:
            return None
        sizes.append(math.prod(p.shape[batch_ndim:]))
    if sum(sizes) <= width:
        return None
    rounds: list[list[tuple[int, int, int]]] = []
    group: list[tuple[int, int, int]] = []
    used = 0
    for i, n in enumerate(sizes):
        if n > width:
            rounds.extend([(i, a, min(a + width, n))] for a in range(0, n, width))
            continue
        if used + n > width and group:
            rounds.append(group)
            group, used = [], 0
        group.append((i, 0, n))
        used += n
    if group:
        rounds.append(group)
    return rounds


def _chunked(
    opt: Any, ctx: Any, params: list[Any], grads: list[Any], state: Any, loss: Any,
    layout: _Layout, plan: list[list[tuple[int, int, int]]],
) -> tuple[list[Any], dict[str, Any]]:
    xp, batch_shape, n = ctx.xp, ctx.batch_shape, len(params)
    flat_p = [_flat(xp, p, batch_shape) for p in params]
    flat_g = [xp.reshape(g, (*batch_shape, -1)) for g in grads]  # a copy only if not contiguous
    flat_s = {
        name: [
            _flat(xp, a, batch_shape) if flag else a
            for a, flag in zip(getattr(state, name), flags, strict=True)
        ]
        for name, flags in layout.donated.items()
    }
    if any(v is None for v in flat_p) or any(
        flat_s[name][i] is None for name, flags in layout.donated.items()
        for i in range(n) if flags[i]
    ):
        return _whole(opt, ctx, params, grads, state, loss, layout)
    shapes = tuple(tuple(p.shape) for p in params)
    per_run: dict[str, Any] = {}  # non-tuple fields, from the first round
    per_leaf_run: dict[str, list[Any]] = {name: [None] * n for name in layout.donated}
    rule, hp = opt._update_rule, opt._rule_hp
    for rnd in plan:
        ids = tuple(i for i, _, _ in rnd)
        sl = [(..., slice(a, b)) for _, a, b in rnd]
        p_in = [flat_p[i][s] for i, s in zip(ids, sl, strict=True)]
        g_in = [flat_g[i][s] for i, s in zip(ids, sl, strict=True)]
        fields_in = {}
        inputs = list(p_in)
        for name in layout.names:
            value = getattr(state, name)
            if name not in layout.donated:
                fields_in[name] = value
                continue
            flags = layout.donated[name]
            chunk = [
                flat_s[name][i][s] if flags[i] else value[i]
                for i, s in zip(ids, sl, strict=True)
            ]
            inputs.extend(c for c, i in zip(chunk, ids, strict=True) if flags[i])
            fields_in[name] = tuple(chunk)
        sub = type(ctx)(xp, ctx.count, p_in[0], ctx.treedef)
        sub.leaf_ids, sub.tree_shapes = ids, shapes
        sub_state = tuple.__new__(type(state), (state.count, *fields_in.values()))
        new, fields = rule(hp, sub, p_in, g_in, sub_state, loss)
        pairs = list(zip(p_in, new, strict=True))
        for name in layout.names:
            res = fields[name]
            if name not in layout.donated:
                per_run.setdefault(name, res)
                continue
            flags = layout.donated[name]
            for j, i in enumerate(ids):
                if flags[i]:
                    pairs.append((fields_in[name][j], res[j]))
                elif per_leaf_run[name][i] is None:
                    per_leaf_run[name][i] = res[j]
        _write(xp, pairs, inputs)
    out = dict(per_run)
    for name, flags in layout.donated.items():
        old = getattr(state, name)
        out[name] = tuple(
            old[i] if flags[i] else per_leaf_run[name][i] for i in range(n)
        )
    return list(params), out
