"""``physopt_ref.compile``: the fastest step for the parameters' backend, compiled and donated.

One call gives a step function with the signature of :meth:`Optimizer.step`::

    step = physopt_ref.compile(opt)
    params, state = step(params, grads, state, loss=loss)   # params, state: donated

What it is on each backend:

* **JAX**: ``jax.jit`` of the pure step with ``donate_argnums`` for ``params`` and ``state``
  (XLA writes the results into their buffers);
* **PyTorch**: ``torch.compile(fullgraph=True)`` of the donated step (``step(...,
  donate=True)``): inductor fuses the whole rule, and the writes into the donated tensors, into
  one loop per leaf where the rule is element-wise (where torch 2.13's inductor fails on such a
  graph, a known bug, the compiled pure step followed by copies, with a warning). Shapes are
  specialised (``dynamic=False``): a step compiles once per parameter shape, and Dynamo's
  automatic dynamic shapes, which it keys by a code object's file and line and so would share
  between compiled steps, stay out of it;
* **NumPy, array-api-strict**: no compiler; for element-wise rules on a tree with a leaf of at
  least :data:`DONATE_MIN_BYTES` (32 MiB) the donated eager step, which evaluates them chunk by
  chunk in the cache (:mod:`physopt_ref.core.donate`); on smaller trees the plain eager step
  (see :data:`DONATE_MIN_BYTES` for the measurement). Rules with
  reductions over the whole tree (BBI, ECDSep, Gravity) cannot be chunked: their donated form
  only copies the results of the whole-array step into the buffers, one more pass (measured
  1.08-1.39x the plain step at N = 1e7), so they get the plain eager step;
* **CuPy**: the plain eager step: no kernel fusion yet (CuPy's ``fuse`` cannot trace through
  the Array API wrappers, and no GPU was available to measure a generated kernel), and a
  donated eager step on a device only adds copies (:mod:`physopt_ref.core.donate`).

:meth:`CompiledStep.donates` says which form a backend gets. Where it is the plain step, the
results are new arrays (the caller's promise not to reuse the inputs still holds; nothing is
written into them).

With ``donate=False`` the compiled step is pure (JAX and torch), or the plain step (others).
The caller promises not to use the ``params`` and ``state`` passed to a donating step again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import (
    array_namespace,
    is_array_api_strict_namespace,
    is_cupy_namespace,
    is_jax_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)

from physopt_ref.core.contract import Optimizer
from physopt_ref.core.donate import write_into
from physopt_ref.core.numerics import itemsize
from physopt_ref.core.tree import tree_leaves

__all__ = ["DONATE_MIN_BYTES", "CompiledStep", "compile"]

#: Smallest leaf, in bytes, for which ``compile`` on NumPy and array-api-strict runs the donated
#: (chunked) form of an element-wise rule rather than the plain eager step. glibc's ``malloc``
#: serves every request of at least 32 MiB (``DEFAULT_MMAP_THRESHOLD_MAX`` on 64-bit) with a
#: fresh ``mmap``, so a plain step's temporaries of that size page-fault at every call, which
#: the chunked form avoids; smaller freed blocks are reused, and there the plain step is faster
#: (the chunked form pays a Python call per 64 Ki-element chunk). Measured with
#: ``python benchmarks/bench_ecd.py --only compile --compile-backends numpy --n N --repeats 3``
#: (float32, CPU time, one thread), donated chunked / plain step: N = 1e6 (4 MB leaves) SGD
#: 2.02x, heavy ball 1.60x, CoolMomentum 2.60x; N = 4e6 (16 MB) 1.11x, 1.22x, 1.94x; N = 1e7
#: (40 MB) 0.60x, 0.74x, 1.03x. The choice changes no result: both forms give the pure step's
#: bits. Other allocators place the threshold elsewhere; this one is glibc's.
DONATE_MIN_BYTES = 32 * 2**20

StepFn = Callable[[Any, Any, Any, Any], tuple[Any, Any]]


class CompiledStep:
    """A compiled (and by default donating) step of one optimizer; see :func:`compile`.

    Call it like :meth:`Optimizer.step`: ``params, state = step(params, grads, state,
    loss=None)``. The compiled function is built for a backend on the first call with its
    arrays (or at construction with ``like=``), then reused.

    With ``fixed_layout=True`` the caller promises that every call passes arguments of the
    first call's layout: the same tree structure and state fields, the same dtypes and devices,
    ``loss`` None at every call or a tensor at every call. The donated torch step is then
    called past Dynamo after its first call (:class:`~physopt_ref.core.torch_direct.DirectStep`:
    no guards, about 0.3 ms a step less on a 2.4 M-parameter MLP); shapes and strides are still
    checked (by inductor's code), dtypes and devices too. The torch adapter steps this way.

    Attributes
    ----------
    optimizer : Optimizer
    donate : bool
    fixed_layout : bool
    """

    __slots__ = ("_fns", "donate", "fixed_layout", "optimizer")

    def __init__(self, optimizer: Optimizer, *, donate: bool = True, like: Any = None,
                 fixed_layout: bool = False) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"compile() takes a physopt_ref Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.donate = bool(donate)
        self.fixed_layout = bool(fixed_layout)
        self._fns: dict[str, StepFn] = {}
        if like is not None:
            self._fn_for(tree_leaves(like))

    def __repr__(self) -> str:
        return f"compile({self.optimizer!r}, donate={self.donate})"

    def __call__(self, params: Any, grads: Any, state: Any, *, loss: Any = None) -> tuple[Any, Any]:
        leaves = tree_leaves(params)
        if not leaves:
            raise ValueError("params holds no arrays")
        return self._fn_for(leaves)(params, grads, state, loss)

    def backend_of(self, like: Any) -> str:
        """The backend name ``like`` (an array) compiles for."""
        xp = array_namespace(like)
        for name, test in _BACKENDS:
            if test(xp):
                return name
        raise TypeError(
            f"physopt_ref.compile has no form for {xp.__name__} arrays; supported: JAX, "
            "PyTorch, NumPy, array-api-strict, CuPy"
        )

    def donates(self, like: Any) -> bool:
        """Whether the step for ``like``'s backend (an array or a tree) writes into the buffers.

        JAX and torch: ``donate``. NumPy and array-api-strict: ``donate`` for element-wise
        rules on a tree with a leaf of at least :data:`DONATE_MIN_BYTES` (chunked in the cache;
        whole-tree rules would only add a copy, smaller trees run faster plain). CuPy: never
        (eager copies on a device cost a pass and save nothing).
        """
        leaves = tree_leaves(like)
        return self._donates(self.backend_of(leaves[0]), leaves)

    def _donates(self, backend: str, leaves: list[Any]) -> bool:
        if backend in ("jax", "torch"):
            return self.donate
        if backend == "cupy":
            return False
        return (self.donate and self.optimizer.elementwise
                and max(map(_nbytes, leaves)) >= DONATE_MIN_BYTES)

    def for_array(self, like: Any) -> StepFn:
        """The step function for ``like``'s backend, called as ``fn(params, grads, state,
        loss)`` (what :meth:`__call__` looks up at every call)."""
        return self._fn_for(tree_leaves(like))

    def _fn_for(self, leaves: list[Any]) -> StepFn:
        backend = self.backend_of(leaves[0])
        donate = self._donates(backend, leaves)
        key = f"{backend}:{donate}"  # on NumPy the form depends on the leaves' size
        fn = self._fns.get(key)
        if fn is None:
            if backend == "torch" and donate and self.fixed_layout:
                fn = self._fns[key] = _TorchDonated(self.optimizer, direct=True)
            else:
                fn = self._fns[key] = _BUILDERS[backend](self.optimizer, donate)
        return fn


def compile(optimizer: Optimizer, *, donate: bool = True, like: Any = None) -> CompiledStep:
    """The compiled, donated step of ``optimizer`` for the parameters' backend.

    Parameters
    ----------
    optimizer : Optimizer
    donate : bool
        Reuse the memory of ``params`` and of the state (default). The caller promises not to
        use the arrays it passes as ``params`` and ``state`` again; the returned ones replace
        them. ``False``: a pure compiled step.
    like : array or tree of arrays, optional
        Build (trace lazily, for JAX and torch) the step for this backend now rather than on the
        first call.

    Returns
    -------
    CompiledStep
        ``params, state = step(params, grads, state, loss=None)``: ``jax.jit`` with
        ``donate_argnums`` on JAX, ``torch.compile(fullgraph=True)`` of the donated step on
        PyTorch, the donated eager step on NumPy and array-api-strict for element-wise rules,
        the plain eager step otherwise (see the module notes and :meth:`CompiledStep.donates`).
        Its results equal the eager step's to rounding (bit for bit where it runs the eager
        step).

    Examples
    --------
    >>> import numpy as np, physopt_ref as po
    >>> opt = po.adam(lr=0.1)
    >>> x = np.ones(4)
    >>> state = opt.init(x)
    >>> step = po.compile(opt)
    >>> x, state = step(x, 2 * x, state)  # the old x and state are not to be used again
    """
    return CompiledStep(optimizer, donate=donate, like=like)


def _nbytes(a: Any) -> int:
    """Bytes of one array's elements (from its shape and dtype; no data is read)."""
    nbytes = getattr(a, "nbytes", None)
    if nbytes is not None:
        return int(nbytes)
    size = 1
    for n in a.shape:
        size *= int(n)
    return size * itemsize(array_namespace(a), a.dtype)


def _eager(opt: Optimizer, donate: bool) -> StepFn:
    def step(params: Any, grads: Any, state: Any, loss: Any) -> tuple[Any, Any]:
        return opt.step(params, grads, state, loss=loss, donate=donate)

    return step


def _jax(opt: Optimizer, donate: bool) -> StepFn:
    import jax

    def step(params: Any, grads: Any, state: Any, loss: Any) -> tuple[Any, Any]:
        return opt.step(params, grads, state, loss=loss)

    return jax.jit(step, donate_argnums=(0, 2) if donate else ())


#: Options of ``torch.compile`` for every compiled step: ``emulate_precision_casts=True`` makes
#: inductor round a value cast to float16 / bfloat16 inside a fused kernel as eager torch does.
#: Without it inductor keeps such an intermediate in float32, and Gravity's compensated update
#: (``residual = p̃' - float32(bfloat16(p̃'))``, :mod:`physopt_ref.core.precision`) computed 0:
#: the compiled bfloat16 step stalled where the eager one descends. A per-compile option, not
#: a global setting.
TORCH_PRECISION = {"emulate_precision_casts": True}

#: Options of ``torch.compile`` for a donated step: ``inplace_buffers=False`` (with it on, more
#: graphs hit the inductor failure that :class:`_TorchDonated` works around).
TORCH_OPTIONS = {"inplace_buffers": False, **TORCH_PRECISION}

#: The torch bug behind :class:`_TorchDonated`'s fallback.
TORCH_ISSUE = "pytorch/pytorch#196570"


def _torch(opt: Optimizer, donate: bool) -> StepFn:
    import torch

    if not donate:
        return torch.compile(_own_code(_eager(opt, False)), fullgraph=True, dynamic=False,
                             options=dict(TORCH_PRECISION))
    return _TorchDonated(opt)


def _own_code(fn: StepFn) -> StepFn:
    """``fn`` with a code object of its own.

    Dynamo keeps its compiled graphs on the code object, and stops with a hard error (under
    ``fullgraph=True``) after ``recompile_limit`` (8) graphs for one: the step closures of
    every compiled optimizer share :func:`_eager`'s code, so the ninth ``compile()`` of a
    process failed. A copy of the code object per compiled step keeps their caches apart.
    """
    import types

    code = fn.__code__.replace()  # an equal but distinct object
    return types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__,
                              fn.__closure__)


class _TorchDonated:
    """``torch.compile`` of the donated step, with the writes fused into inductor's kernels.

    torch 2.13's inductor fails to compile some of these graphs: a per-run reduction (Gravity's
    max|G| on an ensemble) followed by in-place writes raises ``KeyError: 'bufN'`` in its CPP
    outer-loop fusion (a mutation output promoted to a local buffer; :data:`TORCH_ISSUE`, fix
    pending). Writing with one ``torch._foreach_copy_`` instead compiles, but computes wrong
    values (a write lands before a read of the same buffer). So when compiling fails that way
    (before anything is written), the step falls back, with a warning, to the compiled *pure*
    step followed by eager copies into the donated arrays: the same results, one more pass.

    With ``direct=True`` the step is a :class:`~physopt_ref.core.torch_direct.DirectStep`
    (called past Dynamo after the first call; :class:`CompiledStep`'s ``fixed_layout``).
    """

    __slots__ = ("_fallback", "_fn", "_opt")

    def __init__(self, opt: Optimizer, *, direct: bool = False) -> None:
        import torch

        from physopt_ref.core.torch_direct import DirectStep

        self._opt = opt
        code = _own_code(_eager(opt, True))
        self._fn: Any = (DirectStep(code, TORCH_OPTIONS) if direct else
                         torch.compile(code, fullgraph=True, dynamic=False,
                                       options=dict(TORCH_OPTIONS)))
        self._fallback: Any = None

    def __call__(self, params: Any, grads: Any, state: Any, loss: Any) -> tuple[Any, Any]:
        if self._fallback is None:
            try:
                return self._fn(params, grads, state, loss)
            except Exception as exc:
                if not _inductor_key_error(exc):
                    raise
                import warnings

                import torch

                warnings.warn(
                    f"torch.compile could not fuse the donated {self._opt.name} step ({exc!r}, "
                    f"an inductor bug: {TORCH_ISSUE}); running the compiled pure step and "
                    "copying its results into the donated arrays instead",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._fallback = torch.compile(_own_code(_eager(self._opt, False)),
                                               fullgraph=True, dynamic=False,
                                               options=dict(TORCH_PRECISION))
        from physopt_ref.core.torch_direct import detached

        params = detached(params)
        new_params, new_state = self._fallback(params, grads, state, loss)
        return write_into(params, state, new_params, new_state)


def _inductor_key_error(exc: BaseException | None) -> bool:
    """The compile-time failure of :data:`TORCH_ISSUE` (nothing has run yet)."""
    from torch._inductor.exc import InductorError

    while exc is not None:
        if isinstance(exc, InductorError) and "KeyError" in str(exc):
            return True
        exc = exc.__cause__
    return False


_BACKENDS: tuple[tuple[str, Callable[[Any], bool]], ...] = (
    ("jax", is_jax_namespace),
    ("torch", is_torch_namespace),
    ("numpy", is_numpy_namespace),
    ("array_api_strict", is_array_api_strict_namespace),
    ("cupy", is_cupy_namespace),
)
_BUILDERS: dict[str, Callable[[Optimizer, bool], StepFn]] = {
    "jax": _jax,
    "torch": _torch,
    "numpy": _eager,
    "array_api_strict": _eager,
    "cupy": _eager,
}
