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

from collections.abc import Mapping
from typing import Any, NamedTuple

from physopt_ref.core.context import StepContext
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.precision import check_state_dtype, widened
from physopt_ref.core.registry import register
from physopt_ref.core.schedules import check_real_or_schedule
from physopt_ref.core.tracing import is_tracing, kept_apart, merges_repeats
from physopt_ref.core.tree import select_tree
from physopt_ref.core.validate import check_bool, check_real, is_array
from physopt_ref.optimizers import ecd_safety
from physopt_ref.optimizers.ecd_common import (
    check_eps2,
    check_member,
    check_one_dtype,
    check_seed,
    energy_shell_phase,
    finish_call,
    grad_norm_if_starting,
    initial_momentum,
    int_zeros,
    momentum_norm,
    random_directions,
    rescale_factor,
    safe_divide,
    tree_dot,
    tree_sq_norm,
)
from physopt_ref.optimizers.ecd_small import ecdsep_small
from physopt_ref.transforms.chain import weight_decay_keyword, with_transforms

__all__ = ["ECDSepState", "ecdsep"]


class ECDSepState(NamedTuple):
    r"""State of :func:`ecdsep`; every array field after ``momentum`` is per run (batch shape).

    Attributes
    ----------
    count : array
        Calls of ``step`` so far, per run (``int32``; also the counter of the jitter random
        stream).
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
        What the last call did: 0 nothing (stopped), 1 update, 3 floor moved, 4 backtracked
        (``safety``; its fields follow: :mod:`~.ecd_safety`).
    """

    count: Any
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
    eta: Any,
    *,
    nu: Any = 1e-5,
    s: Any = 1.0,
    f0: Any = 0.0,
    delta_e: Any = None,
    rescale: bool = True,
    weight_decay: float = 0.0,
    eps1: float = 1e-10,
    eps2: float | None = None,
    seed: int = 0,
    member: int = 0,
    f0_tuning: bool = False,
    state_dtype: str | None = None,
    safety: str | None = None,
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
    lr : float, per-run array or schedule
        :math:`\Delta t \ge 0`, required (``ECDSep.__init__``, line 19, asks for > 0; 0 is
        accepted here as a no-op: the kick and the move are proportional to :math:`\Delta t`
        and nothing divides by it). A callable of the step
        count is a schedule (:mod:`physopt_ref.core.schedules`; the code reads ``self.lr``, so
        PyTorch schedulers do not act on it; here they can).
    eta : float or per-run array
        :math:`\eta > 0`, required (line 19); the code's docstring asks for :math:`\eta \ge 1`
        ("tested up to eta = 5"); :math:`0 < \eta < 1` is accepted here.
    nu : float or per-run array
        :math:`\nu \ge 0`, the "chaos hyperparameter" (jitter size); default 1e-5 (line 19).
    s : float or per-run array
        :math:`s \ge 0`, the "regularization switch"; default 1 (line 19). With :math:`s = 0`
        the step bound :math:`\Delta t/\sqrt s` is void.
    f0 : float or per-run array
        :math:`F_0`, the expected minimum of the objective; default 0 (line 19).
    delta_e : float, per-run array or None
        :math:`\delta E \ge 0`, the initial :math:`|p|^2`. Default ``None``: the code's rule,
        0 when ``s == 1`` and 1 otherwise (lines 23-26 force ``deltaEn = 1`` for ``s != 1``);
        required when ``s`` is a per-run array.
    rescale : bool
        The code's ``consEn``; default True (line 19).
    weight_decay : float, per-run array or schedule
        :math:`w \ge 0`, an :math:`L^2` term :math:`\tfrac w2|q|^2` inside V; default 0. A
        keyword for :func:`physopt_ref.chain` with
        :func:`~physopt_ref.transforms.coupled_weight_decay` in front of the step, which hands
        on :math:`\tilde F` as the loss and :math:`\nabla\tilde F` as the gradient (the one
        implementation of weight decay); recorded among the hyperparameters.
    eps1 : float
        Absolute tolerance under which the rescale is skipped; default 1e-10 (line 19).
    eps2 : float or None
        :math:`\epsilon`: a call with :math:`V \le \epsilon` is a no-op. Default ``None``:
        the code's 1e-40 (line 19), raised to the dtype's floor
        ``finfo.smallest_normal / finfo.eps`` where 1e-40 is not a normal number of the dtype
        (float32: 9.9e-32, so that :math:`e^E/V` cannot overflow for :math:`e^E` up to 3.4e7;
        float64 keeps 1e-40). An explicit value below that floor is refused at ``init``.
    seed : int
        Seed of the counter-based jitter stream (:mod:`physopt_ref.backends`); keyed by
        (``seed``, ``member``). Default 0.
    member : int
        Member index of this run, in [0, 2**32), default 0: the jitter is keyed by (``seed``,
        member) as BBI's bounces are (:func:`physopt_ref.bbi`, ``member``).
    f0_tuning : bool
        Automatic :math:`F_0` tuning (``ECDSep_F0tuning``); default False.

    state_dtype : {None, "params", "float32", "float64"}
        The dtype of the state and of the step's arithmetic, as for :func:`physopt_ref.bbi`:
        by default float32 for float16 and bfloat16 parameters (the measured need is in
        ``docs/precision.md``), the parameters' dtype otherwise.
    safety : {None, "backtrack"}
        Step-size safety, **off by default** (``None``: the authors' steps). ``"backtrack"``:
        a call that finds a started run off its shell, :math:`s V_t > e^E` (the rescale has
        no real solution), makes no update (``event`` 4) and moves half way back to the run's
        last update point, :math:`q \leftarrow q_a + \tfrac12(q_t - q_a)`, dividing the
        run's :math:`\Delta t` by :math:`\sqrt2` for good; a run that never leaves the shell
        is unchanged bit for bit (:mod:`physopt_ref.optimizers.ecd_safety`: equations,
        bounds, cost; issue 27). With ``s = 0`` there is no bound, so nothing to do. Refused
        with ``f0_tuning`` (a floor move raises V at a fixed :math:`e^E`: every run would
        leave its shell).

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
    3. The jitter is **seeded and reproducible** (Philox-4x32-10 stream keyed by ``seed``, the
       run's ``member`` index, call count and leaf); the code seeds a private generator
       non-deterministically. It is computed as :math:`p \leftarrow a\,p + b\,z` with
       :math:`|u|^2` from the inner products :math:`p\cdot z` and :math:`|z|^2` (the same
       vector as normalising :math:`u = p/|p| + \nu z`, up to rounding, without forming it).
    4. **Per run** of an ensemble: :math:`e^E`, :math:`|p|^2`, norms, jitter normalisation, stops
       and floors; the code keeps one set for all parameter groups.
    5. No NaN: a zero initial gradient gives :math:`p_0 = 0` (the code divides 0/0); a zero
       :math:`|p|` after the kick skips the jitter (the code divides by it); :math:`V` is 0, not
       NaN, where :math:`\tilde F < F_0` with a non-integer η (both are no-ops).
    6. :math:`|p|^2` is carried in the state (``p2``, computed from the new momentum at the end
       of each call; :math:`\delta E` for a momentum just started), as the code carries
       ``self.p2``; ``e^E`` and :math:`p_0` are set on the run's first update (the code
       re-initialises on each call while ``iteration == 0``: the same thing).
    7. With weight decay the initial momentum points along :math:`-\nabla\tilde F`, the
       gradient of the regularised loss that the step integrates (the code takes the
       direction of :math:`-\nabla F`, read from ``p.grad`` before it adds :math:`w q`): weight
       decay is the coupled-L2 transform in front of the step, which hands on one consistent
       pair :math:`(\tilde F, \nabla\tilde F)`.
    8. F0 tuning with a start at or below the floor is **not** a difference: neither the code
       nor this step resets the shift, so in both the floor moves at call 0 and the run
       proceeds once :math:`\tilde F` is above it (the moves differ as in item 1: 5 times the
       gap here, 5 V there). (An earlier version of this note said the code never leaves call
       0; it does, issue 23.)
    9. The code keeps its :math:`|p|^2` accumulator in float32 under torch's default dtype,
       also for float64 parameters; here it takes the state dtype (``state_dtype``: the
       parameters' dtype, float32 for float16 and bfloat16 parameters). This explains
       differences of 4.5e-9 to 8.8e-9 when comparing float64 runs against the code (the
       figures measured for issue 23; the 1e-5 quoted here before is BBI's figure).
    10. ε₂ (``eps2``) is never below what the parameters' dtype resolves (the code's 1e-40
        turned converged float32 runs into NaN: :math:`e^E/V` overflowed at
        :math:`F \approx 8\cdot10^{-38}`, step 2953 of 16 runs on the 10-D quadratic with
        eigenvalues 1-10, lr 0.05, η 1). A call whose :math:`V` is not finite (a NaN or
        infinite loss, or :math:`(\tilde F - F_0)^\eta` overflowing the dtype) makes no update
        and moves no floor (``event`` 0). The parameter tree must have one dtype (refused at
        ``init``: the energy couples all leaves).
    11. Below the floor without F0 tuning (:math:`\tilde F \le F_0`) a call is a no-op for every
        η (:math:`V = 0`, as item 5 says for a non-integer η). With an **even integer η** the
        code's :math:`V = (\tilde F - F_0)^\eta` is positive there, so it keeps updating and
        climbs up to the :math:`F_0` level: measured for issue 23 on a 5-D quadratic with
        η = 2, F0 = 20, f went from 9.5 to 19.99999 in 1000 calls, where this step stays at
        9.5. The floor is a level the run must stay above; the code's climb is an artefact of
        the sign of an even power.
    12. ``safety="backtrack"`` (off by default) departs from the code on the calls where a
        run has left its shell, :math:`s V > e^E`; the code has no step-size control.
    """
    s = check_real("s", s, symbol="s", low=0.0, per_run=True)
    if delta_e is None:
        if is_array(s):
            raise ValueError(
                "delta_e (δE) must be given when s is a per-run array (its default depends on "
                "whether s == 1)"
            )
        delta_e = 0.0 if s == 1.0 else 1.0
    wd, decay = weight_decay_keyword(weight_decay)
    hp = {
        "lr": check_real_or_schedule("lr", lr, symbol="Δt", low=0.0),
        "eta": check_real("eta", eta, symbol="η", low=0.0, low_open=True, per_run=True),
        "nu": check_real("nu", nu, symbol="ν", low=0.0, per_run=True),
        "s": s,
        "f0": check_real("f0", f0, symbol="F₀", per_run=True),
        "delta_e": check_real("delta_e", delta_e, symbol="δE", low=0.0, per_run=True),
        "rescale": check_bool("rescale", rescale),
        "weight_decay": wd,  # recorded; applied by the coupled_weight_decay transform
        "eps1": check_real("eps1", eps1, symbol="ε₁", low=0.0),
        "eps2": None if eps2 is None else check_real("eps2", eps2, symbol="ε₂ (ε)", low=0.0),
        "seed": check_seed(seed),
        "member": check_member(member),
        "f0_tuning": check_bool("f0_tuning", f0_tuning),
        "state_dtype": check_state_dtype(state_dtype),
        "safety": ecd_safety.check_safety(safety),
    }
    if hp["safety"] is not None and hp["f0_tuning"]:
        raise ValueError(
            "safety='backtrack' needs a fixed floor: with f0_tuning=True a floor move raises "
            "V at a fixed e^E and every run would leave its shell (use one or the other)"
        )
    optimizer = Optimizer(
        "ecdsep",
        hp,
        init=_ECDSEP_RULES[0],
        update=_ECDSEP_RULES[1],
        state_type=ecd_safety.safety_state_type(ECDSepState, hp["safety"]),
        needs_loss=True,
        squares_gradient=True,
        small=ecdsep_small,
    )
    return with_transforms(optimizer, decay, hp)


def _ecdsep_init(hp: Mapping[str, Any], ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
    xp = ctx.xp
    check_one_dtype("ecdsep", leaves)
    check_eps2("ecdsep", hp["eps2"], xp, ctx.dtype)
    return {
        **ecd_safety.safety_init(hp["safety"], ctx, leaves),
        "momentum": ctx.zeros_like(leaves),
        "exp_energy": ctx.full(0.0),
        "p2": ctx.full(0.0),
        "potential": ctx.full(0.0),
        "floor": ctx.full(ctx.hp(hp["f0"])),
        "iteration": int_zeros(ctx),
        "started": ctx.full(False, xp.bool),
        "event": int_zeros(ctx),
    }


def _ecdsep_update(
    hp: Mapping[str, Any],
    ctx: StepContext,
    params: list[Any],
    grads: list[Any],
    state: ECDSepState,
    loss: Any,
) -> tuple[list[Any], dict[str, Any]]:
    xp, bn = ctx.xp, ctx.batch_ndim
    dt, eta, nu, s, delta_e = (ctx.hp(hp[k]) for k in ("lr", "eta", "nu", "s", "delta_e"))
    one, zero = ctx.scalar(1.0), ctx.scalar(0.0)

    # F̃ = F + ½w|q|² and its gradient arrive as `loss` and `grads` (coupled_weight_decay).
    gap = loss - state.floor
    positive = gap > 0.0
    gap_s = xp.where(positive, gap, one)
    V = xp.where(positive, gap_s**eta, zero)
    V = xp.where(xp.isfinite(gap), V, gap)  # a non-finite loss stays visible: a no-op below
    active, retune, init_now = energy_shell_phase(
        ctx, V, tuning=hp["f0_tuning"], eps2=hp["eps2"], started=state.started
    )
    Vs = xp.where(active, V, one)

    # The run's first update fixes e^E = V0 (s + δE) and p0 = -sqrt(δE) g/|g|.
    exp_energy = xp.where(init_now, Vs * (s + delta_e), state.exp_energy)
    magnitude = (
        xp.sqrt(delta_e) if is_array(delta_e) else ctx.full(float(delta_e) ** 0.5)
    )
    if not is_tracing(init_now):  # eager: each array once, as the arithmetic reads
        p, p2 = initial_momentum(ctx, grads, magnitude, init_now, state.momentum, state.p2)
        gnorm = None
    else:
        # In a graph only |g| comes out of a branch; the started momentum is a select that the
        # compiler fuses into the two passes below (no full-size buffer for it).
        gnorm = grad_norm_if_starting(ctx, grads, init_now)
        p, p2 = initial_momentum(ctx, grads, magnitude, init_now, state.momentum, state.p2,
                                 gnorm)
    xla = gnorm is not None and merges_repeats(xp)  # traced by jax.jit

    c = rescale_factor(ctx, p2, exp_energy / Vs - s, hp["eps1"]) if hp["rescale"] else 1.0
    # Safety: a started run with s V > e^E has left its shell and backtracks (ecd_safety).
    guard = ecd_safety.ShellGuard(
        hp["safety"], ctx, state, active, V, lambda: exp_energy / Vs - s
    )
    update = guard.live

    # Kick with -Δt ∇log V = -Δt η ∇F̃ / (F̃ - F0) (current floor: no force-term bug).
    kick = guard.scale(dt * eta / gap_s)  # the run's Δt: 2^(-k/2) Δt

    def kicked(p: list[Any]) -> list[Any]:
        return [ctx.leaf(c, a) * a - ctx.leaf(kick, f) * f for a, f in zip(p, grads, strict=True)]

    # The minimum is two passes over the data (docs/speed.md, "ECDSep's compiled passes"): one
    # for the three independent reductions |p_k|², p_k·z, |z|², one for the writes of q and p
    # and the final |p|². Eagerly (every backend outside a trace, where forming again would
    # cost passes) each array below is formed once. In a graph every use forms p, p_k (and p_j)
    # again from the step's inputs: inductor stores a value that several loops read (its reuse
    # heuristics: a full-size buffer per step); formed again, each fuses into the loop that
    # reads it, with the same arithmetic. The draw z is stored once, not drawn twice. XLA
    # merges the repeated expressions again (`xla`): under jax.jit the kicked momentum is the
    # one stored array the reductions and both writes read, and the rest is kept apart below
    # (docs/speed.md, "ECDSep's passes under jax.jit").
    if gnorm is None:
        p_once = kicked(p)

        def kicked_momentum() -> list[Any]:
            return p_once

        def momentum() -> list[Any]:
            return p
    else:

        def momentum() -> list[Any]:
            return initial_momentum(ctx, grads, magnitude, init_now, state.momentum, state.p2,
                                    gnorm)[0]

        def kicked_momentum() -> list[Any]:
            return kicked(momentum())

    p2k = tree_dot(xp, kicked_momentum(), kicked_momentum(), bn)  # |p_k|²
    # |p| from the |p|² the step carries anyway (one pass fewer than the scaled tree_norm),
    # except where |p|² overflowed (|p| > sqrt(finfo.max)): there the scaled norm, taken only
    # when some run needs it (issue 22). The drift 2Δt/(s+|p|²) then goes to 0, its limit.
    norm = momentum_norm(xp, p2k, kicked_momentum, bn)
    move = guard.scale(safe_divide(xp, 2.0 * dt, s + p2k, (s + p2k) > 0.0, one, zero))
    q_new = [q + ctx.leaf(move, a) * a for q, a in zip(params, kicked_momentum(), strict=True)]

    # ν-jitter: u = p/|p| + ν z, then p = |p| u/|u| (exact norm restore), written as
    # p = a p + b z with |u|² = 1 + 2ν (p·z)/|p| + ν²|z|² from two inner products (no temporary
    # u). A zero p stays zero (a = b = 0).
    if is_array(nu) or nu > 0.0:
        z = random_directions(
            xp, p, seed=hp["seed"], member=hp["member"], counter=ctx.count, batch_ndim=bn,
            law="isotropic",
        )
        moving = norm > 0.0
        inv = safe_divide(xp, 1.0, norm, moving, one, zero)
        u2 = (1.0 + 2.0 * nu * tree_dot(xp, kicked_momentum(), z, bn) * inv
              + nu * nu * tree_sq_norm(xp, z, bn))
        fac = safe_divide(xp, norm, xp.sqrt(u2), moving & (u2 > 0.0), one, zero)
        a_coef, b_coef = fac * inv, fac * nu

        def jittered(a_coef: Any = a_coef, b_coef: Any = b_coef) -> list[Any]:
            return [ctx.leaf(a_coef, a) * a + ctx.leaf(b_coef, b) * b
                    for a, b in zip(kicked_momentum(), z, strict=True)]

        p_j = jittered()
        if xla:
            # |p_j|² from p_k and z with the coefficients kept apart: XLA cannot merge this
            # p_j with the one written, so neither is stored (the reduction reads p_k and z).
            ab = kept_apart(xp, (a_coef, b_coef))
            p2_j = tree_dot(xp, jittered(*ab), jittered(*ab), bn)
        else:
            p2_j = tree_dot(xp, p_j, p_j, bn) if gnorm is None else tree_dot(
                xp, jittered(), jittered(), bn)
    else:
        p_j, p2_j = kicked_momentum(), p2k

    # A run that does not update does not start (a starting run is active and cannot yet
    # backtrack), so there momentum() is the stored momentum, bit for bit: under jax.jit the
    # select reads that, and the started momentum fuses into the kick's loop, unstored.
    p_new = select_tree(xp, update, p_j, list(state.momentum) if xla else momentum(), bn)
    q_out, safe_fields = guard.finish(params, select_tree(xp, update, q_new, params, bn), update)
    fields = {
        **safe_fields,
        "momentum": tuple(p_new),
        "exp_energy": exp_energy,
        "p2": xp.where(update, p2_j, p2),
        "potential": V,
        **finish_call(
            ctx,
            state,
            update=update,
            active=active,
            retune=retune,
            floor_value=loss,
            backtrack=guard.backtrack,
        ),
    }
    return q_out, fields


# The rules with the state in ``state_dtype`` (float32 for half-precision parameters).
_ECDSEP_RULES = widened(_ecdsep_init, _ecdsep_update)


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
    sweep={"lr": (0.1, 0.3, 0.5), "eta": (1.0, 1.5, 2.0), "nu": (0.0, 0.1, 0.2)},
)
