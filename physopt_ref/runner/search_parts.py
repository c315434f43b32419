r"""The host-side parts of :func:`physopt_ref.search`: the counted objective, the L-BFGS-B polish,
fresh starts, hops and the Metropolis rule.

Everything here runs on the host in NumPy float64 between the driver's physics rounds; the
physics steps themselves stay on their device (:mod:`physopt_ref.runner.search`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["BudgetExhaustedError", "Counter", "Crossover", "Perturb", "Sampler",
           "default_crossover", "default_perturb", "default_sampler", "distinct", "metropolis",
           "polish_lbfgsb", "uniform_hop"]

Sampler = Callable[[np.random.Generator, int], np.ndarray]
Perturb = Callable[[np.random.Generator, np.ndarray, float], np.ndarray]
Crossover = Callable[[np.random.Generator, np.ndarray, np.ndarray], np.ndarray]


class BudgetExhaustedError(Exception):
    """Raised inside a polish when the evaluation budget is used up."""


def default_sampler(problem: Any, scale: float) -> Sampler:
    """Fresh starts: the problem's own random starts, its bounds, or its start plus noise."""
    if hasattr(problem, "random_starts"):  # random_starts(n, seed): cluster problems
        return lambda rng, n: np.asarray(
            problem.random_starts(n, int(rng.integers(2**31 - 1))), dtype=np.float64)
    bounds = getattr(problem, "bounds", None)
    if bounds is not None:
        low, high = (np.broadcast_to(np.asarray(b, dtype=np.float64), (problem.dim,))
                     for b in bounds)
        return lambda rng, n: rng.uniform(low, high, size=(n, problem.dim))
    x0 = np.asarray(problem.x0, dtype=np.float64)
    return lambda rng, n: x0 + scale * rng.standard_normal((n, x0.size))


def uniform_hop(rng: np.random.Generator, x: np.ndarray, size: float) -> np.ndarray:
    """SciPy ``basinhopping``'s step: a uniform displacement in ``[-size, size]`` per coordinate."""
    return x + rng.uniform(-size, size, size=x.shape)


def default_perturb(problem: Any) -> Perturb:
    """Hops: the problem's own move ``problem.perturb(rng, x, size)`` (cluster problems), else
    SciPy's uniform displacement in ``[-size, size]`` per coordinate."""
    own = getattr(problem, "perturb", None)
    return own if callable(own) else uniform_hop


def default_crossover(problem: Any) -> Crossover | None:
    """Crossovers: the problem's own ``problem.crossover(rng, x, y)`` (cluster problems: Deaven
    & Ho's cut and splice), else none."""
    own = getattr(problem, "crossover", None)
    return own if callable(own) else None


def distinct(values: np.ndarray, tol: float) -> np.ndarray:
    r"""Which entries of ``values`` are the first (lowest-index among equal ones, in order of
    value) of their level: finite, and farther than :math:`\tau\max(1, |f|)` from every lower
    value kept (``tol`` = :math:`\tau`). Walkers in the same minimum have equal values."""
    values = np.asarray(values, dtype=np.float64)
    keep = np.zeros(values.shape, dtype=bool)
    last = -np.inf
    for k in np.argsort(values, kind="stable"):
        f = values[k]
        if np.isfinite(f) and f - last > tol * max(1.0, abs(f)):
            keep[k], last = True, f
    return keep


class Counter:
    """The objective on the host (NumPy float64), counting evaluations against the budget.

    ``used`` is the number of value-and-gradient evaluations spent so far (the driver adds the
    physics rounds' evaluations to it); a call past the budget raises
    :class:`BudgetExhaustedError` before it evaluates anything.
    """

    def __init__(self, problem: Any, budget: int) -> None:
        self.problem, self.budget, self.used = problem, budget, 0

    def left(self) -> int:
        return self.budget - self.used

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        if self.used >= self.budget:
            raise BudgetExhaustedError
        self.used += 1
        f, g = self.problem.value_and_grad(np.asarray(x, dtype=np.float64))
        return float(f), np.asarray(g, dtype=np.float64)


@functools.cache
def _blas_threads() -> Any:
    """The process's thread pools (``threadpoolctl``), found once, after SciPy's BLAS loaded
    (finding them costs about 2 ms, a tenth of a short LJ38 polish)."""
    import scipy.optimize  # noqa: F401  (loads SciPy's BLAS before the libraries are listed)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def polish_lbfgsb(counter: Counter, x: np.ndarray, f: float,
                  maxfun: int) -> tuple[np.ndarray, float]:
    """L-BFGS-B from ``x`` (value ``f``, ``inf`` when unknown); the best point seen, also when
    the budget runs out (SciPy's default tolerances).

    The minimisation runs with the BLAS limited to one thread (``threadpoolctl``, restored on
    exit): L-BFGS-B's small dense algebra (a few :math:`2m \times 2m` matrices) gains nothing
    from threads, and on a loaded machine OpenBLAS's threads waiting for each other made
    every L-BFGS-B iteration cost milliseconds, 5-20 times the LJ38 evaluation itself
    (``benchmarks/bench_search.py --profile``). The result is the same.
    """
    from scipy.optimize import minimize

    best_f, best_x = [f], [x]

    def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = counter(v)
        if math.isfinite(value) and value < best_f[0]:
            best_f[0], best_x[0] = value, np.array(v, dtype=np.float64)
        if not math.isfinite(value):
            # L-BFGS-B cannot use a non-finite value: hand it a large finite one.
            return 1e300, np.zeros_like(v)
        return value, grad

    try:
        with _blas_threads().limit(limits=1, user_api="blas"):
            minimize(fun, x, jac=True, method="L-BFGS-B",
                     options={"maxfun": max(1, min(maxfun, counter.left())), "maxiter": maxfun})
    except BudgetExhaustedError:
        pass
    return best_x[0], float(best_f[0])


def metropolis(new_f: np.ndarray, cur_f: np.ndarray, u: np.ndarray,
               temperature: float) -> np.ndarray:
    r"""Which candidates the Metropolis rule accepts: finite ones with :math:`f_\text{new} < f`,
    or with probability :math:`e^{-(f_\text{new} - f)/T}` (the uniform draws ``u``)."""
    new_f, cur_f = np.asarray(new_f, dtype=np.float64), np.asarray(cur_f, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.isfinite(new_f) & (
            (new_f < cur_f) | (u < np.exp(-(new_f - cur_f) / temperature))
        )
