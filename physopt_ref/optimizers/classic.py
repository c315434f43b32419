r"""Classic first-order optimizers on the physopt_ref contract: SGD, heavy ball, Nesterov, Adam.

These are the baselines of every comparison and, in the damped-oscillator view
(:mod:`physopt_ref.optimizers.oscillator`; Yang, Arora, Braverman & Zhao, NeurIPS 2018, arXiv
1612.02803),
particles with mass and friction: plain gradient descent is the massless, over-damped particle;
heavy ball and Nesterov carry the mass :math:`m = (1+\alpha)h^2/(2\eta)` and damping
:math:`c = (1-\alpha)h/\eta` (Yang et al. Eq. 2.5).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any, NamedTuple

from physopt_ref.core.context import StepContext
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.numerics import hypot
from physopt_ref.core.registry import register
from physopt_ref.core.schedules import check_real_or_schedule
from physopt_ref.core.validate import check_real

__all__ = [
    "AdamState", "MomentumState", "NesterovState", "SGDState", "adam", "heavy_ball", "nesterov",
    "sgd",
]

Hyper = Mapping[str, Any]


class SGDState(NamedTuple):
    """State of :func:`sgd`: the step count of each run (``int32``, batch shape)."""

    count: Any


class MomentumState(NamedTuple):
    """State of :func:`heavy_ball`: ``previous`` holds, per leaf, the velocity :math:`v_k`."""

    count: Any
    previous: tuple[Any, ...]


class NesterovState(NamedTuple):
    r"""State of :func:`nesterov`: ``velocity`` holds, per leaf, :math:`v_k = x_k - x_{k-1}`.

    The gradient-step point of Yang et al.'s Eq. 2.1 is :math:`x_k = y_k - \alpha v_k` (with
    :math:`y_k` the parameters). Keeping the velocity instead of :math:`x_k` lets a step write
    both outputs in place without copies (see :func:`nesterov`).
    """

    count: Any
    velocity: tuple[Any, ...]


class AdamState(NamedTuple):
    r"""State of :func:`adam`, per leaf and not bias-corrected: the first moment ``mu``
    (:math:`m_t`) and the root of the second, ``rms`` (:math:`\sqrt{v_t}`).

    The root is kept instead of :math:`v_t` itself so that no :math:`g^2` is ever formed: in
    float32, :math:`v_t` overflows for :math:`|g| \gtrsim 10^{19}` and Adam then stops
    moving (:math:`m/\sqrt{\infty} = 0`); :math:`\sqrt{v_t}` is finite for every finite
    gradient.
    """

    count: Any
    mu: tuple[Any, ...]
    rms: tuple[Any, ...]


def _lr(value: Any) -> Any:
    return check_real_or_schedule("lr", value, symbol="η", low=0.0)


def _momentum(value: Any) -> Any:
    return check_real(
        "momentum", value, symbol="β", low=0.0, high=1.0, high_open=True, per_run=True
    )


def _no_fields(hp: Hyper, ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
    return {}


def _zeros_previous(hp: Hyper, ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
    return {"previous": ctx.zeros_like(leaves)}


# Each update is written once per leaf (``_*_leaf``): the rule applies it to every leaf with
# the per-run values shaped by the context, and the small-problem rule (``_*_small``: one NumPy
# array, constant hyperparameters; Optimizer's ``small``) applies it directly, with the same
# bits and without the context's fixed cost (benchmarks/bench_ecd.py, section small).


def _sgd_leaf(p: Any, g: Any, eta: Any) -> Any:
    return p - eta * g


def _sgd_update(
    hp: Hyper, ctx: StepContext, params: list[Any], grads: list[Any], state: SGDState, loss: Any
) -> tuple[list[Any], dict[str, Any]]:
    eta = ctx.hp(hp["lr"])
    ctx.share([eta], params)
    return [_sgd_leaf(p, g, ctx.leaf(eta, p)) for p, g in zip(params, grads, strict=True)], {}


def _sgd_small(hp: Hyper, p: Any, g: Any, state: SGDState, loss: Any) -> tuple[Any, tuple]:
    return _sgd_leaf(p, g, hp["lr"]), ()


def sgd(lr: Any = 0.01) -> Optimizer:
    r"""Gradient descent, :math:`\theta_{k+1} = \theta_k - \eta\, g_k`.

    In the damped-oscillator view it is the massless particle :math:`c\dot X + \nabla f = 0`
    (Yang et al. 2018, Sec. 2.1, :math:`\alpha = 0`). On a quadratic of curvature :math:`k` it is
    stable iff :math:`\eta < 2/k`.

    Parameters
    ----------
    lr : float, per-run array or schedule
        Step size :math:`\eta \ge 0` (0: the parameters do not move; nothing divides by it, so
        the range is closed at 0, as torch.optim's); a callable of the step count is a schedule
        (:mod:`physopt_ref.core.schedules`). Default 0.01 (a conventional value; the paper fixes
        none).
    """
    return Optimizer(
        "sgd", {"lr": _lr(lr)}, init=_no_fields, update=_sgd_update, state_type=SGDState,
        elementwise=True, small=_sgd_small,
    )


def _heavy_ball_update(
    hp: Hyper,
    ctx: StepContext,
    params: list[Any],
    grads: list[Any],
    state: MomentumState,
    loss: Any,
) -> tuple[list[Any], dict[str, Any]]:
    eta, beta = ctx.hp(hp["lr"]), ctx.hp(hp["momentum"])
    ctx.share([eta, beta], params)
    vel = [
        _heavy_ball_velocity(v, g, ctx.leaf(eta, g), ctx.leaf(beta, v))
        for v, g in zip(state.previous, grads, strict=True)
    ]
    # map: one leaf per velocity by construction (no zip(strict=True) check, 0.5 us of a dim-10
    # step: benchmarks/bench_ecd.py, section small).
    new = list(map(operator.add, params, vel))
    return new, {"previous": tuple(vel)}


def _heavy_ball_velocity(v: Any, g: Any, eta: Any, beta: Any) -> Any:
    return beta * v - eta * g


def _heavy_ball_small(
    hp: Hyper, p: Any, g: Any, state: MomentumState, loss: Any
) -> tuple[Any, tuple]:
    vel = _heavy_ball_velocity(state.previous[0], g, hp["lr"], hp["momentum"])
    return p + vel, ((vel,),)


def heavy_ball(lr: Any = 0.01, momentum: Any = 0.9) -> Optimizer:
    r"""Polyak's heavy-ball momentum.

    .. math::

        v_{k+1} = \beta v_k - \eta g_k, \qquad \theta_{k+1} = \theta_k + v_{k+1},

    i.e. :math:`\theta_{k+1} = \theta_k - \eta g_k + \beta(\theta_k - \theta_{k-1})` with
    :math:`v_0 = 0` (the first step is a gradient step). On a quadratic of curvature :math:`k`
    it is stable iff :math:`0 \le \beta < 1` and :math:`\eta < 2(1+\beta)/k` (Polyak 1964).

    Parameters
    ----------
    lr : float, per-run array or schedule
        Step size :math:`\eta \ge 0` (default 0.01; 0 from the start leaves the parameters in
        place, mid-run it stops the force while the velocity decays with :math:`\beta`).
    momentum : float or per-run array
        :math:`\beta \in [0, 1)` (default 0.9, the usual deep-learning value).
    """
    return Optimizer(
        "heavy_ball",
        {"lr": _lr(lr), "momentum": _momentum(momentum)},
        init=_zeros_previous,
        update=_heavy_ball_update,
        state_type=MomentumState,
        elementwise=True,
        small=_heavy_ball_small,
    )


def _zeros_velocity(hp: Hyper, ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
    return {"velocity": ctx.zeros_like(leaves)}


def _nesterov_update(
    hp: Hyper,
    ctx: StepContext,
    params: list[Any],
    grads: list[Any],
    state: NesterovState,
    loss: Any,
) -> tuple[list[Any], dict[str, Any]]:
    eta, alpha = ctx.hp(hp["lr"]), ctx.hp(hp["momentum"])
    ctx.share([eta, alpha], params)
    new, vel = [], []
    for y, g, v in zip(params, grads, state.velocity, strict=True):
        y, v = _nesterov_leaf(y, g, v, ctx.leaf(eta, g), ctx.leaf(alpha, v))
        new.append(y)
        vel.append(v)
    return new, {"velocity": tuple(vel)}


def _nesterov_leaf(y: Any, g: Any, v: Any, eta: Any, alpha: Any) -> tuple[Any, Any]:
    d = eta * g  # η g, formed once for both updates
    v = alpha * v - d
    return y + alpha * v - d, v


def _nesterov_small(
    hp: Hyper, y: Any, g: Any, state: NesterovState, loss: Any
) -> tuple[Any, tuple]:
    y, v = _nesterov_leaf(y, g, state.velocity[0], hp["lr"], hp["momentum"])
    return y, ((v,),)


def nesterov(lr: Any = 0.01, momentum: Any = 0.9) -> Optimizer:
    r"""Nesterov's accelerated gradient in the form of Yang et al. (2018), Eq. 2.1.

    .. math::

        x_{k+1} = y_k - \eta \nabla f(y_k), \qquad y_{k+1} = x_{k+1} + \alpha (x_{k+1} - x_k).

    ``params`` are the points :math:`y_k` where the gradient is evaluated, starting from
    :math:`x_0 = y_0` (Nesterov 1983), so the first step lands at
    :math:`y_1 = y_0 - (1+\alpha)\eta\nabla f(y_0)`.

    The step is computed in Sutskever's velocity form (Sutskever, Martens, Dahl & Hinton, ICML
    2013, Eq. 3-4, written for the look-ahead point): with :math:`v_k = x_k - x_{k-1}`
    (:math:`v_0 = 0`), :math:`x_k = y_k - \alpha v_k`, and Eq. 2.1 becomes

    .. math::

        v_{k+1} = \alpha v_k - \eta \nabla f(y_k), \qquad
        y_{k+1} = y_k + \alpha v_{k+1} - \eta \nabla f(y_k),

    the same sequence :math:`y_k` up to rounding. :class:`NesterovState` keeps :math:`v_k`.
    This form reads :math:`(y_k, v_k, g_k)` and writes :math:`(y_{k+1}, v_{k+1})` with no
    circular dependency between the buffers, so a donated, compiled step (``jax.jit`` with
    ``donate_argnums``) updates both in place; with :math:`x_k` as the state, each output's
    buffer is read by the other output's formula and XLA inserts two full-array copies. It is
    the update of ``optax.sgd(nesterov=True)`` and ``torch.optim.SGD(nesterov=True)`` with
    velocity :math:`-\eta \times` their trace (for a constant :math:`\eta`; torch's
    dampening 0).

    Parameters
    ----------
    lr : float, per-run array or schedule
        Step size :math:`\eta \ge 0` (default 0.01; 0 from the start leaves the parameters in
        place).
    momentum : float or per-run array
        :math:`\alpha \in [0, 1)` (default 0.9). For a :math:`\mu`-strongly convex problem
        Yang et al. (Sec. 3.2) use :math:`\alpha = (1-\sqrt{\mu\eta})/(1+\sqrt{\mu\eta})`.
    """
    return Optimizer(
        "nesterov",
        {"lr": _lr(lr), "momentum": _momentum(momentum)},
        init=_zeros_velocity,
        update=_nesterov_update,
        state_type=NesterovState,
        elementwise=True,
        small=_nesterov_small,
    )


def _adam_init(hp: Hyper, ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
    return {"mu": ctx.zeros_like(leaves), "rms": ctx.zeros_like(leaves)}


def _adam_update(
    hp: Hyper, ctx: StepContext, params: list[Any], grads: list[Any], state: AdamState, loss: Any
) -> tuple[list[Any], dict[str, Any]]:
    xp = ctx.xp
    eta, b1, b2, eps = (ctx.hp(hp[k]) for k in ("lr", "b1", "b2", "eps"))
    t = ctx.t + 1.0
    # Bias corrections per run, in the compute dtype (float32 for half-precision parameters:
    # in bfloat16 0.999 rounds to 1 and 1 - b2**t is 0); cast where they meet a leaf.
    c1 = 1.0 - b1**t
    c2 = 1.0 - b2**t
    # sqrt(v_t) = hypot(sqrt(β₂) sqrt(v_{t-1}), sqrt(1-β₂) |g|): no g² (no overflow).
    sb2, sb2c = b2**0.5, (1.0 - b2) ** 0.5
    # η m̂/(sqrt(v̂) + ε) = (η sqrt(c₂)/c₁) m/(sqrt(v) + ε sqrt(c₂)): the bias corrections
    # folded into two per-run scalars, so an element pays one division here, not two.
    # Each per-run scalar is formed once, outside the loop over leaves, and shared by them.
    c2s = c2**0.5
    scale, floor = eta * c2s / c1, eps * c2s
    ctx.share([b1, sb2, sb2c, scale, floor], params)
    mu, rms, new = [], [], []
    for p, g, m, r in zip(params, grads, state.mu, state.rms, strict=True):
        b1l = ctx.leaf(b1, g)
        m = b1l * m + (1.0 - b1l) * g
        r = hypot(xp, ctx.leaf(sb2, r) * r, ctx.leaf(sb2c, g) * xp.abs(g))
        den = r + ctx.leaf(floor, r)
        if r.dtype != ctx.compute_dtype:
            # float16/bfloat16: ε√c₂ (1e-8 by default) rounds to 0 in the leaf, and an element
            # whose gradients were all 0 has m = r = 0: its step is 0, not 0/0 = NaN (which
            # torch.optim.Adam gives in float16). Wider dtypes keep ε > 0 and skip the select.
            den = xp.where(den > 0, den, xp.ones_like(den))
        step = ctx.leaf(scale, p) * m / den
        mu.append(m)
        rms.append(r)
        new.append(p - step)
    return new, {"mu": tuple(mu), "rms": tuple(rms)}


def adam(lr: Any = 1e-3, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8) -> Optimizer:
    r"""Adam (Kingma & Ba, ICLR 2015, Algorithm 1), with bias correction.

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \\
        \hat m_t = m_t/(1-\beta_1^t), \quad \hat v_t = v_t/(1-\beta_2^t), \quad
        \theta_t = \theta_{t-1} - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon),

    with :math:`t` counted from 1 and :math:`m_0 = v_0 = 0`. :math:`\epsilon` is added outside
    the square root, as in the paper's Algorithm 1 (PyTorch's and optax's placement; TF1 differs).
    Under a constant gradient the bias-corrected moments equal :math:`g` and :math:`g^2` from the
    first step (the reason for the correction, Kingma & Ba Sec. 3). The corrections enter
    through two per-run scalars, :math:`\theta_t = \theta_{t-1} - a_t\, m_t /
    (\sqrt{v_t} + b_t)` with :math:`a_t = \eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)` and
    :math:`b_t = \epsilon\sqrt{1-\beta_2^t}` (the same step; an element pays one division
    for it, not the two of :math:`\hat m/(\sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon)`), computed
    per run from the count array in the compute dtype (``result_type(param dtype, float32)``,
    ``docs/precision.md``), then cast.

    The state keeps :math:`\sqrt{v_t}` (``rms``), updated as
    :math:`\sqrt{v_t} = \operatorname{hypot}(\sqrt{\beta_2}\sqrt{v_{t-1}},
    \sqrt{1-\beta_2}\,|g_t|)`: the same number up to rounding, but no :math:`g^2` is formed,
    so gradients up to ``finfo.max`` in float32 (:math:`g^2` overflows from about 1.8e19) still
    move the parameters by about :math:`\eta` per step, compiled or not. The price: on NumPy
    eager ``np.hypot`` is a slower pass than :math:`\sqrt{\beta_2 v + (1-\beta_2) g^2}`
    (72 ms against 35 ms at 1e7 float32 on one core here). Inside ``torch.compile`` the scaled
    form of :func:`physopt_ref.core.numerics.hypot` fuses into the step's one loop, where an
    element pays two divisions and one square root, as in torch's fused Adam, plus the
    max/min/select of the scaled form. On the MLP of ``benchmarks/bench_adapters.py`` (2.4 M
    float32 parameters, one thread, ``--clock cpu --parts``) the compiled step called past
    Dynamo (as the torch adapter calls it) took 1.01x torch's fused Adam with Python-float
    hyperparameters and 1.14x with 0-d tensor ones (through Dynamo at every call: 1.17x and
    1.32x); the plain, overflowing form saved 0.23-0.45 ms of about 2.6 at an earlier stage
    (``docs/frameworks.md``).

    In float16 :math:`\epsilon = 10^{-8}` rounds to 0 in the leaf: an element whose gradients
    have all been 0 (:math:`m = \sqrt{v} = 0`) steps by 0 there instead of 0/0 (a select on
    float16/bfloat16 leaves only; ``torch.optim.Adam`` gives NaN for it).

    Parameters
    ----------
    lr : float, per-run array or schedule
        :math:`\eta \ge 0` (0: no step; nothing divides by it); default 1e-3 (Kingma & Ba,
        Algorithm 1).
    b1, b2 : float or per-run array
        :math:`\beta_1, \beta_2 \in [0, 1)`; defaults 0.9 and 0.999 (ibid.).
    eps : float or per-run array
        :math:`\epsilon \ge 0`; default 1e-8 (ibid.).
    """
    hp = {
        "lr": _lr(lr),
        "b1": check_real("b1", b1, symbol="β₁", low=0.0, high=1.0, high_open=True, per_run=True),
        "b2": check_real("b2", b2, symbol="β₂", low=0.0, high=1.0, high_open=True, per_run=True),
        "eps": check_real("eps", eps, symbol="ε", low=0.0, per_run=True),
    }
    return Optimizer(
        "adam", hp, init=_adam_init, update=_adam_update, state_type=AdamState, elementwise=True
    )


register(
    "sgd", sgd, test_hyperparameters={"lr": 0.1}, family="classic", sweep={"lr": (0.05, 0.1, 0.2)}
)
register(
    "heavy_ball",
    heavy_ball,
    test_hyperparameters={"lr": 0.1, "momentum": 0.8},
    family="classic",
    sweep={"lr": (0.05, 0.1, 0.2), "momentum": (0.0, 0.5, 0.9)},
)
register(
    "nesterov",
    nesterov,
    test_hyperparameters={"lr": 0.1, "momentum": 0.8},
    family="classic",
    sweep={"lr": (0.05, 0.1, 0.2), "momentum": (0.0, 0.5, 0.9)},
)
register(
    "adam",
    adam,
    test_hyperparameters={"lr": 0.05},
    family="classic",
    sweep={"lr": (0.01, 0.05, 0.1), "b1": (0.0, 0.5, 0.9), "b2": (0.9, 0.99, 0.999)},
)
