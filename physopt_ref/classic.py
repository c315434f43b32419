r"""Classic first-order optimizers on the physopt_ref contract: SGD, heavy ball, Nesterov, Adam.

These are the baselines of every comparison and, in the damped-oscillator view
(:mod:`physopt_ref.oscillator`; Yang, Arora, Braverman & Zhao, NeurIPS 2018, arXiv 1612.02803),
particles with mass and friction: plain gradient descent is the massless, over-damped particle;
heavy ball and Nesterov carry the mass :math:`m = (1+\alpha)h^2/(2\eta)` and damping
:math:`c = (1-\alpha)h/\eta` (Yang et al. Eq. 2.5).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._base import Optimizer, evaluate, prepare_init, prepare_step, register
from ._tree import tree_unflatten
from ._validate import check_real, check_real_or_schedule

__all__ = ["AdamState", "MomentumState", "SGDState", "adam", "heavy_ball", "nesterov", "sgd"]


class SGDState(NamedTuple):
    """State of :func:`sgd`: only the static step count and ensemble rank."""

    count: int
    batch_ndim: int


class MomentumState(NamedTuple):
    """State of :func:`heavy_ball` and :func:`nesterov`.

    ``previous`` holds, per leaf, the velocity :math:`v_k` (heavy ball) or the previous
    gradient-step point :math:`x_{k}` (Nesterov).
    """

    count: int
    batch_ndim: int
    previous: tuple[Any, ...]


class AdamState(NamedTuple):
    """State of :func:`adam`: first and second moment estimates per leaf (not bias-corrected)."""

    count: int
    batch_ndim: int
    mu: tuple[Any, ...]
    nu: tuple[Any, ...]


def _lr(value: Any) -> Any:
    return check_real_or_schedule("lr", value, symbol="η", low=0.0, low_open=True)


def sgd(lr: Any = 0.01) -> Optimizer:
    r"""Gradient descent, :math:`\theta_{k+1} = \theta_k - \eta\, g_k`.

    In the damped-oscillator view it is the massless particle :math:`c\dot X + \nabla f = 0`
    (Yang et al. 2018, Sec. 2.1, :math:`\alpha = 0`). On a quadratic of curvature :math:`k` it is
    stable iff :math:`\eta < 2/k`.

    Parameters
    ----------
    lr : float or schedule
        Step size :math:`\eta > 0`; a callable ``count -> float`` is a schedule. Default 0.01
        (a conventional value; the paper fixes none).
    """
    lr = _lr(lr)

    def init(params: Any, *, batch_ndim: int = 0) -> SGDState:
        prepare_init(params, batch_ndim)
        return SGDState(0, batch_ndim)

    def step(params: Any, grads: Any, state: SGDState, *, loss: Any = None) -> tuple[Any, SGDState]:
        del loss
        s = prepare_step(params, grads, state.batch_ndim)
        eta = evaluate(lr, state.count)
        new = [p - eta * g for p, g in zip(s.params, s.grads, strict=True)]
        return tree_unflatten(s.treedef, new), SGDState(state.count + 1, state.batch_ndim)

    return Optimizer("sgd", init, step, {"lr": lr})


def _momentum(value: Any) -> float:
    return check_real("momentum", value, symbol="β", low=0.0, high=1.0, high_open=True)


def heavy_ball(lr: Any = 0.01, momentum: float = 0.9) -> Optimizer:
    r"""Polyak's heavy-ball momentum.

    .. math::

        v_{k+1} = \beta v_k - \eta g_k, \qquad \theta_{k+1} = \theta_k + v_{k+1},

    i.e. :math:`\theta_{k+1} = \theta_k - \eta g_k + \beta(\theta_k - \theta_{k-1})` with
    :math:`v_0 = 0` (the first step is a gradient step). On a quadratic of curvature :math:`k`
    it is stable iff :math:`0 \le \beta < 1` and :math:`\eta < 2(1+\beta)/k` (Polyak 1964).

    Parameters
    ----------
    lr : float or schedule
        Step size :math:`\eta > 0` (default 0.01).
    momentum : float
        :math:`\beta \in [0, 1)` (default 0.9, the usual deep-learning value).
    """
    lr = _lr(lr)
    beta = _momentum(momentum)

    def init(params: Any, *, batch_ndim: int = 0) -> MomentumState:
        xp, leaves, _ = prepare_init(params, batch_ndim)
        return MomentumState(0, batch_ndim, tuple(xp.zeros_like(p) for p in leaves))

    def step(
        params: Any, grads: Any, state: MomentumState, *, loss: Any = None
    ) -> tuple[Any, MomentumState]:
        del loss
        s = prepare_step(params, grads, state.batch_ndim)
        eta = evaluate(lr, state.count)
        vel = [beta * v - eta * g for v, g in zip(state.previous, s.grads, strict=True)]
        new = [p + v for p, v in zip(s.params, vel, strict=True)]
        return tree_unflatten(s.treedef, new), MomentumState(
            state.count + 1, state.batch_ndim, tuple(vel)
        )

    return Optimizer("heavy_ball", init, step, {"lr": lr, "momentum": beta})


def nesterov(lr: Any = 0.01, momentum: float = 0.9) -> Optimizer:
    r"""Nesterov's accelerated gradient in the form of Yang et al. (2018), Eq. 2.1.

    .. math::

        x_{k+1} = y_k - \eta \nabla f(y_k), \qquad y_{k+1} = x_{k+1} + \alpha (x_{k+1} - x_k).

    ``params`` are the points :math:`y_k` where the gradient is evaluated; the state keeps
    :math:`x_k`, initialised to the starting point :math:`x_0 = y_0` (Nesterov 1983), so the
    first step lands at :math:`y_1 = y_0 - (1+\alpha)\eta\nabla f(y_0)`.

    Parameters
    ----------
    lr : float or schedule
        Step size :math:`\eta > 0` (default 0.01).
    momentum : float
        :math:`\alpha \in [0, 1)` (default 0.9). For a :math:`\mu`-strongly convex problem
        Yang et al. (Sec. 3.2) use :math:`\alpha = (1-\sqrt{\mu\eta})/(1+\sqrt{\mu\eta})`.
    """
    lr = _lr(lr)
    alpha = _momentum(momentum)

    def init(params: Any, *, batch_ndim: int = 0) -> MomentumState:
        xp, leaves, _ = prepare_init(params, batch_ndim)
        return MomentumState(0, batch_ndim, tuple(xp.asarray(p, copy=True) for p in leaves))

    def step(
        params: Any, grads: Any, state: MomentumState, *, loss: Any = None
    ) -> tuple[Any, MomentumState]:
        del loss
        s = prepare_step(params, grads, state.batch_ndim)
        eta = evaluate(lr, state.count)
        x_new = [y - eta * g for y, g in zip(s.params, s.grads, strict=True)]
        y_new = [x + alpha * (x - x0) for x, x0 in zip(x_new, state.previous, strict=True)]
        return tree_unflatten(s.treedef, y_new), MomentumState(
            state.count + 1, state.batch_ndim, tuple(x_new)
        )

    return Optimizer("nesterov", init, step, {"lr": lr, "momentum": alpha})


def adam(lr: Any = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    r"""Adam (Kingma & Ba, ICLR 2015, Algorithm 1), with bias correction.

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \\
        \hat m_t = m_t/(1-\beta_1^t), \quad \hat v_t = v_t/(1-\beta_2^t), \quad
        \theta_t = \theta_{t-1} - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon),

    with :math:`t` counted from 1 and :math:`m_0 = v_0 = 0`. :math:`\epsilon` is added outside
    the square root, as in the paper's Algorithm 1 (PyTorch's and optax's placement; TF1 differs).
    Under a constant gradient the bias-corrected moments equal :math:`g` and :math:`g^2` from the
    first step (the reason for the correction, Kingma & Ba Sec. 3).

    Parameters
    ----------
    lr : float or schedule
        :math:`\eta > 0`; default 1e-3 (Kingma & Ba, Algorithm 1).
    b1, b2 : float
        :math:`\beta_1, \beta_2 \in [0, 1)`; defaults 0.9 and 0.999 (ibid.).
    eps : float
        :math:`\epsilon \ge 0`; default 1e-8 (ibid.).
    """
    lr = _lr(lr)
    b1 = check_real("b1", b1, symbol="β₁", low=0.0, high=1.0, high_open=True)
    b2 = check_real("b2", b2, symbol="β₂", low=0.0, high=1.0, high_open=True)
    eps = check_real("eps", eps, symbol="ε", low=0.0)

    def init(params: Any, *, batch_ndim: int = 0) -> AdamState:
        xp, leaves, _ = prepare_init(params, batch_ndim)
        zeros = tuple(xp.zeros_like(p) for p in leaves)
        return AdamState(0, batch_ndim, zeros, zeros)

    def step(
        params: Any, grads: Any, state: AdamState, *, loss: Any = None
    ) -> tuple[Any, AdamState]:
        del loss
        s = prepare_step(params, grads, state.batch_ndim)
        xp = s.xp
        t = state.count + 1
        eta = evaluate(lr, state.count)
        # Bias corrections in Python float64 (exact enough, and free of device syncs).
        c1 = 1.0 - b1**t
        c2 = 1.0 - b2**t
        mu = tuple(b1 * m + (1.0 - b1) * g for m, g in zip(state.mu, s.grads, strict=True))
        nu = tuple(b2 * v + (1.0 - b2) * (g * g) for v, g in zip(state.nu, s.grads, strict=True))
        new = [
            p - eta * (m / c1) / (xp.sqrt(v / c2) + eps)
            for p, m, v in zip(s.params, mu, nu, strict=True)
        ]
        return tree_unflatten(s.treedef, new), AdamState(t, state.batch_ndim, mu, nu)

    return Optimizer("adam", init, step, {"lr": lr, "b1": b1, "b2": b2, "eps": eps})


register("sgd", sgd, test_hyperparameters={"lr": 0.1}, family="classic")
register(
    "heavy_ball", heavy_ball, test_hyperparameters={"lr": 0.1, "momentum": 0.8}, family="classic"
)
register("nesterov", nesterov, test_hyperparameters={"lr": 0.1, "momentum": 0.8}, family="classic")
register("adam", adam, test_hyperparameters={"lr": 0.05}, family="classic")
