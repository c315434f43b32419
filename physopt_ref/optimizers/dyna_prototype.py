"""The Adam-based prototype of Dyna (Han 2018, Sec. 4.3, Eq. 21), an optimizer of its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from physopt_ref.core.context import StepContext
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.registry import register
from physopt_ref.core.schedules import check_real_or_schedule
from physopt_ref.core.validate import check_real
from physopt_ref.optimizers.dyna import _zeta

Hyper = Mapping[str, Any]

__all__ = ["DynaPrototypeState", "dyna_prototype"]


class DynaPrototypeState(NamedTuple):
    r"""State of :func:`dyna_prototype` (Sec. 4.3, Eq. 21).

    Attributes
    ----------
    count : array
        Steps taken by each run (``int32``, batch shape).
    v : tuple of arrays
        :math:`v_t = \beta_1 v_{t-1} + (1-\beta_1)|g_t|` per leaf (Adam's second-moment slot).
    m : tuple of arrays
        :math:`m_t` per leaf (Adam's first-moment slot), the damped velocity.
    """

    count: Any
    v: tuple[Any, ...]
    m: tuple[Any, ...]


# ---------------------------------------------------------------------------------------------
# Prototype (Sec. 4.3)


def dyna_prototype(
    lr: Any = 1e-3, b1: float = 0.9, b2: Any = 0.999, eps: float = 1e-8
) -> Optimizer:
    r"""The Adam-based prototype of Dyna (Sec. 4.3, Eq. 21), read with :math:`\beta_1 m_{t-1}`.

    Adam's last five loop lines replaced by (per element, :math:`t` from 1,
    :math:`v_0 = m_0 = 0`)

    .. math::

        v_t &= \beta_1 v_{t-1} + (1-\beta_1)\,|g_t| \\
        \hat v_t &= \sqrt{v_t/(1-\beta_1^t)} + \epsilon \\
        m_t &= \beta_1 m_{t-1} + \frac{1-\beta_1}{2\beta_2}\,\frac{g_t}{\hat v_t} \\
        \hat m_t &= m_t/(1-\beta_1^t) \\
        \theta_t &= \theta_{t-1} - \alpha\,\hat m_t/\hat v_t,

    where :math:`\beta_2` is the damping ratio :math:`\zeta` ("in which :math:`\beta_2` is used
    as the damping ratio that defaults :math:`\zeta = 0.999`"). With the :math:`\beta_1
    m_{t-1}` reading this is exactly :func:`dyna` with :math:`\beta = \beta_1`,
    :math:`\zeta = \beta_2`, :math:`2\gamma/n = \alpha` and :math:`m = -v` (the bias correction
    :math:`1-\beta_1^t` is :math:`\mu_t`, Eq. 19); the tests check that identity.

    Parameters
    ----------
    lr : float, per-run array or schedule
        :math:`\alpha \ge 0` (0: no step; :math:`\epsilon` keeps its open range, it divides);
        default :math:`10^{-3}`, Adam's default (Kingma & Ba, Algorithm 1),
        which the prototype keeps since it only replaces Adam's loop lines. The paper's MNIST
        run uses :math:`\alpha = 0.00255 = 2/784`, i.e. :math:`2\gamma/n` with :math:`n = 784`
        (Sec. 5).
    b1 : float or per-run array
        :math:`\beta_1 \in [0, 1)`; default 0.9 (Adam's default; Sec. 5 uses 0.9).
    b2 : float, per-run array or schedule
        :math:`\beta_2 = \zeta \in (0, 2]`; default 0.999 (Sec. 4.3). Sec. 5 also runs 1.0, 0.5
        and the ramp of Eq. 22 (:func:`damping_ramp`).
    eps : float
        :math:`\epsilon > 0`; default :math:`10^{-8}` (Adam's default; the role of
        :math:`\hat\omega_\epsilon`). Positive, so that an always-zero gradient gives no 0/0.

    Differences from the authors' code
    ----------------------------------
    The paper's prototype lived in a modified copy of ``adam::update`` in Bondarenko's
    ``ml-mnist`` (Sec. 5), not released. Decisions: :math:`\beta_1 m_{t-1}` in the :math:`m_t`
    line (Eq. 21 prints :math:`\beta_1 v_{t-1}`, a typo: it would feed the :math:`|g|` average
    into the momentum); no restart (its total weight is the closed form :math:`1-\beta_1^t`;
    use :func:`dyna` with :func:`dyna_restart` for that).
    """
    hp = {
        "lr": check_real_or_schedule("lr", lr, symbol="α", low=0.0),
        "b1": check_real("b1", b1, symbol="β₁", low=0.0, high=1.0, high_open=True, per_run=True),
        "b2": _zeta(b2, "b2", "β₂ = ζ"),
        "eps": check_real("eps", eps, symbol="ε", low=0.0, low_open=True, per_run=True),
    }
    return Optimizer(
        "dyna_prototype",
        hp,
        init=_prototype_init,
        update=_prototype_update,
        state_type=DynaPrototypeState,
        elementwise=True,
    )


def _prototype_init(hp: Hyper, ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
    return {"v": ctx.zeros_like(leaves), "m": ctx.zeros_like(leaves)}


def _prototype_update(
    hp: Hyper,
    ctx: StepContext,
    params: list[Any],
    grads: list[Any],
    state: DynaPrototypeState,
    loss: Any,
) -> tuple[list[Any], dict[str, Any]]:
    xp = ctx.xp
    alpha, b1, zeta, eps = (ctx.hp(hp[k]) for k in ("lr", "b1", "b2", "eps"))
    correction = 1.0 - b1 ** (ctx.t + 1.0)  # per run, in the compute dtype
    kick = (1.0 - b1) / (2.0 * zeta)
    new_p, new_v, new_m = [], [], []
    for p, g, v, m in zip(params, grads, state.v, state.m, strict=True):
        b, c = ctx.leaf(b1, g), ctx.leaf(correction, g)
        v = b * v + (1.0 - b) * xp.abs(g)
        v_hat = xp.sqrt(v / c) + ctx.leaf(eps, g)
        m = b * m + ctx.leaf(kick, g) * (g / v_hat)
        new_p.append(p - ctx.leaf(alpha, p) * ((m / c) / v_hat))
        new_v.append(v)
        new_m.append(m)
    return new_p, {"v": tuple(new_v), "m": tuple(new_m)}


register(
    "dyna_prototype",
    dyna_prototype,
    test_hyperparameters={"lr": 0.1, "b1": 0.8, "b2": 0.6, "eps": 1e-8},
    family="dyna",
    sweep={"lr": (0.05, 0.1, 0.2), "b1": (0.5, 0.8, 0.9), "b2": (0.5, 1.0, 2.0)},
)
