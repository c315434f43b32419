r"""Gravity: steps shaped like a ball's acceleration on an inclined plane.

Bahrami & Pouriyan Zadeh, "Gravity Optimizer: a Kinematic Approach on Optimization in Deep
Learning", arXiv 2101.09192 (2021). Official code: ``dariush-bahrami/gravity.optimizer`` at
``9c12068`` (spec: ``shared/specs/coolmomentum-gravity-dyna-yang.md`` §b). Equation numbers are
those of the arXiv preprint in that repository.

Per leaf (the paper's "weight matrix" :math:`W_i`) and per run of an ensemble:

.. math::

    m &= 1/\max|G| \quad\text{(Eq. 20)}, \qquad
    \zeta = \frac{g}{1 + (g/m)^2} \quad\text{(Eq. 21)},\\
    \hat\beta_t &= \frac{\beta t + 1}{t + 2} \quad\text{(Eq. 26)}, \qquad
    V_t = \hat\beta_t V_{t-1} + (1-\hat\beta_t)\,\zeta \quad\text{(Eq. 22 with } \hat\beta),\\
    W &\leftarrow W - l\, V_t, \qquad V_0 \sim \mathcal N(0, \sigma^2),\ \sigma = \alpha/l
    \quad\text{(Eqs. 27, 30)}.

The map :math:`g \mapsto g/(1+(g/m)^2)` is largest at :math:`|g| = m`, where it equals
:math:`m/2` (Eqs. 18–19: the largest step is :math:`l m/2`), and :math:`\zeta \approx g` for
:math:`|g| \ll m`. We evaluate it as :math:`g / (1 + (g \max|G|)^2)`, the same number without
forming :math:`1/\max|G|`: an all-zero gradient gives :math:`\zeta = 0` with no division by
zero and no warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from physopt_ref.backends import normal
from physopt_ref.core.context import StepContext
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.numerics import compute_dtype
from physopt_ref.core.precision import check_state_dtype, widened
from physopt_ref.core.registry import register
from physopt_ref.core.tree import expand_to_leaf, per_run_max
from physopt_ref.core.validate import check_int, check_real

__all__ = ["GravityState", "gravity", "gravity_beta_hat", "gravity_zeta"]

Hyper = Mapping[str, Any]


class GravityState(NamedTuple):
    """State of :func:`gravity`.

    Attributes
    ----------
    count : array
        Steps taken by each run (``int32``, batch shape).
    velocity : tuple of arrays
        Per leaf, the velocity :math:`V` (:math:`V_0` before the first step); the step is
        :math:`-l V`. In the state dtype (``state_dtype``).
    residual : tuple of arrays
        Per leaf, what rounding the last new parameters to their dtype dropped, added back on
        the next step (the compensated update of :mod:`physopt_ref.core.precision`): shaped
        like the leaf and in the state dtype where that is wider than the parameters (float32
        for float16 and bfloat16 parameters by default); otherwise nothing is rounded and it
        is one zero per run (the ensemble's batch shape, the parameters' dtype).
    """

    count: Any
    velocity: tuple[Any, ...]
    residual: tuple[Any, ...]


def _beta_hat(beta: Any, t: Any) -> Any:
    return (beta * t + 1.0) / (t + 2.0)


def gravity_beta_hat(beta: float, t: int) -> float:
    r"""The step-dependent averaging weight :math:`\hat\beta_t = (\beta t + 1)/(t + 2)` (Eq. 26).

    :math:`\hat\beta_0 = 1/2` (Table 2, Eq. 28), rising towards :math:`\beta` from below
    (:math:`\hat\beta_t = \beta - (2\beta - 1)/(t+2)`); for :math:`\beta = 1` it is the running
    mean weight, :math:`1/(1-\hat\beta) = t + 2`.
    """
    beta = check_real("beta", beta, symbol="β", low=0.0, high=1.0)
    t = check_int("t", t, symbol="t", low=0)
    return _beta_hat(beta, float(t))


def gravity_zeta(xp: Any, g: Any, batch_ndim: int = 0) -> Any:
    r""":math:`\zeta = g/(1 + (g/m)^2)` with :math:`m = 1/\max|G|` over the leaf, per run.

    ``g`` is one leaf; the maximum is over its trailing (event) axes, one per ensemble member.
    Computed as :math:`(g r)\,r/(r^2 + (u r)^2)` with :math:`u = g\max|G|` and
    :math:`r = 1/\max(|u|, 1)`, which is finite for an all-zero gradient and forms no
    :math:`u^2` that could overflow (right for gradients up to ``finfo.max``), in the compute dtype
    (:func:`physopt_ref.core.numerics.compute_dtype`) and cast back to ``g``'s. A leaf
    with no elements (an event axis of length 0) gives its empty ζ (no maximum to take).
    """
    if any(n == 0 for n in g.shape[batch_ndim:]):
        return g
    cd = compute_dtype(xp, g.dtype)
    gc = g if cd == g.dtype else xp.astype(g, cd)  # in the compute dtype, cast back at the end
    gmax = expand_to_leaf(xp, per_run_max(xp, xp.abs(gc), batch_ndim), gc, batch_ndim)
    u = gc * gmax
    # g/(1 + u²) = (g r) r / (r² + (u r)²) with r = 1/max(|u|, 1): no u² to overflow, no
    # subnormal r² in the numerator, and no branch.
    r = 1.0 / xp.maximum(xp.abs(u), xp.ones_like(u))
    ur = u * r
    zeta = (gc * r) * r / (r * r + ur * ur)
    return zeta if cd == g.dtype else xp.astype(zeta, g.dtype)


def _gravity_init(hp: Hyper, ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
    # V0 ~ N(0, (alpha/l)^2) per element (Eqs. 27, 30), drawn on the device at counter 0.
    sigma = ctx.hp(hp["alpha"]) / ctx.hp(hp["lr"])
    v0 = tuple(
        ctx.leaf(sigma, p)
        * normal(hp["seed"], 0, tuple(p.shape), like=p, batch_ndim=ctx.batch_ndim, stream=i,
                 member=hp["member"])
        for i, p in enumerate(leaves)
    )
    return {"velocity": v0}


def _gravity_update(
    hp: Hyper,
    ctx: StepContext,
    params: list[Any],
    grads: list[Any],
    state: GravityState,
    loss: Any,
) -> tuple[list[Any], dict[str, Any]]:
    lr = ctx.hp(hp["lr"])
    bh = _beta_hat(ctx.hp(hp["beta"]), ctx.t + float(hp["t_start"]))
    vel = tuple(
        ctx.leaf(bh, v) * v + ctx.leaf(1.0 - bh, v) * gravity_zeta(ctx.xp, g, ctx.batch_ndim)
        for v, g in zip(state.velocity, grads, strict=True)
    )
    new = [p - ctx.leaf(lr, p) * v for p, v in zip(params, vel, strict=True)]
    return new, {"velocity": vel}


def gravity(
    lr: Any = 0.1,
    alpha: Any = 0.01,
    beta: Any = 0.9,
    seed: int = 0,
    t_start: int = 0,
    member: int = 0,
    state_dtype: str | None = None,
) -> Optimizer:
    r"""The Gravity optimizer (Bahrami & Pouriyan Zadeh 2021, Algorithm 1).

    .. math::

        m = 1/\max|G|,\quad \zeta = \frac{g}{1+(g/m)^2},\quad
        \hat\beta = \frac{\beta t + 1}{t + 2},\quad
        V \leftarrow \hat\beta V + (1-\hat\beta)\zeta,\quad W \leftarrow W - l V,

    per parameter leaf, with :math:`V_0 \sim \mathcal N(0, (\alpha/l)^2)` per element drawn at
    ``init`` and ``t = count + t_start``. The first step (``t_start=0``) is
    :math:`\Delta W_0 = -l(\tfrac12 V_0 + \tfrac12\zeta_0)` (Eq. 28).

    Parameters
    ----------
    lr : float or per-run array
        Learning rate :math:`l > 0`, open at 0: :math:`V_0`'s scale :math:`\alpha/l` divides by it
        (the torch adapter still lets a scheduler reach 0 after the state is made; the step
        :math:`\theta - l v` is then a no-op). Default 0.1 (paper p. 2 and p. 22; both official
        classes).
    alpha : float or per-run array
        :math:`\alpha \ge 0`, the initial step scale: :math:`V_0` has standard deviation
        :math:`\sigma = \alpha/l` (Eqs. 27, 30). Default 0.01 (paper, both official classes; the
        repo's ``Gravity Optimizer Math.md`` suggests 0.05). :math:`\alpha = 0` gives
        :math:`V_0 = 0` (Eq. 22's initialisation).
    beta : float or per-run array
        :math:`\beta \in [0, 1]` (Algorithm 1's range). Default 0.9 (paper, official code).
    seed : int
        Seed of the :math:`V_0` draw (``physopt_ref.backends.normal``, counter 0, one stream per
        leaf), keyed by (``seed``, member): see ``member``.
    t_start : int
        ``t`` on the first step: 0 (default; the paper's text, Table 2 and Eq. 28, "At t = 0 the
        value of β̂ is 0.5", and the Keras class behind all reported results) or 1 (Algorithm 1's
        ``t ← t + 1`` before use, the official PyTorch class and kozistr's port: first
        :math:`\hat\beta = (\beta+1)/3`).
    member : int
        Member index of this run, in [0, 2**32), default 0: :math:`V_0` is keyed by
        (``seed``, member), and ensemble member ``k`` draws as member ``member + k``
        (:func:`physopt_ref.bbi`, ``member``).
    state_dtype : {None, "params", "float32", "float64"}
        The dtype of the velocity and of the step's arithmetic. ``None`` (default): the compute
        dtype ``result_type(param dtype, float32)``. Where it is wider than the parameters
        (float32 for float16 and bfloat16 parameters) the update is *compensated*: the state
        keeps the residual of rounding the new parameters to their dtype and adds it back on
        the next step (:mod:`physopt_ref.core.precision`). Gravity needs it in bfloat16: its
        step :math:`l V` is often below half an ulp of the parameter (0.002 near 1), and
        :math:`W - lV` rounded to bfloat16 would give :math:`W` back (``docs/precision.md``).
        Under your own ``torch.compile`` of the step pass
        ``options={"emulate_precision_casts": True}`` (:func:`physopt_ref.compile` does): by
        default inductor skips the rounding inside a fused kernel and the residual is 0.
        ``"params"``: velocity and arithmetic in the parameters' dtype, no compensation (the
        behaviour before it, and no extra memory). float32 and float64 parameters give the
        same bits with any value that is not wider than them.

    Returns
    -------
    Optimizer
        State: :class:`GravityState`.

    Notes
    -----
    Differences from the authors' code (spec §b.2–b.4 and "disagree" items 1–5):

    1. :math:`V_0` is seeded and counter-based (Philox-4x32-10 on the parameters' device, the
       same integer bits on every backend); the official classes draw it unseeded from the
       framework's generator.
    2. ``t_start=0`` follows the Keras code and the paper's text; the official PyTorch class
       (and Algorithm 1) corresponds to ``t_start=1``.
    3. :math:`\zeta` is computed as :math:`g/(1+(g\max|G|)^2)` rather than through
       :math:`m = 1/\max|G|` and :math:`g/m`: equal up to rounding (the official code relies on
       ``1/0 = inf`` for an all-zero gradient, which warns under NumPy).
    4. One step counter for the whole tree (Keras ``iterations``), not one per parameter group.
    5. :math:`\beta = 1` is allowed (Algorithm 1's :math:`[0, 1]`); the official PyTorch class
       requires :math:`\beta < 1`. No weight decay and no :math:`\epsilon` (the Keras class stores
       ``epsilon = 1e-7`` but never uses it).
    6. The maximum is over a whole leaf, per ensemble member: no per-row or per-channel maxima,
       as in both official classes.
    7. For float16 and bfloat16 parameters the velocity and the step are float32 and the
       parameter update is compensated (``state_dtype``); the official classes keep the
       velocity in the parameters' dtype and round :math:`W - lV` to it on every step. A
       bfloat16 run stalls there: on ``quadratic(dim=10, condition=10)`` from x0 = 1 at
       ``lr=1``, 1500 steps, the loss goes 20.4 → 0 in float32, 20.4 → 12.0 in bfloat16
       without the compensation (``state_dtype="params"``) and 20.4 → 0 with it
       (``tests/test_precision.py``, ``docs/precision.md``). float32 and float64 parameters
       give the same bits as before.
    """
    hp = {
        "lr": check_real("lr", lr, symbol="l", low=0.0, low_open=True, per_run=True),
        "alpha": check_real("alpha", alpha, symbol="α", low=0.0, per_run=True),
        "beta": check_real("beta", beta, symbol="β", low=0.0, high=1.0, per_run=True),
        "seed": check_int("seed", seed, symbol="seed", low=0, high=2**64 - 1),
        "t_start": check_int("t_start", t_start, symbol="t₀", low=0, high=1),
        "member": check_int("member", member, symbol="member index", low=0, high=2**32 - 1),
        "state_dtype": check_state_dtype(state_dtype),
    }
    init, update = _GRAVITY_RULES
    return Optimizer("gravity", hp, init=init, update=update, state_type=GravityState)


# The rules with the velocity in ``state_dtype`` and the parameter update compensated where
# that is wider than the parameters (float32 for half-precision parameters).
_GRAVITY_RULES = widened(_gravity_init, _gravity_update, compensated=True)


register(
    "gravity",
    gravity,
    test_hyperparameters={"lr": 0.1, "alpha": 0.05, "beta": 0.9, "seed": 3, "t_start": 0},
    family="gravity",
    stochastic=True,
    sweep={"lr": (0.05, 0.1, 0.2), "alpha": (0.0, 0.05, 0.1), "beta": (0.5, 0.9, 1.0)},
    smooth=False,
)
