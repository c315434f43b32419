r"""The COCO/BBOB benchmark (``cocoex``, an optional extra) run with this library's optimizers.

BBOB (Hansen, Finck, Ros & Auger, "Real-Parameter Black-Box Optimization Benchmarking 2009:
Noiseless Functions Definitions", INRIA RR-6829) has 24 noiseless functions in five groups,
each in several *instances* (shifted, rotated versions) and dimensions. COCO
(``coco-experiment``, module ``cocoex``) evaluates them, counts the evaluations and, through an
observer, writes the data that ``cocopp`` post-processes.

:func:`bbob` runs each method on each problem until its budget of ``budget_per_dim * d``
evaluations is spent:

* an optimizer of this library runs inside the global-search driver
  :func:`physopt_ref.search` (restarts, hops, optionally a polish), on a :class:`CocoProblem`
  whose gradient is taken by central finite differences, ``2d + 1`` evaluations per point
  (the value at the point and two per coordinate), every one of them counted by COCO;
* the peers, when installed: SciPy's L-BFGS-B with the same finite differences, restarted from
  uniform points of :math:`[-4, 4]^d` (the region COCO recommends) until the budget is spent,
  and CMA-ES (the ``cma`` package) with IPOP restarts.

Results: for each method, problem and target :math:`f_\text{opt} + 10^k`,
:math:`k = 2, 1.8, \dots, -8` (COCO's 51 standard targets), whether the best value seen within
the budget reached it. The fraction reached, pooled over a function group or all problems, is
the runtime ECDF at the budget (the value ``cocopp`` plots at the end of its x axis).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from physopt_ref.backends import asarray_like, to_numpy
from physopt_ref.core.contract import Optimizer
from physopt_ref.problems import Problem
from physopt_ref.runner.search import search

__all__ = [
    "FUNCTION_GROUPS",
    "TARGET_EXPONENTS",
    "BBOBResult",
    "CocoProblem",
    "bbob",
]

#: BBOB's five function groups (Hansen et al. 2009, RR-6829, Sec. 1).
FUNCTION_GROUPS: dict[str, tuple[int, ...]] = {
    "separable": (1, 2, 3, 4, 5),
    "low/moderate conditioning": (6, 7, 8, 9),
    "high conditioning, unimodal": (10, 11, 12, 13, 14),
    "multimodal, adequate structure": (15, 16, 17, 18, 19),
    "multimodal, weak structure": (20, 21, 22, 23, 24),
}
#: COCO's 51 standard target exponents: targets f_opt + 10^k, k = 2, 1.8, ..., -8.
TARGET_EXPONENTS = np.linspace(2.0, -8.0, 51)


def _cocoex() -> Any:
    try:
        import cocoex
    except ImportError as exc:  # pragma: no cover - exercised where cocoex is missing
        raise ImportError(
            "physopt_ref.bbob needs COCO's Python module cocoex: "
            "pip install 'physopt_ref[bbob]' (coco-experiment)"
        ) from exc
    return cocoex


class CocoProblem(Problem):
    r"""A COCO problem as a :class:`~physopt_ref.problems.Problem`, gradients by central
    differences.

    ``value_and_grad`` of a point costs ``2d + 1`` COCO evaluations: :math:`f(x)` and
    :math:`f(x \pm h_i e_i)` with :math:`h_i = \epsilon^{1/3}\max(1, |x_i|)`,
    :math:`\epsilon` float64's machine epsilon (the step that balances truncation and
    rounding errors of a central difference). Points are evaluated one by one on the host
    (COCO's functions take one point), so the objective is NumPy-only.
    """

    def __init__(self, coco_problem: Any) -> None:
        self.coco = coco_problem
        self.dim = int(coco_problem.dimension)
        self.name = str(coco_problem.id)
        self.x0 = np.asarray(coco_problem.initial_solution, dtype=np.float64)
        self.bounds = (np.full(self.dim, -4.0), np.full(self.dim, 4.0))
        self.minima = ()

    def _rows(self, x: Any) -> tuple[tuple[int, ...], np.ndarray]:
        """The batch shape of ``x`` and its points as NumPy float64 rows (COCO takes one)."""
        points = np.asarray(to_numpy(x), dtype=np.float64)
        return tuple(points.shape[:-1]), points.reshape(-1, self.dim)

    def _value_and_grad(self, xp: Any, x: Any) -> tuple[Any, Any]:
        batch, flat = self._rows(x)
        values = np.empty(flat.shape[0])
        grads = np.empty_like(flat)
        h_rel = np.finfo(np.float64).eps ** (1.0 / 3.0)
        for row, p in enumerate(flat):
            values[row] = self.coco(p)
            for i in range(self.dim):
                h = h_rel * max(1.0, abs(p[i]))
                up, down = p.copy(), p.copy()
                up[i] += h
                down[i] -= h
                grads[row, i] = (self.coco(up) - self.coco(down)) / (2.0 * h)
        return (asarray_like(values.reshape(batch), x),
                asarray_like(grads.reshape((*batch, self.dim)), x))

    def _value(self, xp: Any, x: Any) -> Any:
        batch, flat = self._rows(x)
        return asarray_like(np.array([self.coco(p) for p in flat]).reshape(batch), x)


@dataclass(frozen=True)
class BBOBResult:
    """Targets reached by each method on each problem.

    Attributes
    ----------
    methods : tuple of str
    problems : tuple of str
        COCO ids (``bbob_f001_i01_d02`` ...), in suite order.
    functions, dimensions : numpy.ndarray of int
        Function index and dimension of each problem.
    reached : numpy.ndarray of bool
        Shape ``(n_methods, n_problems, 51)``: target ``k`` reached within the budget.
    best_delta : numpy.ndarray
        Shape ``(n_methods, n_problems)``: best value minus :math:`f_\\text{opt}`.
    evaluations : numpy.ndarray of int
        Shape ``(n_methods, n_problems)``: evaluations COCO counted.
    budget_per_dim : int
    result_folders : tuple of str
        Where COCO's observer wrote each method's data for ``cocopp`` (COCO puts them under
        ``exdata/`` of the working directory); empty without ``result_folder``.
    """

    methods: tuple[str, ...]
    problems: tuple[str, ...]
    functions: np.ndarray
    dimensions: np.ndarray
    reached: np.ndarray
    best_delta: np.ndarray
    evaluations: np.ndarray
    budget_per_dim: int
    result_folders: tuple[str, ...] = ()

    def ecdf(self, functions: Sequence[int] | None = None) -> np.ndarray:
        """Per method: the fraction of (problem, target) pairs reached, over ``functions``."""
        mask = np.ones(len(self.problems), dtype=bool) if functions is None else np.isin(
            self.functions, list(functions))
        if not mask.any():
            return np.full(len(self.methods), np.nan)
        return self.reached[:, mask, :].mean(axis=(1, 2))

    def table(self) -> str:
        """The runtime ECDF at the budget per function group and pooled, one line a method."""
        groups = {name: f for name, f in FUNCTION_GROUPS.items()
                  if np.isin(self.functions, f).any()}
        head = ["method".ljust(22)] + [name[:14].rjust(15) for name in groups] + ["pooled".rjust(8)]
        lines = ["".join(head)]
        pooled = self.ecdf()
        per_group = {name: self.ecdf(f) for name, f in groups.items()}
        for m, method in enumerate(self.methods):
            row = [method[:21].ljust(22)]
            row += [f"{per_group[name][m]:15.2f}" for name in groups]
            row.append(f"{pooled[m]:8.2f}")
            lines.append("".join(row))
        return "\n".join(lines)


def _fopt(problem: Any) -> float:
    cocoex = _cocoex()
    bare = cocoex.BareProblem("bbob", problem.id_function, problem.dimension,
                              problem.id_instance)
    best = bare.best_value
    return float(best() if callable(best) else best)


def _lbfgsb_peer(problem: Any, budget: int, rng: np.random.Generator) -> None:
    """L-BFGS-B with central differences from uniform starts in [-4, 4]^d until the budget."""
    from scipy.optimize import minimize

    coco = CocoProblem(problem)
    d = coco.dim
    per_call = 2 * d + 1

    class _OutOfBudgetError(Exception):
        pass

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        if problem.evaluations + per_call > budget:
            raise _OutOfBudgetError
        f, g = coco.value_and_grad(np.asarray(x, dtype=np.float64))
        return float(f), np.asarray(g)

    x = coco.x0.copy()
    while problem.evaluations + per_call <= budget and not problem.final_target_hit:
        try:
            minimize(fun, x, jac=True, method="L-BFGS-B", bounds=[(-5.0, 5.0)] * d,
                     options={"maxfun": (budget - problem.evaluations) // per_call})
        except _OutOfBudgetError:
            break
        x = rng.uniform(-4.0, 4.0, d)


def _cma_peer(problem: Any, budget: int, rng: np.random.Generator) -> None:
    """CMA-ES (``cma``) with IPOP restarts (doubling population) until the budget."""
    import cma

    d = int(problem.dimension)
    popsize = 4 + int(3 * math.log(d))
    x0 = np.asarray(problem.initial_solution, dtype=np.float64)
    while problem.evaluations < budget and not problem.final_target_hit:
        es = cma.CMAEvolutionStrategy(
            x0, 2.0, {"popsize": popsize, "bounds": [-5, 5], "verbose": -9,
                      "seed": int(rng.integers(1, 2**31 - 1)),
                      "maxfevals": budget - problem.evaluations})
        while not es.stop() and problem.evaluations < budget and not problem.final_target_hit:
            xs = es.ask()
            left = budget - problem.evaluations
            xs = xs[:left] if left < len(xs) else xs
            values = [problem(x) for x in xs]
            if len(values) < es.popsize:
                break
            es.tell(xs, values)
        popsize *= 2
        x0 = rng.uniform(-4.0, 4.0, d)


PEERS: dict[str, Callable[[Any, int, np.random.Generator], None]] = {
    "lbfgsb": _lbfgsb_peer,
    "cma": _cma_peer,
}


def _peer_available(name: str) -> bool:
    if name == "cma":
        import importlib.util

        return importlib.util.find_spec("cma") is not None
    return True


def bbob(
    methods: Mapping[str, Optimizer],
    *,
    dimensions: Sequence[int] = (2, 5),
    instances: Sequence[int] = (1, 2, 3, 4, 5),
    functions: Sequence[int] | None = None,
    budget_per_dim: int = 1000,
    peers: Sequence[str] = ("lbfgsb", "cma"),
    members: int = 8,
    round_steps: int = 50,
    polish: str | None = None,
    result_folder: str | os.PathLike | None = None,
    seed: int = 0,
) -> BBOBResult:
    """Run ``methods`` (and the installed ``peers``) on the BBOB suite.

    Parameters
    ----------
    methods : mapping of str to Optimizer
        Label -> optimizer; each runs inside :func:`physopt_ref.search` with ``members``
        walkers and ``round_steps`` steps per round (restarts on divergence and stagnation).
    dimensions, instances, functions :
        The problems (BBOB has dimensions 2, 3, 5, 10, 20, 40; functions 1-24; default all).
    budget_per_dim : int
        Evaluations per problem, times the dimension (COCO counts every call).
    peers : sequence of str
        ``"lbfgsb"`` and ``"cma"``; a peer whose package is missing is left out (``cma``).
    polish : {None, "lbfgsb"}
        Passed to :func:`physopt_ref.search`; None measures the physics steps alone,
        ``"lbfgsb"`` adds the polish and the driver's basin-hopping phase.
    result_folder : str, optional
        Write COCO's observer data for ``cocopp``: one folder per method,
        ``exdata/<result_folder>/<method>`` (COCO's own convention; COCO appends a number
        rather than overwrite an existing folder).
    seed : int
        Seed of the drivers' and the peers' random starts.
    """
    cocoex = _cocoex()
    if not methods and not peers:
        raise ValueError("give at least one method or peer")
    for label, opt in methods.items():
        if not isinstance(opt, Optimizer):
            raise TypeError(f"method {label!r} must be a physopt_ref Optimizer, "
                            f"got {type(opt).__name__}")
    unknown = set(peers) - set(PEERS)
    if unknown:
        raise ValueError(f"unknown peers {sorted(unknown)}; known: {sorted(PEERS)}")
    if isinstance(budget_per_dim, bool) or not isinstance(budget_per_dim, int) or (
        budget_per_dim < 1
    ):
        raise ValueError(f"budget_per_dim must be an int >= 1, got {budget_per_dim!r}")
    fn = list(range(1, 25)) if functions is None else [int(f) for f in functions]
    if not fn or any(f < 1 or f > 24 for f in fn):
        raise ValueError(f"functions must be BBOB function numbers 1..24, got {functions!r}")
    dims = [int(d) for d in dimensions]
    if not dims or any(d not in (2, 3, 5, 10, 20, 40) for d in dims):
        raise ValueError(f"dimensions must be among 2, 3, 5, 10, 20, 40, got {dimensions!r}")
    inst = [int(i) for i in instances]
    if not inst or any(i < 1 for i in inst):
        raise ValueError(f"instances must be integers >= 1, got {instances!r}")
    options = (f"dimensions: {','.join(map(str, dims))} "
               f"instance_indices: {','.join(map(str, inst))} "
               f"function_indices: {','.join(map(str, fn))}")
    labels = list(methods) + [p for p in peers if _peer_available(p)]
    reached, deltas, evals = [], [], []
    ids: list[str] = []
    funcs: list[int] = []
    folders: list[str] = []
    dimens: list[int] = []
    for m, label in enumerate(labels):
        suite = cocoex.Suite("bbob", "", options)
        observer = None
        if result_folder is not None:
            name = label.replace(" ", "_")
            folder = f"{os.fspath(result_folder)}/{name}"
            observer = cocoex.Observer("bbob", f"result_folder: {folder} algorithm_name: {name}")
            folders.append(str(observer.result_folder))
        rows_r, rows_d, rows_e = [], [], []
        for index, problem in enumerate(suite):
            if observer is not None:
                problem.observe_with(observer)
            budget = budget_per_dim * int(problem.dimension)
            rng = np.random.default_rng([seed, m, index])
            if label in methods:
                coco = CocoProblem(problem)
                per_point = 2 * coco.dim + 1
                vg_budget = budget // per_point
                if vg_budget >= 2 * members:
                    fopt_target = _fopt(problem) + 1e-8
                    search(methods[label], coco, budget=vg_budget, members=members,
                           round_steps=round_steps, polish=polish, target=fopt_target,
                           seed=int(rng.integers(2**31)))
            else:
                PEERS[label](problem, budget, rng)
            fopt = _fopt(problem)
            delta = float(problem.best_observed_fvalue1) - fopt
            rows_r.append(delta <= 10.0 ** TARGET_EXPONENTS)
            rows_d.append(delta)
            rows_e.append(int(problem.evaluations))
            if m == 0:
                ids.append(str(problem.id))
                funcs.append(int(problem.id_function))
                dimens.append(int(problem.dimension))
            problem.free()
        reached.append(rows_r)
        deltas.append(rows_d)
        evals.append(rows_e)
    return BBOBResult(
        methods=tuple(labels), problems=tuple(ids), functions=np.asarray(funcs),
        dimensions=np.asarray(dimens), reached=np.asarray(reached, dtype=bool),
        best_delta=np.asarray(deltas), evaluations=np.asarray(evals),
        budget_per_dim=budget_per_dim,
        result_folders=tuple(folders),
    )
