r"""CoolMomentum: momentum SGD as a discretised Langevin equation, annealed by cooling.

Borysenko & Byshkin, "CoolMomentum: a method for stochastic optimization by Langevin dynamics
with simulated annealing", Sci. Rep. 11:10705 (2021), arXiv 2005.14605. Official code:
``borbysh/coolmomentum`` (spec: ``shared/specs/coolmomentum-gravity-dyna-yang.md`` §a). The
paper's body was not available to us; the update and the schedules below are those of the
official code and README, with the paper's equation number where the authors' scripts cite it.

The update (identical in every official version, spec §a.2), per leaf:

.. math::

    x_t = \rho_t\, x_{t-1} + \mathrm{lr}\,\frac{1+\rho_t}{2}\, g_t, \qquad
    \theta_t = \theta_{t-1} - x_t, \qquad x_{-1} = 0,

with ``lr`` "a squared timestep :math:`\Delta t^2`" (README). Reading
:math:`\rho = (1-\gamma\Delta t/2)/(1+\gamma\Delta t/2)` (friction :math:`\gamma`, unit mass;
spec §a.2, an inference) gives :math:`\mathrm{lr}(1+\rho)/2 = \Delta t^2/(1+\gamma\Delta t/2)`,
the Verlet-type Langevin integrator. Once :math:`\rho = 0` the step is plain SGD with step size
:math:`\mathrm{lr}/2` (not ``lr``).

Temperature. Under gradient noise of variance :math:`\sigma^2` on a flat loss the buffer is an
AR(1) process, so its stationary variance is
:math:`c^2\sigma^2/(1-\rho^2)` with :math:`c = \mathrm{lr}(1+\rho)/2`, i.e. the mean squared step
(the quantity the authors log as the rescaled temperature :math:`T\Delta t^2`, spec §a.5) is

.. math::

    \langle \Delta\theta^2 \rangle = \frac{\mathrm{lr}^2 \sigma^2}{4}\,\frac{1+\rho}{1-\rho},

so :math:`T \propto (1+\rho)/(1-\rho)`. :func:`coolmomentum_temperature` returns the per-run
mean squared step.

Cooling schedules (spec §a.3), each a plain function of the 0-based step ``t`` and each reaching
:math:`\rho = 0` exactly at ``t = S`` and staying there:

* :func:`rho_paper` (default): Eq. 20 of the paper (cited as such in the authors'
  ``resnet_cool200.py``), :math:`\rho_t = \max(0, 1 - (1-\rho_0)/\alpha^t)`,
  :math:`\alpha = (1-\rho_0)^{1/S}`: :math:`1/(1-\rho)` decays geometrically.
* :func:`rho_geometric_temperature`: the 2024 ``Coolmom`` class, :math:`(1+\rho)/(1-\rho)`
  (the temperature) decays geometrically from :math:`(1+\rho_0)/(1-\rho_0)` to 1.
* :func:`rho_linear_temperature`: the 2024 ``Coollin`` class, :math:`(1+\rho)/(1-\rho)` decays
  linearly, :math:`\rho_t = \rho_0(1-t/S)/(1-\rho_0 t/S)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from array_api_compat import array_namespace

from physopt_ref.core.context import StepContext
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.registry import register
from physopt_ref.core.schedules import (
    COOLING_SCHEDULES,
    check_real_or_schedule,
    coolmomentum_schedule,
    rho_geometric_temperature,
    rho_linear_temperature,
    rho_paper,
)
from physopt_ref.core.tree import tree_per_run_sum
from physopt_ref.core.validate import Bounds, check_int, check_real
from physopt_ref.transforms.chain import weight_decay_keyword, with_transforms

__all__ = [
    "CoolMomentumState",
    "coolmomentum",
    "coolmomentum_schedule",
    "coolmomentum_temperature",
    "rho_geometric_temperature",
    "rho_linear_temperature",
    "rho_paper",
]

#: Names accepted by ``coolmomentum(schedule=...)`` and :func:`coolmomentum_schedule`.
SCHEDULES = (*COOLING_SCHEDULES, "constant")

Hyper = Mapping[str, Any]
_RHO_BOUNDS = Bounds("schedule", "ρ_t", 0.0, 1.0, high_open=True)


class CoolMomentumState(NamedTuple):
    """State of :func:`coolmomentum`.

    Attributes
    ----------
    count : array
        Steps taken by each run (``int32``, batch shape); the next step uses
        :math:`\\rho_t` with ``t = count``.
    displacement : tuple of arrays
        Per leaf, the buffer :math:`x_t = \\theta_{t-1} - \\theta_t` (the last step, sign
        reversed); zeros before the first step.
    """

    count: Any
    displacement: tuple[Any, ...]


def coolmomentum_temperature(state: CoolMomentumState) -> Any:
    r"""The rescaled temperature :math:`T\Delta t^2 = \langle(\theta_t-\theta_{t-1})^2\rangle`.

    The mean over all parameters of the tree of the last step's squared displacement, per run
    (an array of the ensemble's batch shape). The authors log this quantity averaged over an
    epoch (``self.T += torch.sum(step*step)`` in the PyTorch benchmark class, spec §a.5).
    """
    leaves = list(state.displacement)
    xp = array_namespace(*leaves)
    bn = state.count.ndim
    total = tree_per_run_sum(xp, [x * x for x in leaves], bn)
    n = sum(math.prod(x.shape[bn:]) for x in leaves)
    return total / float(n)


def coolmomentum(
    lr: Any = 0.01,
    rho0: float = 0.99,
    cool_steps: int | None = 78200,
    schedule: str | Callable[[int], float] = "paper",
    weight_decay: float = 0.0,
) -> Optimizer:
    r"""CoolMomentum (Borysenko & Byshkin 2021): Langevin momentum with a cooling schedule.

    .. math::

        g_t &\leftarrow \nabla f(\theta_{t-1}) + \lambda\,\theta_{t-1}
              \quad\text{(coupled L2 weight decay, optional)},\\
        x_t &= \rho_t\, x_{t-1} + \mathrm{lr}\,\tfrac{1+\rho_t}{2}\, g_t, \qquad x_{-1} = 0,\\
        \theta_t &= \theta_{t-1} - x_t,

    with :math:`\rho_t` from the cooling schedule, ``t`` counted from 0 (the first step uses
    :math:`\rho_0` and, the buffer being zero, is an SGD step of size
    :math:`\mathrm{lr}(1+\rho_0)/2`). With a constant :math:`\rho` this is exactly heavy ball
    (:func:`physopt_ref.heavy_ball`) with momentum :math:`\beta = \rho` and step
    :math:`\eta = \mathrm{lr}(1+\rho)/2` (its velocity is :math:`v = -x`). Once cooled
    (:math:`t \ge S`) it is SGD with step :math:`\mathrm{lr}/2`.

    Parameters
    ----------
    lr : float, per-run array or schedule
        :math:`\mathrm{lr} = \Delta t^2 \ge 0` ("a squared timestep dt^2", README; 0 is
        accepted: from the start nothing moves, mid-run the velocity decays with :math:`\rho`).
        Default 0.01 (TF class signature, README, and every CIFAR recipe, spec §a.4). A callable
        of the step count is a schedule (:mod:`physopt_ref.core.schedules`; the authors use a
        constant).
    rho0 : float
        Initial momentum coefficient :math:`\rho_0 \in [0, 1)`. Default 0.99 (TF class, README,
        all recipes, spec §a.4).
    cool_steps : int or None
        Cooling length :math:`S \ge 1` (the authors set it to the total number of iterations);
        :math:`\alpha = (1-\rho_0)^{1/S}`. Default 78200 = 200 epochs × 391 iterations, the
        ResNet-34/CIFAR-10 PyTorch benchmark (``optimizers/__init__.py`` at ``b3810c7``) and the
        2024 ``Coolmom`` class default. Ignored (may be None) for ``schedule="constant"``.
    schedule : str or callable
        ``"paper"`` (default; Eq. 20, :func:`rho_paper`), ``"geometric_temperature"``
        (:func:`rho_geometric_temperature`), ``"linear_temperature"``
        (:func:`rho_linear_temperature`), ``"constant"`` (:math:`\rho_t = \rho_0`), or a
        traceable callable ``t -> rho_t`` of the step count as a float array (values checked
        to lie in [0, 1) with :func:`physopt_ref.debug_checks`; ``rho0`` and ``cool_steps``
        are then unused). The named schedules are computed on the device from the count
        (:mod:`physopt_ref.core.schedules`).
    weight_decay : float, per-run array or schedule
        Coupled L2 coefficient :math:`\lambda \ge 0` added to the gradient before the update
        (``d_p.add(p, alpha=weight_decay)`` in the authors' PyTorch class). Default 0; the CIFAR
        recipes use 5e-4. A keyword for :func:`physopt_ref.chain` with
        :func:`~physopt_ref.transforms.coupled_weight_decay` in front of the step (the one
        implementation of weight decay), recorded among the hyperparameters.

    Returns
    -------
    Optimizer
        State: :class:`CoolMomentumState`; :func:`coolmomentum_temperature` reads the mean
        squared step.

    Notes
    -----
    Differences from the authors' code (spec §a.2, §a.3, §a.7 and "disagree" items 6–9):

    1. The first step is an ordinary momentum step from a zero buffer, as in the TF class and
       the PyTorch benchmark class. The README-advertised PyTorch ``SGD`` (``coolmom_pytorch.py``)
       discards the first gradient (a no-op step, since 2021-07-06) and, before that fix, took
       :math:`\theta \mathrel{+}= g` (gradient ascent); we reproduce neither.
    2. ``t`` counts from 0 (TF class, PyTorch benchmark class); ``coolmom_pytorch.py`` is
       1-based (it uses :math:`\alpha^1` on the first call).
    3. One step counter for the whole tree, as in the benchmark class (``coolmom_pytorch.py``
       keeps one per parameter group).
    4. :math:`\rho_t = 0` exactly for :math:`t \ge S`, and the paper schedule is evaluated as
       :math:`(1-\rho_0)^{1-t/S}` rather than :math:`(1-\rho_0)/\alpha^t` (same value up to
       rounding, no underflow of :math:`\alpha^t`).
    5. We parametrise the cooling by :math:`S`, not by :math:`\alpha` (the TF class takes
       :math:`\alpha`, default 0.99997); :math:`\alpha = (1-\rho_0)^{1/S}` is the README's rule.
    6. Weight decay does not modify the caller's gradient (the benchmark class adds it to
       ``p.grad`` in place). No Nesterov variant, no dampening (as in the authors' code).
    7. The ImageNet recipe's 5-epoch momentum-0 warm-up and its TF ``MomentumOptimizer``
       accumulation are not part of the optimizer (spec §a.4); the 2024 classes' logging and
       ``period = 391`` are left out.
    """
    wd, decay = weight_decay_keyword(weight_decay)
    hp = {
        "lr": check_real_or_schedule("lr", lr, symbol="lr = Δt²", low=0.0),
        "rho0": check_real("rho0", rho0, symbol="ρ₀", low=0.0, high=1.0, high_open=True),
        "cool_steps": None,
        "schedule": schedule,
        "weight_decay": wd,  # recorded; applied by the coupled_weight_decay transform
    }
    if callable(schedule) and not isinstance(schedule, str):
        rho_of_t = check_real_or_schedule(
            "schedule", schedule, symbol="ρ_t", low=0.0, high=1.0, high_open=True
        )
    else:
        if cool_steps is not None:
            hp["cool_steps"] = check_int("cool_steps", cool_steps, symbol="S", low=1)
        rho_of_t = coolmomentum_schedule(schedule, hp["rho0"], hp["cool_steps"]).bind(
            _RHO_BOUNDS
        )
    optimizer = Optimizer(
        "coolmomentum",
        hp,
        derived={"rho": rho_of_t},
        init=_coolmomentum_init,
        update=_coolmomentum_update,
        state_type=CoolMomentumState,
        elementwise=True,
    )
    return with_transforms(optimizer, decay, hp)


def _coolmomentum_init(hp: Hyper, ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
    return {"displacement": ctx.zeros_like(leaves)}


def _coolmomentum_update(
    hp: Hyper,
    ctx: StepContext,
    params: list[Any],
    grads: list[Any],
    state: CoolMomentumState,
    loss: Any,
) -> tuple[list[Any], dict[str, Any]]:
    rho = ctx.hp(hp["rho"])
    coef = ctx.hp(hp["lr"]) * (1.0 + rho) / 2.0
    disp = tuple(
        ctx.leaf(rho, x) * x + ctx.leaf(coef, g) * g
        for x, g in zip(state.displacement, grads, strict=True)
    )
    new = [p - x for p, x in zip(params, disp, strict=True)]
    return new, {"displacement": disp}


register(
    "coolmomentum",
    coolmomentum,
    test_hyperparameters={
        "lr": 0.2,
        "rho0": 0.9,
        "cool_steps": 4,
        "weight_decay": 0.01,
    },
    family="coolmomentum",
    sweep={"lr": (0.05, 0.2, 0.4), "weight_decay": (0.0, 0.01, 0.1)},
)
