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
    "STATIC_ARGS",
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
    ``value=`` then has the ensemble's shape).

    The state is the optimizer's ``NamedTuple``; a per-parameter field (momenta, moments) holds
    a tree of the parameters' structure, as optax's own states do, so that
    ``optax.tree.map_params`` (and sharding rules written for the parameters) apply to it.
    ``init`` takes optax's placeholder trees: ``optax.tree.map_params``' placeholder (then each
    per-parameter field is the placeholder) and ``optax.masked``'s ``MaskedNode`` subtrees
    (nodes without leaves, skipped). ``update`` refuses parameters or gradients whose tree
    differs from the state's (other keys, other nesting), from the tree structure alone.
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"as_optax needs a physopt_ref.Optimizer, got {type(optimizer).__name__}")
    if isinstance(batch_ndim, bool) or not isinstance(batch_ndim, int) or batch_ndim < 0:
        raise ValueError(f"batch_ndim must be an integer >= 0, got {batch_ndim!r}")

    def init(params: Any) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten(params)
        if not leaves:  # optax.tree.map_params' placeholder, or a tree of masked nodes only
            return _placeholder_state(optimizer, params, batch_ndim)
        state = optimizer.init(leaves, batch_ndim=batch_ndim)
        return _to_trees(_placed_like(state, leaves[0]), treedef)

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
        grads_def = jax.tree_util.tree_structure(updates)
        if grads_def != treedef:  # type: ignore[operator]
            raise ValueError(
                f"physopt_ref.optax.{optimizer.name}: the updates (gradients) have the tree "
                f"{grads_def}, the params {treedef}"
            )
        new, core_state = optimizer.step(leaves, jax.tree_util.tree_leaves(updates),
                                         _from_trees(optimizer, state, treedef), loss=value)
        deltas = [n - p for n, p in zip(new, leaves, strict=True)]
        return jax.tree_util.tree_unflatten(treedef, deltas), _to_trees(core_state, treedef)

    return optax.GradientTransformationExtraArgs(init, update)


def _placed_like(state: Any, like: Any) -> Any:
    """The state's arrays committed to a device only where the parameters are.

    The library creates arrays on the parameters' device, which commits them in JAX; jit keys
    its cache on commitment, and outputs are committed when any input is, so a committed count
    next to uncommitted parameters made the second jitted ``update`` compile again. Uncommitted
    parameters get an uncommitted state (its small committed arrays copied; not under a trace).
    """
    if isinstance(like, jax.core.Tracer) or not isinstance(like, jax.Array) or like.committed:
        return state
    import numpy as np

    def uncommitted(x: Any) -> Any:
        if isinstance(x, jax.Array) and getattr(x, "committed", False):
            return jax.numpy.asarray(np.asarray(x))
        return x

    return jax.tree_util.tree_map(uncommitted, state)


def _to_trees(state: Any, treedef: Any) -> Any:
    """The per-parameter fields (tuples of leaves) as trees of the parameters' structure."""
    return type(state)(*[jax.tree_util.tree_unflatten(treedef, list(v))
                         if isinstance(v, tuple) else v for v in state])


def _from_trees(optimizer: Optimizer, state: Any, treedef: Any) -> Any:
    """The optimizer's own state (tuples of leaves), checking each field's tree."""
    if type(state) is not optimizer.state_type:
        raise TypeError(
            f"physopt_ref.optax.{optimizer.name} expects its {optimizer.state_type.__name__} "
            f"state (from its init), got {type(state).__name__}"
        )
    fields = []
    for name, value in zip(state._fields, state, strict=True):  # type: ignore[call-overload, attr-defined]
        if isinstance(value, jax.Array) or name == "count":
            fields.append(value)
            continue
        found = jax.tree_util.tree_structure(value)
        if found != treedef:
            raise ValueError(
                f"physopt_ref.optax.{optimizer.name}: the params have the tree {treedef}, the "
                f"state's {name} (made by init) {found}: update takes the tree init was given"
            )
        fields.append(tuple(jax.tree_util.tree_leaves(value)))
    return optimizer.state_type(*fields)


def _placeholder_state(optimizer: Optimizer, params: Any, batch_ndim: int) -> Any:
    """``init`` on a tree without leaves: per-run fields as for one float32 leaf, every
    per-parameter field the tree itself (optax.tree.map_params finds its placeholder there)."""
    import jax.numpy as jnp

    state = optimizer.init([jnp.zeros((), dtype=jnp.float32)], batch_ndim=0)
    if batch_ndim:
        raise ValueError("init on a tree without arrays takes no ensemble axes (batch_ndim)")
    return type(state)(*[params if isinstance(v, tuple) else v for v in state])


#: The hyperparameters to pass as ``static_args`` to ``optax.inject_hyperparams``: integers,
#: booleans, strings, per-leaf settings and the few reals the factory turns into constants
#: when it builds the step (BBI's and ECDSep's ε₁, CoolMomentum's ρ₀, dynamic relaxation's
#: mass and stiffness). Every other real hyperparameter may be a traced value (checked when
#: concrete; a traced one is checked by the debug checks where it is evaluated). A schedule
#: (a callable) given to ``inject_hyperparams`` must be static too: optax would otherwise
#: evaluate it at its own count.
STATIC_ARGS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "heavy_ball": (),
    "nesterov": (),
    "adam": (),
    "dyna": ("fan_in",),
    "dyna_prototype": (),
    "dynamic_relaxation": ("mass", "stiffness"),
    "coolmomentum": ("rho0", "cool_steps", "schedule"),
    "bbi": ("rescale", "t0", "t1", "n_fixed_bounces", "eps1", "eps2", "seed",
            "bounce_direction", "v0_tuning", "member", "state_dtype", "safety"),
    "ecdsep": ("rescale", "eps1", "eps2", "seed", "f0_tuning", "member", "state_dtype",
               "safety"),
    "gravity": ("seed", "t_start", "member"),
}


def transformation(name: str, **hyperparameters: Any) -> optax.GradientTransformationExtraArgs:
    """A registered optimizer, by name, as an optax transformation."""
    return as_optax(get_optimizer(name, **hyperparameters))


def _by_name(name: str) -> Callable[..., optax.GradientTransformationExtraArgs]:
    factory = REGISTRY[name].factory

    @functools.wraps(factory)
    def make(*args: Any, **hyperparameters: Any) -> optax.GradientTransformationExtraArgs:
        return as_optax(factory(*args, **hyperparameters))

    import inspect

    make.__module__ = __name__
    # Typed as what it returns (functools.wraps copied the factory's -> Optimizer).
    make.__annotations__ = {**factory.__annotations__,
                            "return": optax.GradientTransformationExtraArgs}
    make.__signature__ = inspect.signature(factory).replace(  # type: ignore[attr-defined]
        return_annotation=optax.GradientTransformationExtraArgs)
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
