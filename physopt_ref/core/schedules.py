r"""Schedules: hyperparameters that change with the step count, traceable by jit and compile.

A *schedule* is a function of the number of steps already taken, written with Array API
operations, so that it runs on the device and inside ``jax.jit``, ``jax.lax.scan`` and
``torch.compile``. The library calls it as ``schedule(t)`` with

* ``t``: the step count of each run (0 on the first step), as a float array of the parameters'
  dtype and the ensemble's batch shape (exact up to :math:`2^{24}` steps in float32 and
  :math:`2^{53}` in float64),

and uses the result (a Python number or an array broadcastable to the batch shape) in place of
the constant. Any callable passed where a schedule is allowed is treated this way, so
``lr=lambda t: 0.1 / (1 + t)`` traces. Range checks of its values run only with the debug
checks on (:func:`physopt_ref.debug_checks`), since they need the host.

A function that needs a Python ``int`` (a lookup table, a branch) can still be used, wrapped in
:func:`host_schedule`: documented as **not traceable**, it moves the step count to the host on
every step (a device synchronisation) and fails under ``jax.jit`` / ``torch.compile``.

The schedules of the papers live here, each one formula evaluated for Python numbers and arrays
alike:

* :func:`damping_ramp` — Dyna's damping-ratio ramp (Han 2018, Eq. 22);
* :func:`rho_paper`, :func:`rho_geometric_temperature`, :func:`rho_linear_temperature` and
  :func:`coolmomentum_schedule` — CoolMomentum's cooling schedules (Borysenko & Byshkin 2021,
  Eq. 20, and the authors' 2024 classes; spec ``coolmomentum-gravity-dyna-yang.md`` §a.3);
* :func:`constant`, :func:`exponential_decay`, :func:`cosine_decay` — common step-size schedules.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from physopt_ref.core.validate import (
    Bounds,
    check_choice,
    check_int,
    check_real,
    is_array,
)

__all__ = [
    "COOLING_SCHEDULES",
    "CoolingSchedule",
    "DampingRamp",
    "HostSchedule",
    "Schedule",
    "check_real_or_schedule",
    "constant",
    "coolmomentum_schedule",
    "cosine_decay",
    "damping_ramp",
    "exponential_decay",
    "host_schedule",
    "rho_geometric_temperature",
    "rho_linear_temperature",
    "rho_paper",
]


class Schedule:
    """A traceable schedule ``t -> value`` (see the module notes).

    Wrap any callable with ``Schedule(fn)``; subclasses override :meth:`__call__`. When a
    factory accepts the schedule for a hyperparameter it binds that parameter's name and
    interval (``bounds``) to it, for the debug-mode range check and its message.
    """

    host = False  #: evaluated on the host with a Python int (see :class:`HostSchedule`)

    def __init__(self, fn: Callable[[Any], Any] | None = None) -> None:
        if fn is not None and not callable(fn):
            raise TypeError(f"a schedule must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.bounds: Any = None

    def __call__(self, t: Any) -> Any:
        if self.fn is None:
            raise NotImplementedError("Schedule subclasses implement __call__")
        return self.fn(t)

    def bind(self, bounds: Any) -> Schedule:
        """A copy that carries the hyperparameter's name and interval."""
        out = copy.copy(self)
        out.bounds = bounds
        return out

    def __repr__(self) -> str:
        return f"schedule({self.fn!r})" if self.fn is not None else type(self).__name__


class HostSchedule(Schedule):
    """A schedule of the Python ``int`` step count: **not traceable** (see :func:`host_schedule`).

    Each step moves the count to the host (one synchronisation on an accelerator) and calls
    ``fn(count)`` once per distinct count in the ensemble.
    """

    host = True

    def __repr__(self) -> str:
        return f"host_schedule({self.fn!r})"


def host_schedule(fn: Callable[[int], float]) -> HostSchedule:
    """Use ``fn(count: int) -> float`` as a schedule, evaluated on the host (not traceable).

    This is the documented escape hatch for schedules that need a Python ``int`` (tables,
    branches). It synchronises the device on every step and cannot run under ``jax.jit`` or
    ``torch.compile``; prefer a plain callable written with array operations.
    """
    if not callable(fn):
        raise TypeError(f"host_schedule needs a callable, got {type(fn).__name__}")
    return HostSchedule(fn)


# ---------------------------------------------------------------------------------------------
# Helpers: one formula for Python numbers and arrays


def _is_number(t: Any) -> bool:
    return isinstance(t, int | float) and not isinstance(t, bool)


def _run_scalar(fn: Callable[[Any], Any], t: Any) -> Any:
    """Evaluate an array formula at a Python number ``t`` (float64 on the host)."""
    if _is_number(t):
        import array_api_compat.numpy as npx

        return float(fn(npx.asarray(float(t), dtype=npx.float64)))
    return fn(t)


def _clip01(t: Any) -> Any:
    xp = array_namespace(t)
    return xp.clip(t, 0.0, 1.0)


class _Constant(Schedule):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def __call__(self, t: Any) -> Any:
        return self.value

    def __repr__(self) -> str:
        return f"constant({self.value})"


def constant(value: float) -> Schedule:
    """The schedule that is ``value`` at every step."""

    return _Constant(check_real("value", value, symbol="v"))


class _ExponentialDecay(Schedule):
    def __init__(self, init: float, rate: float, steps: float) -> None:
        super().__init__()
        self.init, self.rate, self.steps = init, rate, steps

    def __call__(self, t: Any) -> Any:
        return self.init * self.rate ** (t / self.steps)

    def __repr__(self) -> str:
        return f"exponential_decay({self.init}, rate={self.rate}, steps={self.steps})"


def exponential_decay(init: float, rate: float, steps: float) -> Schedule:
    r""":math:`v_t = v_0\, r^{t/T}`: multiplied by ``rate`` every ``steps`` steps."""

    init = check_real("init", init, symbol="v₀")
    rate = check_real("rate", rate, symbol="r", low=0.0, low_open=True)
    steps = check_real("steps", steps, symbol="T", low=0.0, low_open=True)
    return _ExponentialDecay(init, rate, steps)


class _CosineDecay(Schedule):
    def __init__(self, init: float, steps: float, final: float) -> None:
        super().__init__()
        self.init, self.steps, self.final = init, steps, final

    def __call__(self, t: Any) -> Any:
        xp = array_namespace(t) if not _is_number(t) else None
        if xp is None:
            return _run_scalar(self, t)
        frac = _clip01(t / self.steps)
        return self.final + (self.init - self.final) * 0.5 * (1.0 + xp.cos(math.pi * frac))

    def __repr__(self) -> str:
        return f"cosine_decay({self.init}, steps={self.steps}, final={self.final})"


def cosine_decay(init: float, steps: float, final: float = 0.0) -> Schedule:
    r""":math:`v_t = v_f + (v_0 - v_f)\,\tfrac12(1 + \cos(\pi \min(t/T, 1)))`.

    Loshchilov & Hutter, "SGDR", ICLR 2017, Eq. 5 (one cycle, no restart).
    """

    init = check_real("init", init, symbol="v₀")
    steps = check_real("steps", steps, symbol="T", low=0.0, low_open=True)
    final = check_real("final", final, symbol="v_f")
    return _CosineDecay(init, steps, final)


# ---------------------------------------------------------------------------------------------
# Dyna's damping ramp (Han 2018, Eq. 22)


class DampingRamp(Schedule):
    r"""The damping-ratio schedule of Eq. 22 (Han 2018), generalised to any start and end ratio.

    .. math::

        \frac{1}{2\zeta(t)} = \frac{1}{2\zeta_0}
            + \Big(\frac{1}{2\zeta_1} - \frac{1}{2\zeta_0}\Big) \min\big(1, (t/T)^2\big),

    which with :math:`\zeta_0 = 0.5`, :math:`\zeta_1 = 1` is the paper's
    :math:`1/(2\zeta) = 1 - 0.5\min(1, (t/T)^2)`. ``ramp(count)`` evaluates it at Algorithm 1's
    step index :math:`t = \text{count} + 1` (the library calls schedules with the number of
    steps already taken; Algorithm 1 increments :math:`t` before using it). ``count`` may be a
    Python number (the result is a float) or a float array.
    """

    def __init__(self, T: float, zeta_start: float = 0.5, zeta_end: float = 1.0) -> None:
        super().__init__()
        self.T, self.zeta_start, self.zeta_end = T, zeta_start, zeta_end

    def __call__(self, count: Any) -> Any:
        if _is_number(count):
            return _run_scalar(self, count)
        frac = _clip01(((count + 1.0) / self.T) ** 2)
        start, end = 0.5 / self.zeta_start, 0.5 / self.zeta_end
        return 0.5 / (start + (end - start) * frac)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DampingRamp) and (self.T, self.zeta_start, self.zeta_end) == (
            other.T,
            other.zeta_start,
            other.zeta_end,
        )

    __hash__ = Schedule.__hash__

    def __repr__(self) -> str:
        return f"damping_ramp(T={self.T}, zeta_start={self.zeta_start}, zeta_end={self.zeta_end})"


def damping_ramp(T: float, zeta_start: float = 0.5, zeta_end: float = 1.0) -> DampingRamp:
    r"""The varying damping ratio of Eq. 22 (Han 2018) as a schedule for ``zeta`` / ``b2``.

    Parameters
    ----------
    T : float
        Ramp length in steps, :math:`T > 0`. The paper uses :math:`T = 10 \times n_\text{batches}`
        (10 epochs of 96 batches, Sec. 5).
    zeta_start, zeta_end : float
        :math:`\zeta_0, \zeta_1 \in (0, 2]`; defaults 0.5 and 1.0 give Eq. 22 exactly ("a varying
        damping ratio increasing from 0.5 to 1.0", Sec. 5). The ratio moves monotonically from
        :math:`\zeta_0` towards :math:`\zeta_1` and stays at :math:`\zeta_1` from :math:`t = T`.
    """

    T = check_real("T", T, symbol="T", low=0.0, low_open=True)
    z0 = check_real("zeta_start", zeta_start, symbol="ζ₀", low=0.0, high=2.0, low_open=True)
    z1 = check_real("zeta_end", zeta_end, symbol="ζ₁", low=0.0, high=2.0, low_open=True)
    return DampingRamp(T, z0, z1)


# ---------------------------------------------------------------------------------------------
# CoolMomentum's cooling schedules (spec §a.3)


def _check_cooling_args(rho0: float, cool_steps: int) -> tuple[float, int]:

    rho0 = check_real("rho0", rho0, symbol="ρ₀", low=0.0, high=1.0, high_open=True)
    cool_steps = check_int("cool_steps", cool_steps, symbol="S", low=1)
    return rho0, cool_steps


def _check_t(t: Any) -> Any:

    if isinstance(t, int | np.integer) or _is_number(t):
        return check_int("t", t, symbol="t", low=0)
    return t


def _cooled(t: Any, cool_steps: int, rho: Any) -> Any:
    """``rho`` clipped at 0, and exactly 0 from ``t = S`` on."""
    xp = array_namespace(t)
    rho = xp.clip(rho, 0.0, None)
    return xp.where(t >= cool_steps, xp.zeros_like(rho), rho)


def _progress(t: Any, s: int) -> Any:
    """``min(t, S)/S``: past the end the formulas sit at their end value (no overflow)."""
    xp = array_namespace(t)
    return xp.clip(t, None, float(s)) / s


def _paper(t: Any, rho0: float, s: int) -> Any:
    return _cooled(t, s, 1.0 - (1.0 - rho0) ** (1.0 - _progress(t, s)))


def _geometric_temperature(t: Any, rho0: float, s: int) -> Any:
    k = ((1.0 - rho0) / (1.0 + rho0)) ** (1.0 - _progress(t, s))
    return _cooled(t, s, (1.0 - k) / (1.0 + k))


def _linear_temperature(t: Any, rho0: float, s: int) -> Any:
    xp = array_namespace(t)
    frac = _progress(t, s)
    return _cooled(t, s, rho0 * (1.0 - frac) / xp.abs(1.0 - rho0 * frac))


def rho_paper(t: Any, rho0: float, cool_steps: int) -> Any:
    r"""The paper-era cooling schedule (Eq. 20): :math:`1/(1-\rho)` geometric in ``t``.

    .. math::

        \rho_t = \max\!\left(0,\ 1 - \frac{1-\rho_0}{\alpha^t}\right), \qquad
        \alpha = (1-\rho_0)^{1/S},

    evaluated as :math:`1 - (1-\rho_0)^{1-t/S}` (the same number without forming
    :math:`\alpha^t`, which underflows for long runs). ``t`` counts from 0 as in the authors' TF
    class and PyTorch benchmark class, so :math:`\rho_0` is used on the first step; for
    :math:`t \ge S` the result is exactly 0 (the formula's rounding could otherwise leave
    :math:`\pm 10^{-16}` at ``t = S``).

    Parameters
    ----------
    t : int or float array
        0-based step index: a Python int (the result is a float) or an array (traceable).
    rho0 : float
        Initial momentum coefficient :math:`\rho_0 \in [0, 1)`.
    cool_steps : int
        Cooling length :math:`S \ge 1` (total number of iterations in the authors' recipes).
    """
    rho0, cool_steps = _check_cooling_args(rho0, cool_steps)
    return _run_scalar(lambda u: _paper(u, rho0, cool_steps), _check_t(t))


def rho_geometric_temperature(t: Any, rho0: float, cool_steps: int) -> Any:
    r"""The 2024 ``Coolmom`` schedule: the temperature :math:`(1+\rho)/(1-\rho)` geometric.

    .. math::

        k_t = r^{\,1 - t/S},\quad r = \frac{1-\rho_0}{1+\rho_0}, \qquad
        \rho_t = \max\!\left(0, \frac{1-k_t}{1+k_t}\right),

    i.e. :math:`(1+\rho_t)/(1-\rho_t) = ((1+\rho_0)/(1-\rho_0))\,\beta^t` with
    :math:`\beta = r^{1/S}` (authors' ``optimizers/coolmomentum.py`` at ``ecf69ef``, spec §a.3 B).
    ``t`` counts from 0; :math:`\rho_t = 0` for :math:`t \ge S`. Parameters as :func:`rho_paper`.
    """
    rho0, cool_steps = _check_cooling_args(rho0, cool_steps)
    return _run_scalar(lambda u: _geometric_temperature(u, rho0, cool_steps), _check_t(t))


def rho_linear_temperature(t: Any, rho0: float, cool_steps: int) -> Any:
    r"""The 2024 ``Coollin`` schedule: the temperature :math:`(1+\rho)/(1-\rho)` linear in ``t``.

    .. math::

        \rho_t = \max\!\left(0, \frac{\rho_0 (1 - t/S)}{|1 - \rho_0 t/S|}\right),

    so that :math:`(1+\rho_t)/(1-\rho_t) = (1 + \rho_0 - 2\rho_0 t/S)/(1-\rho_0)` falls linearly
    to 1 at ``t = S`` (authors' ``optimizers/cool_lin.py`` at ``85da9e2``, spec §a.3 C). ``t``
    counts from 0; :math:`\rho_t = 0` for :math:`t \ge S`. Parameters as :func:`rho_paper`.
    """
    rho0, cool_steps = _check_cooling_args(rho0, cool_steps)
    return _run_scalar(lambda u: _linear_temperature(u, rho0, cool_steps), _check_t(t))


#: Cooling schedule names -> their formulas (``coolmomentum(schedule=...)``).
COOLING_SCHEDULES: dict[str, Callable[[Any, float, int], Any]] = {
    "paper": _paper,
    "geometric_temperature": _geometric_temperature,
    "linear_temperature": _linear_temperature,
}


class CoolingSchedule(Schedule):
    """A CoolMomentum cooling schedule with :math:`\\rho_0` and :math:`S` bound (traceable)."""

    def __init__(self, name: str, rho0: float, cool_steps: int | None) -> None:
        super().__init__()
        self.name, self.rho0, self.cool_steps = name, rho0, cool_steps

    def __call__(self, t: Any) -> Any:
        if self.name == "constant":
            return self.rho0
        if _is_number(t):
            return _run_scalar(self, t)
        assert self.cool_steps is not None  # only the constant schedule has no S
        return COOLING_SCHEDULES[self.name](t, self.rho0, self.cool_steps)

    def __repr__(self) -> str:
        if self.name == "constant":
            return f"constant(rho0={self.rho0})"
        return f"rho_{self.name}(rho0={self.rho0}, cool_steps={self.cool_steps})"


def coolmomentum_schedule(schedule: str, rho0: float, cool_steps: int | None) -> CoolingSchedule:
    r"""A cooling schedule ``t -> rho_t`` by name, with :math:`\rho_0` and :math:`S` bound.

    ``schedule`` is one of ``"paper"`` (:func:`rho_paper`), ``"geometric_temperature"``
    (:func:`rho_geometric_temperature`), ``"linear_temperature"``
    (:func:`rho_linear_temperature`) or ``"constant"`` (:math:`\rho_t = \rho_0`, the README's
    :math:`\alpha = 1`: "the momentum coefficient is constant … behaves like simple Momentum";
    ``cool_steps`` is then ignored and may be None).
    """

    check_choice("schedule", schedule, (*COOLING_SCHEDULES, "constant"))
    rho0 = check_real("rho0", rho0, symbol="ρ₀", low=0.0, high=1.0, high_open=True)
    if schedule == "constant":
        return CoolingSchedule("constant", rho0, None)
    if cool_steps is None:
        raise ValueError(f"cool_steps (S) is required for the {schedule!r} schedule")
    cool_steps = check_int("cool_steps", cool_steps, symbol="S", low=1)
    return CoolingSchedule(schedule, rho0, cool_steps)


def check_real_or_schedule(
    name: str,
    value: Any,
    *,
    symbol: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float | Schedule | Any:
    """A constant (as :func:`check_real`), a per-run array, or a schedule of the step count.

    A callable is a traceable schedule ``t -> value`` (see :mod:`physopt_ref.core.schedules`); a
    :func:`~physopt_ref.core.schedules.host_schedule` is the documented, non-traceable exception.
    Either is range-checked when evaluated with the debug checks on
    (:func:`physopt_ref.debug_checks`).
    """
    bounds = Bounds(name, symbol, low, high, low_open, high_open)
    if isinstance(value, Schedule | HostSchedule):
        return value.bind(bounds)
    if callable(value) and not is_array(value):
        return Schedule(value).bind(bounds)
    return check_real(
        name,
        value,
        symbol=symbol,
        low=low,
        high=high,
        low_open=low_open,
        high_open=high_open,
        per_run=True,
    )
