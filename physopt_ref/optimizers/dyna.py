r"""Dyna (Han 2018, arXiv 1805.04933): momentum from damped Newtonian dynamics.

Dyna adapts the dynamic relaxation of explicit finite-element codes
(:mod:`physopt_ref.optimizers.dynamic_relaxation`, Secs. 2.2–2.3) to stochastic gradients (Sec. 3):
every
parameter gets a *fictitious mass* such that its angular-frequency estimate is
:math:`\hat\omega = \sqrt{\mathbb E|g|}` (Eqs. 11–12), the velocity is the damped
central-difference update of Eq. 9 with :math:`\omega x \to g/\hat\omega`, and the time step is
:math:`h = 2/\hat\omega` rescaled by the layer's number of inputs :math:`n` (Sec. 3.3).

Contents

- :func:`dyna` — Algorithm 1 (Eqs. 13–18), :class:`DynaState`;
- :func:`dyna_prototype` — the Adam-based prototype of Sec. 4.3 (Eq. 21),
  :class:`DynaPrototypeState`;
- :func:`damping_ramp` — the varying damping ratio of Eq. 22 as a schedule;
- :func:`dyna_restart`, :func:`dyna_warm_restart` — restart of Sec. 4.1 on a :class:`DynaState`;
- :func:`default_fan_in`, :func:`resolve_fan_in` — the per-layer :math:`n` of
  :math:`\alpha = 2\gamma/n`.

Typo decisions (project spec ``coolmomentum-gravity-dyna-yang.md`` §c, read-first box)

1. Algorithm 1 writes the normalised velocity as :math:`\hat v_t \leftarrow v_t/\mu^t`; Eq. 17
   (and Sec. 4.1, "share the same synchronous total weight") has :math:`v_t/\mu_t`. We use
   :math:`\mu_t`: with :math:`\mu_t = 1-\beta^t \in (0, 1]`, :math:`\mu^t` would be a power of a
   number below one and blow the step up geometrically.
2. Eq. 16 prints :math:`+\,(1-\beta)/(2\zeta)\, e/\hat\omega_t`; Algorithm 1 and Eq. 9 (the
   physics, :math:`\omega x` is a restoring force) carry a minus sign. We use the minus sign:
   with :math:`v_0 = 0` the first step is :math:`-(\text{positive})\cdot g` (descent).
3. In the prototype (Eq. 21) the line :math:`m_t \leftarrow \beta_1 v_{t-1} + \dots` mixes the
   :math:`|g|` average :math:`v` into the momentum; we read :math:`\beta_1 m_{t-1}`, which makes
   the prototype Algorithm 1 itself (see :func:`dyna_prototype`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from array_api_compat import array_namespace

from physopt_ref.core.context import StepContext, prepare_init
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.registry import register
from physopt_ref.core.schedules import DampingRamp, check_real_or_schedule, damping_ramp
from physopt_ref.core.tree import TreeDef, expand_to_leaf, tree_flatten, tree_unflatten
from physopt_ref.core.validate import check_int, check_real

Hyper = Mapping[str, Any]

__all__ = [
    "DampingRamp",
    "DynaState",
    "damping_ramp",
    "default_fan_in",
    "dyna",
    "dyna_restart",
    "dyna_warm_restart",
    "resolve_fan_in",
]


# ---------------------------------------------------------------------------------------------
# States


class DynaState(NamedTuple):
    r"""State of :func:`dyna` (Algorithm 1).

    Attributes
    ----------
    count : array
        Steps taken by each run (``int32``, batch shape; Algorithm 1's :math:`t` after the
        step).
    eta : tuple of arrays
        :math:`\eta_t` per leaf, the moving average of :math:`|g|` ("squared angular frequency
        estimate", Eq. 13), not normalised.
    velocity : tuple of arrays
        :math:`v_t` per leaf (Eq. 16 with Algorithm 1's sign), not normalised; the normalised
        velocity is :math:`\hat v_t = v_t/\mu_t` (Eq. 17).
    mu : tuple of arrays
        :math:`\mu_t` per leaf ("total weight", Eq. 14), one value per run: arrays of the batch
        shape. Without restarts :math:`\mu_t = 1 - \beta^t` (Eq. 19).
    omega : tuple of arrays
        :math:`\hat\omega_t = \sqrt{\eta_t/\mu_t} + \hat\omega_\epsilon` per leaf (Eq. 15) of the
        last step (zeros before the first step). Read-only information; the recursion does not
        use it.
    """

    count: Any
    eta: tuple[Any, ...]
    velocity: tuple[Any, ...]
    mu: tuple[Any, ...]
    omega: tuple[Any, ...]


# ---------------------------------------------------------------------------------------------
# Fan-in (the n of alpha = 2 gamma / n)

FanIn = None | int | Callable[[tuple[int, ...]], int] | Sequence[Any] | dict[str, Any]


def default_fan_in(event_shape: Sequence[int]) -> int:
    r"""The default number of inputs :math:`n` of a leaf with the given (event) shape.

    - a scalar, shape ``()``: :math:`n = 1`;
    - a vector, shape ``(d,)``: :math:`n = d`;
    - otherwise a weight tensor laid out ``(..., n_in, n_out)`` (JAX/Flax layout; a convolution
      kernel ``(kh, kw, c_in, c_out)``): :math:`n = \prod` of all axes but the last.

    Why a vector gets :math:`n = d`: the paper's only experiment (Sec. 5, logistic regression on
    MNIST) uses :math:`\alpha = 2/784`, with 784 the length of the input vector that each
    class's weight vector multiplies. A plain parameter vector is read as the weights of one
    neuron, i.e. the ``(d, 1)`` matrix, consistent with the matrix rule. Sec. 3.3's rescaling
    "h to h/n" then bounds the L1 length of a whole step of the vector by :math:`2\gamma` at the
    first step (Eq. 20), the "one upper bound" of the abstract.

    Biases are the case the default cannot see: in the paper's experiment the bias shares the
    weight's :math:`\alpha = 2/784` (one global learning rate), whereas this rule gives a bias
    of length 10 :math:`n = 10`. Pass ``fan_in`` explicitly (a tree of ints) for biases and
    for PyTorch-layout weights ``(n_out, n_in, ...)``, whose fan-in is not the product of the
    leading axes.
    """
    shape = tuple(int(s) for s in event_shape)
    if not shape:
        return 1
    if len(shape) == 1:
        return max(shape[0], 1)
    return max(math.prod(shape[:-1]), 1)


def _check_fan_in(fan_in: Any) -> Any:
    """Build-time validation of ``fan_in``; returns it (ints as Python ints)."""
    if fan_in is None or callable(fan_in):
        return fan_in
    if isinstance(fan_in, int) and not isinstance(fan_in, bool):
        return check_int("fan_in", fan_in, symbol="n", low=1)
    if isinstance(fan_in, list | tuple | dict):
        leaves, treedef = tree_flatten(fan_in)
        checked = [check_int("fan_in", n, symbol="n", low=1) for n in leaves]
        return tree_unflatten(treedef, checked)
    raise TypeError(
        "fan_in (n) must be None, a positive int, a tree of positive ints matching the "
        f"parameters, or a callable event_shape -> int; got {type(fan_in).__name__}"
    )


def _fan_ins(
    fan_in: Any, shapes: Sequence[tuple[int, ...]], treedef: TreeDef | None
) -> list[int]:
    """One :math:`n` per leaf of the tree, in leaf order, from the leaves' event shapes."""
    if fan_in is None:
        return [default_fan_in(s) for s in shapes]
    if isinstance(fan_in, int):
        return [fan_in] * len(shapes)
    if callable(fan_in):
        return [check_int("fan_in(event_shape)", fan_in(s), symbol="n", low=1) for s in shapes]
    n_leaves, n_def = tree_flatten(fan_in)
    if n_def != treedef:
        raise ValueError(f"fan_in must have the structure of the parameters: {n_def} vs {treedef}")
    return list(n_leaves)


def resolve_fan_in(params: Any, fan_in: FanIn = None, *, batch_ndim: int = 0) -> Any:
    """The per-leaf :math:`n` that :func:`dyna` uses, as a tree shaped like ``params``.

    Useful to log and check the per-layer table (spec §c.2, point 4).
    """
    fan_in = _check_fan_in(fan_in)
    _, leaves, treedef = prepare_init(params, batch_ndim)
    shapes = [tuple(leaf.shape[batch_ndim:]) for leaf in leaves]
    return tree_unflatten(treedef, _fan_ins(fan_in, shapes, treedef))


# ---------------------------------------------------------------------------------------------
# Damping ramp (Eq. 22)


# ---------------------------------------------------------------------------------------------
# Algorithm 1


def _zeta(value: Any, name: str = "zeta", symbol: str = "ζ") -> Any:
    return check_real_or_schedule(name, value, symbol=symbol, low=0.0, high=2.0, low_open=True)


def dyna(
    gamma: Any = 1.0,
    beta: float = 0.9,
    zeta: Any = 1.0,
    omega_eps: float = 1e-8,
    fan_in: FanIn = None,
) -> Optimizer:
    r"""Dyna, Algorithm 1 of Han (2018): a momentum optimizer from dynamic relaxation.

    Per leaf ("layer" :math:`l`) and element, with :math:`t` counted from 1 and
    :math:`\eta_0 = v_0 = \mu_0 = 0`:

    .. math::

        \eta_t &= \beta\,\eta_{t-1} + (1-\beta)\,|g_t|
            && \text{(Eq. 13, squared angular-frequency estimate)} \\
        \mu_t &= \beta\,\mu_{t-1} + (1-\beta)
            && \text{(Eq. 14, total weight; } = 1-\beta^t \text{, Eq. 19)} \\
        \hat\omega_t &= \sqrt{\eta_t/\mu_t} + \hat\omega_\epsilon && \text{(Eq. 15)} \\
        v_t &= \beta\,v_{t-1} - \frac{1-\beta}{2\zeta_t}\,\frac{g_t}{\hat\omega_t}
            && \text{(Eq. 16 with Algorithm 1's sign; Eq. 9 with } \omega x \to g/\hat\omega) \\
        \hat v_t &= v_t/\mu_t && \text{(Eq. 17)} \\
        \alpha_t &= 2\gamma/n^{\{l\}}, \qquad
        \theta_t = \theta_{t-1} + \alpha_t\,\hat v_t/\hat\omega_t && \text{(Eq. 18)}

    :math:`\mu_t` is kept per leaf and per run (so that :func:`dyna_restart` can reset one layer
    of one ensemble member); without restarts it is the same :math:`1-\beta^t` everywhere.

    Parameters
    ----------
    gamma : float, per-run array or schedule
        Stepsize factor :math:`\gamma \ge 0` (0: no step, :math:`\alpha = 2\gamma/n = 0`; nothing
        divides by it); default 1 (Algorithm 1; Sec. 3.3 "defaults to 1.0").
    beta : float or per-run array
        Smoothing factor :math:`\beta \in [0, 1)`; default 0.9 (Algorithm 1; Sec. 3.2,
        "recommended ... as :math:`\beta_1` in the Adam Optimizer").
    zeta : float, per-run array or schedule
        Damping ratio :math:`\zeta \in (0, 2]` (Algorithm 1's range); default 1, critical damping
        (Algorithm 1). A callable of the step count varies it, e.g. :func:`damping_ramp`
        (Eq. 22; :mod:`physopt_ref.core.schedules`).
    omega_eps : float or per-run array
        Cut-off :math:`\hat\omega_\epsilon > 0`; default :math:`10^{-8}` (Algorithm 1, Eq. 15).
        It must be positive: a coordinate whose gradient has always been zero has
        :math:`\eta = 0`, and :math:`g/\hat\omega` would be 0/0.
    fan_in : None, int, tree of ints or callable
        :math:`n^{\{l\}}`, the number of inputs of each layer. ``None`` applies
        :func:`default_fan_in` to each leaf's event shape (the shape without the ensemble axes);
        an int is used for every leaf (``fan_in=784`` reproduces the paper's MNIST setting,
        :math:`\alpha = 2/784` everywhere); a tree of ints shaped like the parameters gives one
        per leaf; a callable receives a leaf's event shape and returns its :math:`n`.

    Notes
    -----
    **Step bound (Sec. 4.2).** The paper states :math:`|\Delta\theta_t| \le \alpha_t`, i.e.
    :math:`|\hat v_t| \le \hat\omega_t`, for :math:`\zeta \ge 0.5` "for less sparse cases" and
    derives it for the first step from rest (Eq. 20):
    :math:`|\Delta\theta_1| = \alpha_1/(2\zeta)\cdot|g|/(\sqrt{|g|}+\hat\omega_\epsilon)^2`.
    It does **not** hold for every gradient sequence when
    :math:`\zeta < 1/(1+\sqrt{1-\beta})` (0.760 for :math:`\beta = 0.9`). What holds,
    element-wise, with :math:`\zeta_{\min} = \min_{s \le t}\zeta_s`:

    * for **every** gradient sequence (restarts included),
      :math:`|\Delta\theta_t| \le \alpha_t / (\zeta_{\min}(1+\sqrt{1-\beta}))`, and the constant
      is sharp. So the paper's bound holds for all sequences once
      :math:`\zeta_{\min} \ge 1/(1+\sqrt{1-\beta})`, in particular at the default
      :math:`\zeta = 1`. Proof: let :math:`V_t = \sum_{s \le t}(1-\beta)\beta^{t-s}
      |g_s|/\hat\omega_s`, so :math:`2\zeta_{\min}|v_t| \le V_t`. By induction
      :math:`V_t \le K\sqrt{\eta_t\mu_t}` with :math:`K = 2/(1+\sqrt{1-\beta})`: using
      :math:`|g_t|/\hat\omega_t \le |g_t|\sqrt{\mu_t/\eta_t}`,
      :math:`(1-\beta)|g_t| = \eta_t - \beta\eta_{t-1}` and :math:`\mu_{t-1} \le \mu_t \le 1`,
      :math:`V_t/\sqrt{\eta_t\mu_t} \le \beta K r + 1 - \beta r^2` with
      :math:`r = \sqrt{\eta_{t-1}/\eta_t} \in [0, \beta^{-1/2}]`, and this is :math:`\le K`
      because :math:`\max_r (1-\beta r^2)/(1-\beta r) = 2/(1+\sqrt{1-\beta})`. Then
      :math:`|\hat v_t| \le K\sqrt{\eta_t/\mu_t}/(2\zeta_{\min}) \le K\hat\omega_t /
      (2\zeta_{\min})`. A restart scales both sides of the induction hypothesis alike;
    * without restarts, when no gradient magnitude exceeds the running mean it joins
      (:math:`|g_s| \le \eta_s/\mu_s`; e.g. :math:`|g|` non-increasing along the coordinate,
      a constant gradient): :math:`|\Delta\theta_t| \le \alpha_t/(2\zeta_{\min})`, so
      :math:`\le \alpha_t` for :math:`\zeta \ge 0.5` (then :math:`|g_s|/\hat\omega_s \le
      \sqrt{|g_s|}` and Jensen gives :math:`\sum_s p_s\sqrt{|g_s|} \le \sqrt{\eta_t/\mu_t}`).

    Counterexample outside: :math:`\beta = 0.9`, :math:`\zeta = 0.5`, gradients growing
    geometrically, :math:`|g_t| = c^t` with :math:`c = (1+\sqrt{1-\beta})^2 \approx 1.73`:
    :math:`|\Delta\theta_t| \to 2\alpha_t/(1+\sqrt{0.1}) \approx 1.52\,\alpha_t`.

    **Scale invariance.** The step is invariant under a rescaling of the gradients (up to
    :math:`\hat\omega_\epsilon`): on a deterministic quadratic Dyna moves by :math:`O(\alpha)`
    whatever the distance to the minimum, so it descends from starts farther than a few
    :math:`\alpha` and then oscillates in a band of a few percent of :math:`\alpha` (like
    sign-based methods at a constant rate); started inside that band the loss rises.

    Differences from the authors' code
    ----------------------------------
    There is no released code (spec §c.1). Decisions against the paper's text:

    * :math:`\hat v_t = v_t/\mu_t` (Eq. 17), not Algorithm 1's :math:`v_t/\mu^t` (typo);
    * the minus sign of Algorithm 1 in the velocity update (Eq. 16 prints a plus);
    * :math:`\theta_0` is the user's starting point (Algorithm 1's ":math:`\theta_0 \leftarrow
      0`" is a placeholder);
    * :math:`n` per leaf by :func:`default_fan_in` unless given; the paper leaves biases and
      non-layer parameters unspecified;
    * a schedule for :math:`\zeta` (or :math:`\gamma`) is evaluated at the count of steps
      already taken; :func:`damping_ramp` converts that to Algorithm 1's :math:`t`.
    """
    hp = {
        "gamma": check_real_or_schedule("gamma", gamma, symbol="γ", low=0.0),
        "beta": check_real(
            "beta", beta, symbol="β", low=0.0, high=1.0, high_open=True, per_run=True
        ),
        "zeta": _zeta(zeta),
        "omega_eps": check_real(
            "omega_eps", omega_eps, symbol="ω̂_ε", low=0.0, low_open=True, per_run=True
        ),
        "fan_in": _check_fan_in(fan_in),
    }
    return Optimizer(
        "dyna", hp, init=_dyna_init, update=_dyna_update, state_type=DynaState, elementwise=True
    )


def _dyna_init(hp: Hyper, ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
    _fan_ins(hp["fan_in"], ctx.tree_event_shapes(leaves), ctx.treedef)  # validate it early
    mu = tuple(ctx.full(0.0, p.dtype) for p in leaves)
    return {
        "eta": ctx.zeros_like(leaves),
        "velocity": ctx.zeros_like(leaves),
        "mu": mu,
        "omega": ctx.zeros_like(leaves),
    }


def _dyna_update(
    hp: Hyper, ctx: StepContext, params: list[Any], grads: list[Any], state: DynaState, loss: Any
) -> tuple[list[Any], dict[str, Any]]:
    xp, bn = ctx.xp, ctx.batch_ndim
    # n per leaf from the whole leaves' shapes (a donated step may pass slices of a subset)
    ns = ctx.per_leaf(_fan_ins(hp["fan_in"], ctx.tree_event_shapes(params), ctx.treedef))
    beta, z, gam, w_eps = (ctx.hp(hp[k]) for k in ("beta", "zeta", "gamma", "omega_eps"))
    kick = (1.0 - beta) / (2.0 * z)
    new_p, new_eta, new_v, new_mu, new_om = [], [], [], [], []
    for p, g, eta, v, mu, n in zip(
        params, grads, state.eta, state.velocity, state.mu, ns, strict=True
    ):
        b = ctx.leaf(beta, p)
        eta = b * eta + (1.0 - b) * xp.abs(g)
        mu = beta * mu + (1.0 - beta)
        mu_l = expand_to_leaf(xp, mu, p, bn)
        omega = xp.sqrt(eta / mu_l) + ctx.leaf(w_eps, p)
        v = b * v - ctx.leaf(kick, g) * (g / omega)
        alpha = ctx.leaf(2.0 * gam / n, p)
        new_p.append(p + alpha * ((v / mu_l) / omega))
        new_eta.append(eta)
        new_v.append(v)
        new_mu.append(mu)
        new_om.append(omega)
    fields = {
        "eta": tuple(new_eta),
        "velocity": tuple(new_v),
        "mu": tuple(new_mu),
        "omega": tuple(new_om),
    }
    return new_p, fields


# ---------------------------------------------------------------------------------------------
# Restart (Sec. 4.1)


def dyna_warm_restart(
    state: DynaState, factor: float, *, layers: Sequence[int] | None = None, where: Any = None
) -> DynaState:
    r"""Warm restart (Sec. 4.1): rescale :math:`\eta`, :math:`v` and :math:`\mu` of some layers.

    "With Eqs. 13, 14 and 16, the squared angular frequency estimate and velocity share the same
    synchronous total weight. It is possible to zero or rescale the existing estimates as well
    the total weight within a neural network layer to restart or warm restart the learning
    process. This operation can be performed within the same time step whenever the objective
    function increases." Scaling all three by the same ``factor`` keeps the normalised
    estimates :math:`\eta/\mu` and :math:`v/\mu` and lowers the weight of the past against the
    next gradient; ``factor = 0`` is a full restart (:func:`dyna_restart`). Apply it to the
    state before the next :func:`dyna` step. The step count (and so a :math:`\zeta` schedule)
    is not reset, and ``state.omega`` (information only) is left as it was.

    Parameters
    ----------
    state : DynaState
        A state of :func:`dyna`; it is not modified.
    factor : float
        Scale :math:`c \in [0, 1]`.
    layers : sequence of int, optional
        Leaf indices (in :func:`physopt_ref.tree_flatten` order) to rescale; default all.
    where : bool or array of the batch shape, optional
        Which runs of an ensemble to rescale (e.g. ``loss > previous_loss``); default all. Applied
        with ``xp.where`` (no host synchronisation).
    """
    factor = check_real("factor", factor, symbol="c", low=0.0, high=1.0)
    if not isinstance(state, DynaState):
        raise TypeError(f"expected a DynaState, got {type(state).__name__}")
    n_leaves = len(state.eta)
    chosen = set(range(n_leaves)) if layers is None else set(layers)
    for i in chosen:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_leaves:
            raise ValueError(f"layers must hold leaf indices in [0, {n_leaves}), got {i!r}")
    xp = array_namespace(*state.eta)
    bn = state.count.ndim
    mask = None
    if where is not None:
        if isinstance(where, bool):
            if not where:
                return state
        else:
            mask = xp.asarray(where)
            if mask.dtype != xp.bool:
                raise TypeError(f"where must be boolean, got dtype {mask.dtype}")
            batch_shape = tuple(state.mu[0].shape)
            if tuple(mask.shape) not in ((), batch_shape):
                raise ValueError(
                    f"where must be a scalar or have the ensemble shape {batch_shape}, "
                    f"got {tuple(mask.shape)}"
                )

    def scale(x: Any, mu_like: bool) -> Any:
        scaled = factor * x
        if mask is None:
            return scaled
        m = mask if mu_like else expand_to_leaf(xp, mask, x, bn)
        return xp.where(m, scaled, x)

    eta, vel, mu = list(state.eta), list(state.velocity), list(state.mu)
    for i in sorted(chosen):
        eta[i] = scale(eta[i], False)
        vel[i] = scale(vel[i], False)
        mu[i] = scale(mu[i], True)
    return state._replace(eta=tuple(eta), velocity=tuple(vel), mu=tuple(mu))


def dyna_restart(
    state: DynaState, *, layers: Sequence[int] | None = None, where: Any = None
) -> DynaState:
    r"""Restart (Sec. 4.1): zero :math:`\eta`, :math:`v` and :math:`\mu` of some layers.

    The next step then behaves as a first step from rest (Eq. 20):
    :math:`|\Delta\theta| = \alpha/(2\zeta)` up to :math:`\hat\omega_\epsilon`. See
    :func:`dyna_warm_restart` for ``layers`` and ``where``.
    """
    return dyna_warm_restart(state, 0.0, layers=layers, where=where)


register(
    "dyna",
    dyna,
    test_hyperparameters={"gamma": 0.5, "beta": 0.8, "zeta": damping_ramp(4.0), "omega_eps": 1e-8},
    family="dyna",
    sweep={"gamma": (0.2, 0.5, 1.0), "beta": (0.5, 0.8, 0.9), "zeta": (0.5, 1.0, 2.0)},
)
