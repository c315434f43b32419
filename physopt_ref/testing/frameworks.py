"""Optimizers of other frameworks as subjects: ``torch.optim.Optimizer`` subclasses and optax
``GradientTransformation`` factories.

:func:`framework_subject` recognises what it is given:

- a **torch optimizer class** (a subclass of ``torch.optim.Optimizer``), built as
  ``cls(params, **hyperparameters)``: the properties of :mod:`.torch_checks`;
- an **optax transformation factory** (a callable whose result has ``init`` and ``update`` and
  no ``step``, as ``optax.adam``), wrapped by :class:`OptaxView` into ``init`` / ``step``
  (``updates, state = tx.update(grads, state, params)``, then ``optax.apply_updates``): the
  contract's properties that apply (:func:`optax_properties`);
- anything else with ``init`` and ``step``: the library's own contract.

The physics checks run on both through the step view (optax's in JAX's 64-bit scope, since the
checks draw float64 gradients down to 1e-100).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from physopt_ref.backends import get_namespace
from physopt_ref.core.tree import tree_flatten, tree_unflatten
from physopt_ref.testing.compile import check_jax_jit, check_jax_scan
from physopt_ref.testing.contract import NP, check_determinism, check_dtype_kept
from physopt_ref.testing.structure import check_state_structure
from physopt_ref.testing.subject import Subject
from physopt_ref.testing.torch_checks import TorchView
from physopt_ref.testing.workloads import CONTRACT_WORKLOAD

__all__ = [
    "OPTAX_NOT_APPLICABLE",
    "OptaxView",
    "framework_subject",
    "is_optax_transformation",
    "is_torch_optimizer_class",
    "not_applicable",
    "optax_properties",
    "physics_view",
]

#: The contract's properties that do not apply to an optax transformation, and why.
OPTAX_NOT_APPLICABLE = {
    "purity": "JAX arrays are immutable",
    "ensemble = single runs": "optax has no per-run axes",
    "backend parity": "JAX arrays only",
    "device kept": "JAX places arrays itself; jit stands for host reads",
}


def is_torch_optimizer_class(obj: Any) -> bool:
    """``obj`` is a subclass of ``torch.optim.Optimizer`` (False when torch is not imported)."""
    torch = sys.modules.get("torch")
    return (torch is not None and inspect.isclass(obj)
            and issubclass(obj, torch.optim.Optimizer))


def is_optax_transformation(obj: Any) -> bool:
    """``obj`` looks like an optax ``GradientTransformation``: ``init`` and ``update``, no
    ``step``."""
    return (callable(getattr(obj, "init", None)) and callable(getattr(obj, "update", None))
            and not callable(getattr(obj, "step", None)))


def _to_jax(tree: Any) -> Any:
    import jax.numpy as jnp

    leaves, treedef = tree_flatten(tree)
    return tree_unflatten(treedef, [jnp.asarray(v) for v in leaves])


class OptaxView:
    """An optax ``GradientTransformation`` as ``init`` / ``step``: JAX arrays out for JAX
    arrays in; NumPy parameters come back as NumPy arrays (the kit's reference runs), the state
    stays JAX's. ``compiled=True`` runs ``update`` and ``apply_updates`` as one ``jax.jit``
    function (the physics checks take thousands of steps)."""

    def __init__(self, transformation: Any, compiled: bool = False) -> None:
        self.transformation, self.compiled = transformation, compiled
        self._fused: Any = None

    def init(self, params: Any, *, batch_ndim: int = 0) -> Any:
        if batch_ndim:
            raise TypeError("an optax transformation has no per-run axes (batch_ndim must be 0)")
        return self.transformation.init(_to_jax(params))

    def _apply(self, params: Any, grads: Any, state: Any) -> Any:
        import optax

        updates, state = self.transformation.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    def step(self, params: Any, grads: Any, state: Any, *, loss: Any = None) -> Any:
        host = all(isinstance(v, np.ndarray) for v in tree_flatten(params)[0])
        fn = self._apply
        if self.compiled:
            if self._fused is None:
                import jax

                self._fused = jax.jit(self._apply)
            fn = self._fused
        new, state = fn(_to_jax(params), _to_jax(grads), state)
        if host:
            leaves, treedef = tree_flatten(new)
            new = tree_unflatten(treedef, [np.asarray(v) for v in leaves])
        return new, state

    def __repr__(self) -> str:
        return f"OptaxView({self.transformation!r})"


def physics_view(subject: Subject) -> Subject:
    """The subject the physics checks run on: an optax one with compiled steps."""
    if subject.framework != "optax":
        return subject
    native = subject.native

    def compiled_view(**settings: Any) -> OptaxView:
        return OptaxView(native(**settings), compiled=True)

    return replace(subject, factory=compiled_view)


def framework_subject(name: str, obj: Any, hyperparameters: Mapping[str, Any],
                      **options: Any) -> Subject:
    """A :class:`Subject` for ``obj`` (a torch optimizer class, an optax factory, or a factory
    of optimizers with ``init`` and ``step``), built with ``hyperparameters``.

    Building it once here surfaces a bad hyperparameter at once (the exception propagates).
    """
    hp = dict(hyperparameters)
    if is_torch_optimizer_class(obj):
        def torch_view(**settings: Any) -> TorchView:
            return TorchView(obj, settings)

        subject = Subject(name, torch_view, hp, framework="torch", native=obj)
        obj([__import__("torch").zeros(1)], **hp)  # refuses bad settings now
        return subject
    built = obj(**hp)
    if is_optax_transformation(built):
        def optax_view(**settings: Any) -> OptaxView:
            return OptaxView(obj(**settings))

        return Subject(name, optax_view, hp, framework="optax", native=obj)
    return Subject(name, obj, hp, **options)


def optax_properties(compile: bool = True) -> list[Any]:
    """The properties run on an optax transformation (through :class:`OptaxView`)."""
    from physopt_ref.testing.properties import Property

    def st() -> Any:
        from hypothesis import strategies

        return strategies

    def workloads(subject: Subject) -> Any:
        from physopt_ref.testing import strategies as pst

        return st().tuples(pst.workloads())

    def jax_xp() -> Any:
        return get_namespace("jax")

    props = [
        Property("determinism", lambda s, ex: check_determinism(s, workload=ex[0]), workloads),
        Property("dtype kept", lambda s, ex: check_dtype_kept(
            s, jax_xp(), dtype=ex[1], workload=ex[0]),
            lambda s: st().tuples(workloads(s).map(lambda t: t[0]),
                                  st().sampled_from(["float32", "bfloat16"]))),
        Property("state of arrays", lambda s, ex: check_state_structure(
            s, NP, workload=CONTRACT_WORKLOAD, batch_shape=())),
    ]
    if compile:
        f32: dict[str, Any] = {"dtype": "float32", "x64": False, "batch_shape": ()}
        props += [
            Property("jax.jit = eager", lambda s, ex: check_jax_jit(s, **f32)),
            Property("jax.lax.scan = eager", lambda s, ex: check_jax_scan(s, steps=50, **f32)),
        ]
    return props


def not_applicable(subject: Subject) -> Mapping[str, str]:
    """The properties that do not apply to ``subject``'s framework, and why."""
    from physopt_ref.testing.torch_checks import NOT_APPLICABLE

    return {"torch": NOT_APPLICABLE, "optax": OPTAX_NOT_APPLICABLE}.get(subject.framework, {})

