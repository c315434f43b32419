r"""A global search around any optimizer: physics runs explore, basin hopping exploits.

The physics steps of this library are local dynamics: alone, a run settles in one basin. The
driver :func:`search` turns them into a global method the way basin hopping (Wales & Doye 1997,
J. Phys. Chem. A 101, 5111) turns a local minimiser into one. It keeps ``members`` *walkers*,
each with a current point (a local minimum once polished); every round

1. **physics**: runs the ensemble of physics runs with :func:`physopt_ref.run` (or
   :func:`physopt_ref.run_chunked` on an executor) from a *hop* of each walker's current point,
   or from a fresh start (the first round, and a *restart* after a divergence or ``patience``
   rounds without improvement), ``round_steps`` steps at most;
2. **polish**: polishes the best ``polish_top`` runs' best points with SciPy's L-BFGS-B
   (``polish="lbfgsb"``), so that walkers compare local minima, not points on the way to them;
   the Metropolis rule at ``temperature`` (:math:`f_\text{new} < f`, or with probability
   :math:`e^{-(f_\text{new}-f)/T}`) decides whether a walker moves to its polished minimum;
3. **basin hopping**: perturb-and-polish steps of the ``elite`` best walkers, in turn, each
   accepted by the Metropolis rule, until the physics rounds are ``physics_share`` of the
   evaluations spent (a hop is the problem's own ``perturb`` move if it has one, clusters:
   move the worst-bound atom to the surface or all atoms a little; else SciPy's uniform
   displacement in :math:`[-s, s]` per coordinate);
4. adapts the hop size :math:`s` to the round's acceptance rate of hops (times 0.9 below the
   wanted rate ``accept_rate``, divided by 0.9 above it: SciPy's ``AdaptiveStepsize`` rule).

With ``crossover_rate`` :math:`c > 0` and a crossover move (the problem's ``crossover``,
clusters: Deaven & Ho's cut and splice, or a ``crossover=`` argument), a share :math:`c` of the
basin-hopping steps are crossovers instead of hops: a child of the walker in turn and another
elite walker, polished, replaces the worst elite walker if it is lower (the selection of a
steady-state genetic algorithm, Deaven & Ho 1995, Phys. Rev. Lett. 75, 288). With
``distinct_tol`` :math:`\tau > 0` the elites are distinct minima (values farther apart than
:math:`\tau\max(1,|f|)`), no step moves a walker into another walker's minimum, and a walker
found in the same minimum as a better one restarts. With ``keep_best`` the walker at the lowest
value never restarts (it goes on hopping from the incumbent).

Without the polish (``polish=None``) a round is the physics alone, and its runs' best points
take part in the Metropolis rule as they are.

Evaluations are counted exactly: one *evaluation* is one value-and-gradient of the objective
at one point. A physics round of an ensemble of ``m`` runs costs ``m`` evaluations per call of
the objective (the run loop evaluates every member at every step, stopped ones included:
``Trace.evaluations * m``), and the polish and the basin hopping count every call SciPy makes;
the hops themselves evaluate nothing. The search never exceeds ``budget``: a round is shortened
to what is left, and a polish is cut off (keeping the best point it has seen) when the budget
runs out. :attr:`SearchResult.phase_evaluations` splits the spending by phase.

The random numbers of the driver (starts, hops, Metropolis draws) come from NumPy's
``Generator`` seeded with ``seed``, on the host, between rounds; the steps themselves stay on
the device. The optimizer is used as given in every round (so its own seeded draws repeat from
round to round, from other starts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from physopt_ref.core.contract import Optimizer
from physopt_ref.core.validate import check_int, check_real
from physopt_ref.runner.chunked import run_chunked
from physopt_ref.runner.loop import run
from physopt_ref.runner.search_parts import (
    Counter,
    Crossover,
    Perturb,
    Sampler,
    default_crossover,
    default_perturb,
    default_sampler,
    distinct,
    metropolis,
    polish_lbfgsb,
)

__all__ = ["SearchResult", "search"]

#: Hop-size factor per round (SciPy's ``AdaptiveStepsize`` uses 0.9).
_HOP_FACTOR = 0.9


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
        physics round, its polish, a basin-hopping phase), for runtime plots.
    provenance : dict
        Where the best point came from: ``round``, ``member``, ``origin`` (``"start"``,
        ``"hop"`` or ``"restart"``: how the walker's physics run started), ``phase``
        (``"physics"``, ``"polish"`` of a physics run's best point, ``"basin_hop"``: a
        perturb-and-polish step of the incumbents, or ``"crossover"``: a polished child of two
        elites, spent in the ``basin_hop`` phase) and ``evaluations`` (spent when it was
        found).
    restarts : int
        Walkers restarted from a fresh start (divergence or stagnation).
    accepted : int
        Metropolis acceptances over the whole search (both phases).
    hop_sizes : numpy.ndarray
        The hop size used in each round.
    reached_target : bool
        Whether ``best_value <= target`` (False without a target).
    message : str
        Why the search stopped.
    walker_values : numpy.ndarray
        Each walker's current (accepted) value at the end.
    phase_evaluations : dict
        Evaluations spent per phase: ``"physics"`` (the runs), ``"polish"`` (polishing their
        best points) and ``"basin_hop"`` (perturb-and-polish steps); they sum to
        ``evaluations``.
    basin_hops : int
        Perturb-and-polish steps taken.
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
    phase_evaluations: dict[str, int] = field(default_factory=dict)
    basin_hops: int = 0


def _check_search_args(optimizer: Any, problem: Any, budget: int, members: int,
                       round_steps: int, polish: Any, polish_maxfun: int, polish_top: int,
                       physics_share: float, elite: int, temperature: float, hop: float,
                       accept_rate: float, patience: int, crossover_rate: float,
                       distinct_tol: float) -> None:
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
    check_int("polish_top", polish_top, symbol="n_top", low=1)
    check_int("elite", elite, symbol="n_elite", low=1)
    check_int("patience", patience, symbol="P", low=1)
    check_int("budget", budget, symbol="B", low=2 * members)
    if polish not in ("lbfgsb", None):
        raise ValueError(f"polish must be 'lbfgsb' or None, got {polish!r}")
    check_real("physics_share", physics_share, symbol="φ", low=0.0, high=1.0, low_open=True)
    check_real("temperature", temperature, symbol="T", low=0.0, low_open=True)
    check_real("hop", hop, symbol="s", low=0.0, low_open=True)
    check_real("accept_rate", accept_rate, symbol="a", low=0.0, high=1.0, low_open=True,
               high_open=True)
    check_real("crossover_rate", crossover_rate, symbol="c", low=0.0, high=1.0)
    check_real("distinct_tol", distinct_tol, symbol="τ", low=0.0)


def search(
    optimizer: Optimizer,
    problem: Any,
    *,
    budget: int,
    members: int = 16,
    round_steps: int = 200,
    polish: str | None = "lbfgsb",
    polish_maxfun: int = 2000,
    polish_top: int = 4,
    physics_share: float = 0.25,
    elite: int = 2,
    temperature: float = 1.0,
    hop: float = 0.5,
    accept_rate: float = 0.5,
    patience: int = 5,
    crossover_rate: float = 0.0,
    distinct_tol: float = 0.0,
    keep_best: bool = False,
    target: float | None = None,
    seed: int = 0,
    sampler: Sampler | None = None,
    perturb: Perturb | None = None,
    crossover: Crossover | None = None,
    start_scale: float = 1.0,
    backend: str = "numpy",
    dtype: str = "float64",
    compile: bool = False,
    executor: Any = None,
    chunk_size: int | None = None,
) -> SearchResult:
    r"""Global search: physics runs of ``optimizer`` explore, basin hopping exploits.

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
        Walkers, run as one ensemble per physics round.
    round_steps : int
        Most optimizer steps per round (a round stops early when every run has stopped).
        With the polish, a round is also at most :math:`\lfloor φB/(2m)\rfloor` steps, so
        that the physics share holds at least two rounds.
    polish : {"lbfgsb", None}
        The local minimiser of the polish and of the basin-hopping phase (SciPy's L-BFGS-B,
        at most ``polish_maxfun`` evaluations a call), or None: physics rounds only.
    polish_top : int
        How many of a round's runs are polished, the best first (the others' points are
        dropped: their walkers keep their current point). Default 4: the polish of a run
        costs about as much as a run (LJ38: ~150 evaluations), so polishing all 16 walkers
        every round would eat the budget that basin hopping spends better.
    physics_share : float
        :math:`φ`, the share of the spent evaluations that go to physics rounds; with the
        polish, after each round the incumbents are basin-hopped until the physics rounds
        are :math:`φ` of the spending. Default 0.25: a polished minimum costs far fewer
        evaluations through L-BFGS-B than through physics rounds, so the physics explores and
        basin hopping exploits; one setting for every problem, chosen before the runs of
        ``docs/bbob.md`` (not tuned per problem). Without the polish it has no effect.
    elite : int
        How many of the best walkers the basin-hopping phase works on, in turn.
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
    crossover_rate : float
        :math:`c \in [0, 1]`, the share of basin-hopping steps that are crossovers of two elite
        walkers (with at least two elites and a crossover move); default 0: none.
    distinct_tol : float
        :math:`\tau \ge 0`: two values closer than :math:`\tau\max(1, |f|)` are the same
        minimum; the elites are distinct minima, a step into another walker's minimum is
        refused, and the worse of two walkers in one minimum restarts. Default 0: off.
    keep_best : bool
        The walker at the lowest current value never restarts (default False).
    perturb : callable, optional
        ``perturb(rng, x, s) -> x'``, a hop of one point; default: the problem's ``perturb``
        if it has one (clusters: :meth:`physopt_ref.problems.Cluster.perturb`), else a
        uniform displacement in :math:`[-s, s]` per coordinate (SciPy's).
    crossover : callable, optional
        ``crossover(rng, x, y) -> z``, a child of two points; default: the problem's
        ``crossover`` if it has one (clusters: :meth:`physopt_ref.problems.Cluster.crossover`),
        else none. Used at ``crossover_rate``.
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
                       polish_top, physics_share, elite, temperature, hop, accept_rate,
                       patience, crossover_rate, distinct_tol)
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
    sample = sampler or default_sampler(problem, start_scale)
    move = perturb or default_perturb(problem)
    mate = crossover or default_crossover(problem)
    rng = np.random.default_rng(seed)
    counter = Counter(problem, budget)
    spent = {"physics": 0, "polish": 0, "basin_hop": 0}
    round_cap = max(1, int(physics_share * budget / (2 * members))) if polish else round_steps

    def fresh(n: int) -> np.ndarray:
        # A copy: the walkers change in place, and the sampler's array is the caller's (a
        # sampler handing out a fixed set of starts must find it unchanged the next time).
        starts = np.array(sample(rng, n), dtype=np.float64, copy=True)
        if starts.shape != (n, problem.dim):
            raise ValueError(f"sampler must return shape {(n, problem.dim)}, got {starts.shape}")
        return starts

    def hopped(x: np.ndarray) -> np.ndarray:
        y = np.asarray(move(rng, x, hop), dtype=np.float64)
        if y.shape != x.shape:
            raise ValueError(f"perturb must return shape {x.shape}, got {y.shape}")
        return y

    def child(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        assert mate is not None
        z = np.asarray(mate(rng, x, y), dtype=np.float64)
        if z.shape != x.shape:
            raise ValueError(f"crossover must return shape {x.shape}, got {z.shape}")
        return z

    cur_x = fresh(members)
    cur_f = np.full(members, np.inf)
    best_walker = np.full(members, np.inf)
    stale = np.zeros(members, dtype=int)
    origin = ["start"] * members
    best: dict[str, Any] = {"x": cur_x[0].copy(), "f": np.inf, "prov": {}}
    history: list[tuple[int, float]] = []
    hops: list[float] = []
    restarts = accepted = rounds = basin_hops = 0
    starts = cur_x.copy()
    message = "budget used up"

    def consider(x: np.ndarray, f: float, k: int, phase: str) -> bool:
        """Record a candidate; whether it reached the target."""
        if math.isfinite(f) and f < best["f"]:
            best["x"], best["f"] = np.array(x, dtype=np.float64), float(f)
            best["prov"] = {"round": rounds, "member": k, "origin": origin[k], "phase": phase,
                            "evaluations": counter.used}
        return target is not None and best["f"] <= target

    def polish_counted(x: np.ndarray, f: float, phase: str) -> tuple[np.ndarray, float]:
        before = counter.used
        out = polish_lbfgsb(counter, x, f, polish_maxfun)
        spent[phase] += counter.used - before
        return out

    while True:
        steps = min(round_steps, round_cap, counter.left() // members - 1)
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
        spent["physics"] += trace.evaluations * members
        rounds += 1
        hops.append(hop)
        run_x = np.asarray(to_numpy(trace.best_x), dtype=np.float64)
        run_f = np.asarray(trace.best_value, dtype=np.float64)
        done = any([consider(run_x[k], run_f[k], k, "physics") for k in range(members)])
        history.append((counter.used, best["f"]))
        new_x, new_f = run_x.copy(), run_f.copy()
        compete = np.ones(members, dtype=bool)
        if polish == "lbfgsb" and not done:
            compete[:] = False
            order = np.argsort(np.where(np.isfinite(run_f), run_f, np.inf), kind="stable")
            for k in map(int, order[:polish_top]):
                if counter.left() <= 0 or done:
                    break
                if not np.all(np.isfinite(run_x[k])):
                    continue
                new_x[k], new_f[k] = polish_counted(run_x[k], float(run_f[k]), "polish")
                compete[k] = True
                done = consider(new_x[k], float(new_f[k]), k, "polish")
            history.append((counter.used, best["f"]))
        if done:
            message = "reached the target value"
            break
        # Metropolis acceptance of the rounds' (polished) minima, walker by walker.
        accept = compete & metropolis(new_f, cur_f, rng.random(members), temperature)
        tried = np.array([o == "hop" for o in origin]) & compete
        hop_tries, hop_accepts = int(tried.sum()), int(accept[tried].sum())
        accepted += int(accept.sum())
        cur_x[accept], cur_f[accept] = new_x[accept], new_f[accept]
        improved = compete & np.isfinite(new_f) & (new_f < best_walker)
        best_walker = np.where(improved, new_f, best_walker)
        # Basin hopping of the incumbents until the physics rounds are φ of the spending.
        if polish == "lbfgsb":
            keep = distinct(cur_f, distinct_tol)
            ranks = [int(k) for k in np.argsort(cur_f, kind="stable") if keep[k]][:elite]
            goal = spent["physics"] * (1.0 - physics_share) / physics_share
            while ranks and spent["basin_hop"] + spent["polish"] < goal and counter.left() > 0:
                k = ranks[basin_hops % len(ranks)]
                mating = (mate is not None and len(ranks) > 1 and crossover_rate > 0
                          and rng.random() < crossover_rate)
                if mating:
                    # A child of walker k and another elite replaces the worst elite walker if
                    # it is lower (Deaven & Ho's selection: the population keeps the best).
                    mates = [r for r in ranks if r != k]
                    j = mates[int(rng.integers(len(mates)))]
                    y_x, y_f = polish_counted(child(cur_x[k], cur_x[j]), math.inf, "basin_hop")
                    k = max(ranks, key=lambda r: cur_f[r])
                else:
                    y_x, y_f = polish_counted(hopped(cur_x[k]), math.inf, "basin_hop")
                basin_hops += 1
                done = consider(y_x, y_f, k, "crossover" if mating else "basin_hop")
                if done:
                    break
                ok = bool(y_f < cur_f[k]) if mating else bool(metropolis(
                    np.array([y_f]), cur_f[k:k + 1], rng.random(1), temperature)[0])
                if ok and distinct_tol > 0:  # no second copy of another elite's minimum
                    others = np.delete(cur_f, k)
                    ok = bool(np.all(np.abs(others - y_f) > distinct_tol * max(1.0, abs(y_f))))
                if not mating:
                    hop_tries, hop_accepts = hop_tries + 1, hop_accepts + int(ok)
                if ok:
                    accepted += 1
                    cur_x[k], cur_f[k] = y_x, y_f
                if y_f < best_walker[k]:
                    best_walker[k], improved[k] = y_f, True
            history.append((counter.used, best["f"]))
            if done:
                message = "reached the target value"
                break
        stale = np.where(improved, 0, stale + 1)
        if hop_tries:
            rate = hop_accepts / hop_tries
            hop = hop / _HOP_FACTOR if rate > accept_rate else hop * _HOP_FACTOR
        # Next starts: hops of the current points; restarts after divergence or stagnation.
        restart = (~np.isfinite(cur_f)) | (stale >= patience)
        if distinct_tol > 0:  # a walker in the same minimum as a better one starts afresh
            restart |= ~distinct(cur_f, distinct_tol)
        if keep_best and np.isfinite(cur_f).any():  # the incumbent walker goes on hopping
            restart[int(np.argmin(cur_f))] = False
        starts = np.array([hopped(x) if np.all(np.isfinite(x)) else x for x in cur_x])
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
        walker_values=cur_f.copy(), phase_evaluations=dict(spent), basin_hops=basin_hops,
    )
