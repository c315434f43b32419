"""Every registered optimizer as an optax ``GradientTransformationExtraArgs``
(``pip install 'physopt_ref[optax]'``).

>>> import optax, physopt_ref.optax as pox                               # doctest: +SKIP
>>> tx = optax.chain(optax.clip_by_global_norm(1.0), pox.bbi(lr=0.05))   # doctest: +SKIP
>>> state = tx.init(params)                                              # doctest: +SKIP
>>> loss, grads = jax.value_and_grad(f)(params)                          # doctest: +SKIP
>>> updates, state = tx.update(grads, state, params, value=loss)         # doctest: +SKIP
>>> params = optax.apply_updates(params, updates)                        # doctest: +SKIP

One function per registered optimizer, named and parametrised as the library's factory
(:func:`sgd`, :func:`heavy_ball`, ..., :func:`bbi`, :func:`ecdsep`), and :func:`as_optax` for
any :class:`~physopt_ref.Optimizer` (a :func:`~physopt_ref.chain` too).

* ``update(updates, state, params, *, value=None)``: the incoming ``updates`` are the
  gradients (as transformed by what comes before in an ``optax.chain``), ``params`` is
  required, and the loss is optax's extra argument ``value=`` (required by the optimizers that
  need it; ``optax.chain`` hands it on).
* The library's step computes the new parameters; the update is their difference to
  ``params``, so ``optax.apply_updates`` gives the step's parameters up to one rounding.
* Parameters are any JAX pytree; the optimizer sees its leaves in JAX's order (``dict`` keys
  sorted, as in :mod:`physopt_ref.core.tree`), so per-leaf settings and random streams are those of
  the functional step. The state is the optimizer's own ``NamedTuple`` (a pytree), so
  ``jax.jit`` and ``jax.lax.scan`` trace it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import optax

from physopt_ref.core.contract import Optimizer
from physopt_ref.core.registry import REGISTRY, get_optimizer

__all__ = [
    "adam",
    "as_optax",
    "bbi",
    "coolmomentum",
    "dyna",
    "dyna_prototype",
    "dynamic_relaxation",
    "ecdsep",
    "gravity",
    "heavy_ball",
    "nesterov",
    "sgd",
    "transformation",
]


def as_optax(
    optimizer: Optimizer, *, batch_ndim: int = 0
) -> optax.GradientTransformationExtraArgs:
    """``optimizer`` as an optax transformation (``batch_ndim`` leading axes are an ensemble;
    ``value=`` then has the ensemble's shape)."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"as_optax needs a physopt_ref.Optimizer, got {type(optimizer).__name__}")

    def init(params: Any) -> Any:
        return optimizer.init(jax.tree_util.tree_leaves(params), batch_ndim=batch_ndim)

    def update(updates: Any, state: Any, params: Any = None, *, value: Any = None,
               **extra_args: Any) -> tuple[Any, Any]:
        if params is None:
            raise ValueError(
                f"physopt_ref.optax.{optimizer.name} computes new parameters: call "
                "update(grads, state, params)"
            )
        if value is None and optimizer.needs_loss:
            raise ValueError(
                f"{optimizer.name} needs the loss: pass it as update(grads, state, params, "
                "value=loss) (optax.chain hands value= on)"
            )
        leaves, treedef = jax.tree_util.tree_flatten(params)
        grads = treedef.flatten_up_to(updates)  # type: ignore[attr-defined]  # jaxlib's stub lacks it
        new, state = optimizer.step(leaves, grads, state, loss=value)
        deltas = [n - p for n, p in zip(new, leaves, strict=True)]
        return jax.tree_util.tree_unflatten(treedef, deltas), state

    return optax.GradientTransformationExtraArgs(init, update)


def transformation(name: str, **hyperparameters: Any) -> optax.GradientTransformationExtraArgs:
    """A registered optimizer, by name, as an optax transformation."""
    return as_optax(get_optimizer(name, **hyperparameters))


def _by_name(name: str) -> Callable[..., optax.GradientTransformationExtraArgs]:
    factory = REGISTRY[name].factory

    @functools.wraps(factory)
    def make(*args: Any, **hyperparameters: Any) -> optax.GradientTransformationExtraArgs:
        return as_optax(factory(*args, **hyperparameters))

    make.__module__ = __name__
    make.__doc__ = (f"physopt_ref.{name} as an optax transformation (see physopt_ref.optax)."
                    f"\n\n{factory.__doc__ or ''}")
    return make


sgd = _by_name("sgd")
heavy_ball = _by_name("heavy_ball")
nesterov = _by_name("nesterov")
adam = _by_name("adam")
dyna = _by_name("dyna")
dyna_prototype = _by_name("dyna_prototype")
dynamic_relaxation = _by_name("dynamic_relaxation")
coolmomentum = _by_name("coolmomentum")
bbi = _by_name("bbi")
ecdsep = _by_name("ecdsep")
gravity = _by_name("gravity")
