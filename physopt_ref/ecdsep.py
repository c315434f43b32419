r"""ECDSep: energy-conserving descent with a separable Hamiltonian and ν-jitter (the η form).

De Luca, Gatti & Silverstein, "Improving Energy Conserving Descent for Machine Learning: Theory
and Practice" (2023, arXiv 2306.00352); official code ``gbdl/ECDSep`` ``inflation.py`` class
``ECDSep`` (commit ``dbb907f``, lines 5-153) and ``ECDSep_F0tuning`` (lines 158-319). Line
numbers and measured numbers below are from the project's spec ``shared/specs/ecd.md`` (§0, §3).

With :math:`\tilde F = F + \tfrac{w}{2}|q|^2` (weight decay :math:`w`) and
:math:`V = (\tilde F - F_0)^\eta`, the update integrates the separable Hamiltonian

.. math::

    H_\text{Sep}(q, p) = \log V + \log(s + |p|^2)
        = \log\big[g(V)\,(s + |p|^2)\big], \qquad g = (\tilde F - F_0)^\eta,

the logarithm of the "rootless" (*Ruthless*) Hamiltonian :math:`H_R = g\,(s + |p|^2)`: a
potential :math:`s\,g` plus a kinetic term with position-dependent mass
:math:`m \propto 1/g(V)` (slides, "Rootless (Ruthless): mass ∝ 1/g(V)"; spec §0). Both trace the
same orbits; the separable form has the simple equations of motion
:math:`\dot q = 2p/(s+|p|^2)`, :math:`\dot p = -\nabla \log V = -\eta\nabla\tilde F/(\tilde F-F_0)`.
The phase-space density in :math:`q` behaves as :math:`(\tilde F-F_0)^{-\eta d/2}` near the
bottom, so larger η concentrates the measure at small loss (the ECDSep README).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import device

from ._base import Optimizer, as_per_run, evaluate, prepare_init, prepare_step, register
from ._ecd_common import (
    EVENT_FLOOR,
    EVENT_NONE,
    EVENT_UPDATE,
    check_seed,
    int_zeros,
    lower_floor,
    random_directions,
    safe_divide,
    scale_tree,
    tree_sq_norm,
)
from ._tree import expand_to_leaf, select_tree, tree_unflatten
from ._validate import check_real, check_real_or_schedule

__all__ = ["ECDSepState", "ecdsep"]


class ECDSepState(NamedTuple):
    r"""State of :func:`ecdsep`; every array field after ``momentum`` is per run (batch shape).

    Attributes
    ----------
    count : int
        Calls of ``step`` so far (static; also the counter of the jitter random stream).
    batch_ndim : int
        Number of leading ensemble axes.
    momentum : tuple of arrays
        :math:`p` per leaf.
    exp_energy : array
        :math:`e^E = V_0 (s + \delta E)`, fixed at the run's first update (0 before).
    p2 : array
        :math:`|p|^2` over the whole tree, after the call.
    potential : array
        :math:`V = (\tilde F - F_0)^\eta` at this call's input (0 where :math:`\tilde F \le F_0`).
    floor : array
        The current :math:`F_0` (moved only by ``f0_tuning``).
    iteration : integer array
        Update steps taken.
    started : bool array
        Whether the run has made its first update.
    event : integer array
        What the last call did: 0 nothing (stopped), 1 update, 3 floor moved.
    """

    count: int
    batch_ndim: int
    momentum: tuple[Any, ...]
    exp_energy: Any
    p2: Any
    potential: Any
    floor: Any
    iteration: Any
    started: Any
    event: Any


def ecdsep(
    lr: Any,
    eta: float,
    *,
    nu: float = 1e-5,
    s: float = 1.0,
    f0: float = 0.0,
    delta_e: float | None = None,
    rescale: bool = True,
    weight_decay: float = 0.0,
    eps1: float = 1e-10,
    eps2: float = 1e-40,
    seed: int = 0,
    f0_tuning: bool = False,
) -> Optimizer:
    r"""ECDSep, the official update (rescale, kick, drift, ν-jitter with exact norm restore).

    With :math:`\tilde F_t = F(q_t) + \tfrac w2|q_t|^2`, :math:`V_t = (\tilde F_t - F_0)^\eta` and
    :math:`\tilde g_t = \nabla F(q_t) + w\,q_t`, a call with :math:`V_t > \epsilon_2` does
    (spec §3.2)

    .. math::

        p_t' &= c_t\,p_t, \qquad c_t = \sqrt{\frac{e^E/V_t - s}{|p_t|^2}}
            \quad\text{(energy rescale: } V_t(s + |p_t'|^2) = e^E) \\
        p_{t+\frac12} &= p_t' - \Delta t\,\frac{\eta}{\tilde F_t - F_0}\,\tilde g_t
            \quad\text{(kick, } -\Delta t\,\nabla\log V) \\
        q_{t+1} &= q_t + \Delta t\,\frac{2\,p_{t+\frac12}}{s + |p_{t+\frac12}|^2}
            \quad\text{(drift with the new } p) \\
        p_{t+1} &= |p_{t+\frac12}|\,\frac{u}{|u|}, \qquad
            u = \frac{p_{t+\frac12}}{|p_{t+\frac12}|} + \nu z, \quad z \sim N(0, I)
            \quad\text{(jitter)}

    The rescale is skipped (:math:`c_t = 1`) when :math:`|(e^E/V_t - s) - |p_t|^2| <
    \epsilon_1`, when :math:`e^E/V_t < s`, or when :math:`|p_t| = 0`. Each step moves
    :math:`q` by :math:`2\Delta t|p|/(s+|p|^2) \le \Delta t/\sqrt{s}` exactly. The jitter keeps
    :math:`|p|` (a small random rotation, angle about :math:`\nu\sqrt d`; it replaces BBI's
    bounces). :math:`e^E = V_0(s + \delta E)` is fixed at the run's first update, with
    :math:`p_0 = -\sqrt{\delta E}\, g_0/|g_0|` (so :math:`|p_0|^2 = \delta E`). A call with
    :math:`V_t \le \epsilon_2` changes nothing.

    **F0 tuning** (``f0_tuning=True``; ``ECDSep_F0tuning``, spec §2.2): a call with
    :math:`\tilde F \le F_0` makes no update and moves the floor to
    :math:`F_0 \leftarrow \tilde F - 4(F_0 - \tilde F)`; updates happen for every
    :math:`\tilde F > F_0`. :math:`e^E` is not recomputed (as in the code).

    Parameters
    ----------
    lr : float or schedule
        :math:`\Delta t > 0`, required (``ECDSep.__init__``, line 19). A callable
        ``count -> float`` is a schedule (the code reads ``self.lr``, so PyTorch schedulers do
        not act on it; here they can).
    eta : float
        :math:`\eta > 0`, required (line 19); the code's docstring asks for :math:`\eta \ge 1`
        ("tested up to eta = 5"); :math:`0 < \eta < 1` is accepted here.
    nu : float
        :math:`\nu \ge 0`, the "chaos hyperparameter" (jitter size); default 1e-5 (line 19).
    s : float
        :math:`s \ge 0`, the "regularization switch"; default 1 (line 19). With :math:`s = 0`
        the step bound :math:`\Delta t/\sqrt s` is void.
    f0 : float
        :math:`F_0`, the expected minimum of the objective; default 0 (line 19).
    delta_e : float or None
        :math:`\delta E \ge 0`, the initial :math:`|p|^2`. Default ``None``: the code's rule,
        0 when ``s == 1`` and 1 otherwise (lines 23-26 force ``deltaEn = 1`` for ``s != 1``).
    rescale : bool
        The code's ``consEn``; default True (line 19).
    weight_decay : float
        :math:`w \ge 0`, an :math:`L^2` term :math:`\tfrac w2|q|^2` inside V; default 0.
    eps1 : float
        Absolute tolerance under which the rescale is skipped; default 1e-10 (line 19).
    eps2 : float
        :math:`\epsilon`: a call with :math:`V \le \epsilon` is a no-op; default 1e-40 (line 19).
    seed : int
        Seed of the counter-based jitter stream (:mod:`physopt_ref.backends`); ensemble member
        ``k`` behaves as a single run with ``seed + k``. Default 0.
    f0_tuning : bool
        Automatic :math:`F_0` tuning (``ECDSep_F0tuning``); default False.

    Returns
    -------
    Optimizer
        ``step(params, grads, state, loss=F)`` needs the loss (without the weight-decay term)
        of the current parameters. State: :class:`ECDSepState`.

    Notes
    -----
    Differences from the authors' code (``gbdl/ECDSep`` ``inflation.py``), each deliberate:

    1. F0 tuning **without the force-term bug**: the kick uses the shifted floor,
       :math:`\eta/(\tilde F - F_0^\text{current})`; ``ECDSep_F0tuning`` (line 282) keeps the
       unshifted ``self.F0`` there, so force and V disagree after a shift. The overshoot test
       is :math:`\tilde F \le F_0` (no need for an odd integer η) and the shift is 5 times the
       gap :math:`\tilde F - F_0`, not 5 times :math:`V = (\tilde F - F_0)^\eta`.
    2. An explicit ``delta_e`` is respected for every ``s``; only the default follows the code's
       ``s != 1 -> deltaEn = 1`` override.
    3. The jitter is **seeded and reproducible** (counter-based stream keyed by ``seed``, call
       count and leaf); the code seeds a private generator non-deterministically.
    4. **Per run** of an ensemble: :math:`e^E`, :math:`|p|^2`, norms, jitter normalisation, stops
       and floors; the code keeps one set for all parameter groups.
    5. No NaN: a zero initial gradient gives :math:`p_0 = 0` (the code divides 0/0); a zero
       :math:`|p|` after the kick skips the jitter (the code divides by it); :math:`V` is 0, not
       NaN, where :math:`\tilde F < F_0` with a non-integer η (both are no-ops).
    6. :math:`|p|^2` is recomputed from the momentum each call (the code carries ``self.p2``,
       equal up to rounding); ``e^E`` and :math:`p_0` are set on the run's first update (the
       code re-initialises on each call while ``iteration == 0``: the same thing).
    """
    lr = check_real_or_schedule("lr", lr, symbol="Δt", low=0.0, low_open=True)
    eta = check_real("eta", eta, symbol="η", low=0.0, low_open=True)
    nu = check_real("nu", nu, symbol="ν", low=0.0)
    s = check_real("s", s, symbol="s", low=0.0)
    f0 = check_real("f0", f0, symbol="F₀")
    if delta_e is None:
        delta_e = 0.0 if s == 1.0 else 1.0
    delta_e = check_real("delta_e", delta_e, symbol="δE", low=0.0)
    weight_decay = check_real("weight_decay", weight_decay, symbol="wd", low=0.0)
    eps1 = check_real("eps1", eps1, symbol="ε₁", low=0.0)
    eps2 = check_real("eps2", eps2, symbol="ε₂ (ε)", low=0.0)
    seed = check_seed(seed)
    rescale = bool(rescale)
    f0_tuning = bool(f0_tuning)

    def init(params: Any, *, batch_ndim: int = 0) -> ECDSepState:
        xp, leaves, _ = prepare_init(params, batch_ndim)
        like = leaves[0]
        bshape = tuple(like.shape[:batch_ndim])
        dev = device(like)
        zeros = xp.zeros(bshape, dtype=like.dtype, device=dev)
        return ECDSepState(
            count=0,
            batch_ndim=batch_ndim,
            momentum=tuple(xp.zeros_like(p) for p in leaves),
            exp_energy=zeros,
            p2=zeros,
            potential=zeros,
            floor=xp.full(bshape, f0, dtype=like.dtype, device=dev),
            iteration=int_zeros(xp, bshape, like),
            started=xp.zeros(bshape, dtype=xp.bool, device=dev),
            event=int_zeros(xp, bshape, like),
        )

    def step(
        params: Any, grads: Any, state: ECDSepState, *, loss: Any = None
    ) -> tuple[Any, ECDSepState]:
        bn = state.batch_ndim
        st = prepare_step(params, grads, bn)
        xp = st.xp
        loss_arr = as_per_run(xp, loss, st.params[0], st.batch_shape, "loss")
        dt = evaluate(lr, state.count)

        if weight_decay != 0.0:
            f_tilde = loss_arr + 0.5 * weight_decay * tree_sq_norm(xp, st.params, bn)
            force = [g + weight_decay * q for g, q in zip(st.grads, st.params, strict=True)]
        else:
            f_tilde, force = loss_arr, list(st.grads)
        gap = f_tilde - state.floor
        positive = gap > 0.0
        one = xp.ones_like(gap)
        gap_s = xp.where(positive, gap, one)
        V = xp.where(positive, gap_s**eta, xp.zeros_like(gap))
        if f0_tuning:
            active = V > 0.0
            retune = gap <= 0.0
        else:
            active = V > eps2
            retune = xp.zeros_like(active)
        Vs = xp.where(active, V, one)

        # The run's first update fixes e^E = V0 (s + δE) and p0 = -sqrt(δE) g/|g|.
        init_now = active & ~state.started
        exp_energy = xp.where(init_now, Vs * (s + delta_e), state.exp_energy)
        g2 = tree_sq_norm(xp, st.grads, bn)
        coef0 = -safe_divide(xp, xp.sqrt(delta_e * one), xp.sqrt(g2), g2 > 0.0)
        p = select_tree(xp, init_now, scale_tree(xp, st.grads, coef0, bn), state.momentum, bn)

        if rescale:
            p2 = tree_sq_norm(xp, p, bn)
            target = exp_energy / Vs - s
            keep = (xp.abs(target - p2) < eps1) | (target < 0.0) | (p2 == 0.0)
            c = xp.where(keep, one, xp.sqrt(safe_divide(xp, target, p2, ~keep)))
        else:
            c = one

        # Kick with -Δt ∇log V = -Δt η ∇F̃ / (F̃ - F0) (current floor: no force-term bug).
        kick = dt * eta / gap_s
        p_k = [
            expand_to_leaf(xp, c, a, bn) * a - expand_to_leaf(xp, kick, f, bn) * f
            for a, f in zip(p, force, strict=True)
        ]
        p2k = tree_sq_norm(xp, p_k, bn)
        norm = xp.sqrt(p2k)
        move = safe_divide(xp, 2.0 * dt * one, s + p2k, (s + p2k) > 0.0)
        q_new = [
            q + expand_to_leaf(xp, move, a, bn) * a for q, a in zip(st.params, p_k, strict=True)
        ]

        # ν-jitter: u = p/|p| + ν z, then p = |p| u/|u| (exact norm restore).
        moving = norm > 0.0
        if nu > 0.0:
            z = random_directions(
                xp, p_k, seed=seed, counter=state.count, batch_ndim=bn, law="isotropic"
            )
            unit = scale_tree(xp, p_k, safe_divide(xp, one, norm, moving), bn)
            u = [a + nu * b for a, b in zip(unit, z, strict=True)]
            u2 = tree_sq_norm(xp, u, bn)
            fac = safe_divide(xp, norm, xp.sqrt(u2), moving & (u2 > 0.0))
            p_j = select_tree(xp, moving, scale_tree(xp, u, fac, bn), p_k, bn)
        else:
            p_j = p_k

        p_new = select_tree(xp, active, p_j, p, bn)
        q_out = select_tree(xp, active, q_new, st.params, bn)
        floor = lower_floor(xp, f_tilde, state.floor, retune) if f0_tuning else state.floor
        zero_i = xp.zeros_like(state.iteration)
        event = xp.where(
            active,
            zero_i + EVENT_UPDATE,
            xp.where(retune, zero_i + EVENT_FLOOR, zero_i + EVENT_NONE),
        )
        new_state = ECDSepState(
            count=state.count + 1,
            batch_ndim=bn,
            momentum=tuple(p_new),
            exp_energy=exp_energy,
            p2=tree_sq_norm(xp, p_new, bn),
            potential=V,
            floor=floor,
            iteration=state.iteration + xp.astype(active, state.iteration.dtype),
            started=state.started | active,
            event=event,
        )
        return tree_unflatten(st.treedef, q_out), new_state

    hyper = {
        "lr": lr,
        "eta": eta,
        "nu": nu,
        "s": s,
        "f0": f0,
        "delta_e": delta_e,
        "rescale": rescale,
        "weight_decay": weight_decay,
        "eps1": eps1,
        "eps2": eps2,
        "seed": seed,
        "f0_tuning": f0_tuning,
    }
    return Optimizer("ecdsep", init, step, hyper, needs_loss=True)


register(
    "ecdsep",
    ecdsep,
    # Within 8 steps on the contract quadratic: jitter every step, weight decay, and F0 floor
    # moves from call 3 on, different members moving the floor on different calls.
    test_hyperparameters={
        "lr": 0.3,
        "eta": 1.5,
        "nu": 0.1,
        "delta_e": 0.5,
        "f0": 3.5,
        "weight_decay": 0.01,
        "seed": 5,
        "f0_tuning": True,
    },
    family="ecd",
    stochastic=True,
    smooth=False,
)
