r"""A global search around any optimizer: an ensemble of physics runs, polished, hopped, restarted.

The physics steps of this library are local dynamics: alone, a run settles in one basin. The
driver :func:`search` turns them into a global method the way basin hopping (Wales & Doye 1997,
J. Phys. Chem. A 101, 5111) turns a local minimiser into one. It keeps ``members`` *walkers*;
every round

1. starts each walker from a *hop* of its current point (a uniform displacement in
   :math:`[-s, s]` per coordinate, as SciPy's ``basinhopping`` takes its steps), or from a fresh
   start (the first round, and a *restart* after a divergence or ``patience`` rounds without
   improvement);
2. runs the ensemble of physics runs from these starts with :func:`physopt_ref.run` (or
   :func:`physopt_ref.run_chunked` on an executor), ``round_steps`` steps at most;
3. *polishes* each run's best point with SciPy's L-BFGS-B (``polish="lbfgsb"``), so that the
   walkers compare local minima, not points on the way to them;
4. accepts each walker's new minimum with the Metropolis rule at ``temperature``
   (:math:`f_\text{new} < f` or with probability :math:`e^{-(f_\text{new}-f)/T}`);
5. adapts the hop size :math:`s` to the acceptance rate (times 0.9 below the wanted rate
   ``accept_rate``, divided by 0.9 above it: SciPy's ``AdaptiveStepsize`` rule).

Evaluations are counted honestly: one *evaluation* is one value-and-gradient of the objective
at one point. A physics round of an ensemble of ``m`` runs costs ``m`` evaluations per call of
the objective (the run loop evaluates every member at every step, stopped ones included:
``Trace.evaluations * m``), and the polish counts every call SciPy makes. The search never
exceeds ``budget``: a round is shortened to what is left, and a polish is cut off (keeping the
best point it has seen) when the budget runs out.

The random numbers of the driver (starts, hops, Metropolis draws) come from NumPy's
``Generator`` seeded with ``seed``, on the host, between rounds; the steps themselves stay on
the device. The optimizer is used as given in every round (so its own seeded draws repeat from
round to round, from other starts).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from physopt_ref.core.contract import Optimizer
from physopt_ref.core.validate import check_int, check_real
from physopt_ref.runner.chunked import run_chunked
from physopt_ref.runner.loop import run

__all__ = ["SearchResult", "search"]

#: Hop-size factor per round (SciPy's ``AdaptiveStepsize`` uses 0.9).
_HOP_FACTOR = 0.9

Sampler = Callable[[np.random.Generator, int], np.ndarray]


class _BudgetExhaustedError(Exception):
    """Raised inside a polish when the evaluation budget is used up."""


@dataclass(frozen=True)
class SearchResult:
    """What :func:`search` found, and how.

    Attributes
    ----------
    best_x : numpy.ndarray
        The best point seen (float64, shape ``(dim,)``).
    best_value : float
        Its objective value.
    evaluations : int
        Value-and-gradient evaluations spent (at most the budget).
    rounds : int
        Physics rounds run.
    history : numpy.ndarray
        Shape ``(n, 2)``: the evaluations spent and the best value so far after every phase (a
        physics round or a polish), for runtime plots.
    provenance : dict
        Where the best point came from: ``round``, ``member``, ``origin`` (``"start"``,
        ``"hop"`` or ``"restart"``), ``phase`` (``"physics"`` or ``"polish"``) and
        ``evaluations`` (spent when it was found).
    restarts : int
        Walkers restarted from a fresh start (divergence or stagnation).
    accepted : int
        Metropolis acceptances over the whole search.
    hop_sizes : numpy.ndarray
        The hop size used in each round.
    reached_target : bool
        Whether ``best_value <= target`` (False without a target).
    message : str
        Why the search stopped.
    """

    best_x: np.ndarray
    best_value: float
    evaluations: int
    rounds: int
    history: np.ndarray
    provenance: dict[str, Any]
    restarts: int
    accepted: int
    hop_sizes: np.ndarray
    reached_target: bool
    message: str
    walker_values: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _default_sampler(problem: Any, scale: float) -> Sampler:
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


class _Counter:
    """The objective on the host (NumPy float64), counting evaluations against the budget."""

    def __init__(self, problem: Any, budget: int) -> None:
        self.problem, self.budget, self.used = problem, budget, 0

    def left(self) -> int:
        return self.budget - self.used

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        if self.used >= self.budget:
            raise _BudgetExhaustedError
        self.used += 1
        f, g = self.problem.value_and_grad(np.asarray(x, dtype=np.float64))
        return float(f), np.asarray(g, dtype=np.float64)


def _polish(counter: _Counter, x: np.ndarray, f: float, maxfun: int) -> tuple[np.ndarray, float]:
    """L-BFGS-B from ``x`` (value ``f``); the best point seen, also when the budget runs out."""
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
        minimize(fun, x, jac=True, method="L-BFGS-B",
                 options={"maxfun": max(1, min(maxfun, counter.left())), "maxiter": maxfun})
    except _BudgetExhaustedError:
        pass
    return best_x[0], float(best_f[0])


def _check_search_args(optimizer: Any, problem: Any, budget: int, members: int,
                       round_steps: int, polish: Any, polish_maxfun: int, temperature: float,
                       hop: float, accept_rate: float, patience: int) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be a physopt_ref Optimizer, got {type(optimizer).__name__}"
        )
    if not (hasattr(problem, "value_and_grad") and hasattr(problem, "dim")):
        raise TypeError("problem must be a physopt_ref.problems.Problem (value_and_grad, dim), "
                        f"got {type(problem).__name__}")
    check_int("members", members, symbol="m", low=1)
    check_int("round_steps", round_steps, symbol="K", low=1)
    check_int("polish_maxfun", polish_maxfun, symbol="n_polish", low=1)
    check_int("patience", patience, symbol="P", low=1)
    check_int("budget", budget, symbol="B", low=2 * members)
    if polish not in ("lbfgsb", None):
        raise ValueError(f"polish must be 'lbfgsb' or None, got {polish!r}")
    check_real("temperature", temperature, symbol="T", low=0.0, low_open=True)
    check_real("hop", hop, symbol="s", low=0.0, low_open=True)
    check_real("accept_rate", accept_rate, symbol="a", low=0.0, high=1.0, low_open=True,
               high_open=True)


def search(
    optimizer: Optimizer,
    problem: Any,
    *,
    budget: int,
    members: int = 16,
    round_steps: int = 200,
    polish: str | None = "lbfgsb",
    polish_maxfun: int = 2000,
    temperature: float = 1.0,
    hop: float = 0.5,
    accept_rate: float = 0.5,
    patience: int = 5,
    target: float | None = None,
    seed: int = 0,
    sampler: Sampler | None = None,
    start_scale: float = 1.0,
    backend: str = "numpy",
    dtype: str = "float64",
    compile: bool = False,
    executor: Any = None,
    chunk_size: int | None = None,
) -> SearchResult:
    r"""Global search: physics runs of ``optimizer`` as the local engine of basin hopping.

    Parameters
    ----------
    optimizer : Optimizer
        Any optimizer of this library (a chain too), as :func:`physopt_ref.run` takes it.
    problem : Problem
        A :class:`physopt_ref.problems.Problem` (its batched ``value_and_grad`` runs the
        ensemble; its NumPy float64 evaluation serves the polish).
    budget : int
        Value-and-gradient evaluations to spend, at least ``2 * members``.
    members : int
        Walkers, run as one ensemble per round.
    round_steps : int
        Most optimizer steps per round (a round stops early when every run has stopped).
    polish : {"lbfgsb", None}
        Polish each run's best point with SciPy's L-BFGS-B (at most ``polish_maxfun``
        evaluations each), or not.
    temperature : float
        Metropolis temperature :math:`T > 0` (SciPy's ``basinhopping`` default, 1.0).
    hop : float
        Initial hop size :math:`s` (SciPy's default ``stepsize``, 0.5), adapted every round.
    accept_rate : float
        The wanted acceptance rate of the adaptation (SciPy's default, 0.5).
    patience : int
        Rounds without improvement of a walker's best after which it restarts.
    target : float, optional
        Stop as soon as a value ``<= target`` is found (also passed to the runs).
    seed : int
        Seed of the driver's host generator (starts, hops, Metropolis draws).
    sampler : callable, optional
        ``sampler(rng, n) -> (n, dim)`` fresh starts; default: the problem's
        ``random_starts`` if it has one, else uniform in its bounds, else its start plus
        ``start_scale`` times standard normal noise.
    backend, dtype : str
        Where the physics runs (:func:`physopt_ref.backends.get_namespace` names).
    compile : bool
        Passed to :func:`physopt_ref.run` (JAX: each step one ``jax.jit`` call).
    executor, chunk_size :
        With an executor, each round runs through :func:`physopt_ref.run_chunked` (Dask or any
        map-like executor); the result equals the unchunked search exactly.

    Returns
    -------
    SearchResult
    """
    _check_search_args(optimizer, problem, budget, members, round_steps, polish, polish_maxfun,
                       temperature, hop, accept_rate, patience)
    if target is not None:
        target = check_real("target", target, symbol="f*")
    if compile and executor is not None:
        raise ValueError("compile=True and executor= cannot be combined (run_chunked has no "
                         "compiled form)")
    from physopt_ref.backends import get_namespace, to_numpy

    xp = get_namespace(backend)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    xdtype = getattr(xp, dtype)
    sample = sampler or _default_sampler(problem, start_scale)
    rng = np.random.default_rng(seed)
    counter = _Counter(problem, budget)

    def fresh(n: int) -> np.ndarray:
        starts = np.asarray(sample(rng, n), dtype=np.float64)
        if starts.shape != (n, problem.dim):
            raise ValueError(f"sampler must return shape {(n, problem.dim)}, got {starts.shape}")
        return starts

    cur_x = fresh(members)
    cur_f = np.full(members, np.inf)
    best_walker = np.full(members, np.inf)
    stale = np.zeros(members, dtype=int)
    origin = ["start"] * members
    best: dict[str, Any] = {"x": cur_x[0].copy(), "f": np.inf, "prov": {}}
    history: list[tuple[int, float]] = []
    hops: list[float] = []
    restarts = accepted = rounds = 0
    starts = cur_x.copy()
    message = "budget used up"

    def consider(x: np.ndarray, f: float, k: int, phase: str) -> None:
        if math.isfinite(f) and f < best["f"]:
            best["x"], best["f"] = np.array(x, dtype=np.float64), float(f)
            best["prov"] = {"round": rounds, "member": k, "origin": origin[k], "phase": phase,
                            "evaluations": counter.used}

    while True:
        steps = min(round_steps, counter.left() // members - 1)
        if steps < 1:
            break
        x0 = xp.asarray(starts, dtype=xdtype)
        kwargs: dict[str, Any] = {"target": target, "record_every": steps}
        if executor is None:
            trace = run(optimizer, problem, x0, steps, compile=compile, **kwargs)
        else:
            trace = run_chunked(optimizer, problem, x0, steps, executor=executor,
                                chunk_size=chunk_size, **kwargs)
        counter.used += trace.evaluations * members
        rounds += 1
        hops.append(hop)
        run_x = np.asarray(to_numpy(trace.best_x), dtype=np.float64)
        run_f = np.asarray(trace.best_value, dtype=np.float64)
        for k in range(members):
            consider(run_x[k], run_f[k], k, "physics")
        history.append((counter.used, best["f"]))
        new_x, new_f = run_x.copy(), run_f.copy()
        if polish == "lbfgsb":
            for k in np.argsort(np.where(np.isfinite(run_f), run_f, np.inf)):
                if counter.left() <= 0:
                    break
                if not np.all(np.isfinite(run_x[k])):
                    continue
                new_x[k], new_f[k] = _polish(counter, run_x[k], float(run_f[k]), polish_maxfun)
                consider(new_x[k], float(new_f[k]), int(k), "polish")
            history.append((counter.used, best["f"]))
        if target is not None and best["f"] <= target:
            message = "reached the target value"
            break
        # Metropolis acceptance, walker by walker.
        u = rng.random(members)
        with np.errstate(over="ignore", invalid="ignore"):
            accept = np.isfinite(new_f) & (
                (new_f < cur_f) | (u < np.exp(-(new_f - cur_f) / temperature))
            )
        hopped = np.array([o == "hop" for o in origin])
        accepted += int(accept.sum())
        cur_x[accept], cur_f[accept] = new_x[accept], new_f[accept]
        improved = np.isfinite(new_f) & (new_f < best_walker)
        best_walker = np.where(improved, new_f, best_walker)
        stale = np.where(improved, 0, stale + 1)
        if hopped.any():
            rate = accept[hopped].mean()
            hop = hop / _HOP_FACTOR if rate > accept_rate else hop * _HOP_FACTOR
        # Next starts: hops of the current points; restarts after divergence or stagnation.
        restart = (~np.isfinite(cur_f)) | (stale >= patience)
        starts = cur_x + rng.uniform(-hop, hop, size=cur_x.shape)
        origin = ["hop"] * members
        if restart.any():
            n = int(restart.sum())
            starts[restart] = fresh(n)
            cur_f[restart], stale[restart], best_walker[restart] = np.inf, 0, np.inf
            for k in map(int, np.flatnonzero(restart)):
                origin[k] = "restart"
            restarts += n
    return SearchResult(
        best_x=best["x"], best_value=float(best["f"]), evaluations=counter.used, rounds=rounds,
        history=np.asarray(history, dtype=np.float64).reshape(-1, 2), provenance=best["prov"],
        restarts=restarts, accepted=accepted, hop_sizes=np.asarray(hops),
        reached_target=bool(target is not None and best["f"] <= target), message=message,
        walker_values=cur_f.copy(),
    )
