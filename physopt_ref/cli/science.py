"""``physopt-ref bbob`` and ``physopt-ref search``: the science workflows of the command line.

``bbob`` runs registered optimizers (each inside the global-search driver) and the installed
peers (L-BFGS-B, CMA-ES) on COCO's bbob suite and prints the runtime ECDF at the budget per
function group; ``search`` runs the driver on one bundled problem and prints where the best
point came from.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from typing import Any, TextIO

from physopt_ref.cli.args import UsageError, parse_assignment, pos_int

__all__ = ["add_parsers", "cmd_bbob", "cmd_search"]


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from exc
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def add_parsers(sub: Any) -> None:
    """The ``bbob`` and ``search`` subcommands' arguments."""
    p = sub.add_parser(
        "bbob", help="the COCO bbob suite (needs the bbob extra: coco-experiment)",
        description="Run registered optimizers, each inside the global-search driver, and the "
        "installed peers (scipy L-BFGS-B and CMA-ES with the same finite-difference budget) on "
        "COCO's bbob suite; print the runtime ECDF at the budget per function group.")
    p.add_argument("--optimizers", default="heavy_ball,bbi",
                   help="comma-separated registered optimizers (default heavy_ball,bbi)")
    p.add_argument("--hp", action="append", default=[], metavar="OPT.NAME=VALUE",
                   help="a hyperparameter of one optimizer, e.g. bbi.lr=0.01 (repeatable)")
    p.add_argument("--lr", type=float, default=0.01,
                   help="step size of every optimizer that takes lr (default 0.01; --hp wins)")
    p.add_argument("--dims", type=_int_list, default=[2], help="dimensions (default 2)")
    p.add_argument("--instances", type=_int_list, default=[1, 2, 3, 4, 5],
                   help="instances (default 1-5)")
    p.add_argument("--functions", type=_int_list, default=None,
                   help="function numbers 1-24 (default all)")
    p.add_argument("--budget", type=pos_int, default=1000,
                   help="evaluations per problem, times the dimension (default 1000)")
    p.add_argument("--peers", default="lbfgsb,cma",
                   help="comma-separated peers among lbfgsb, cma ('' for none)")
    p.add_argument("--polish", action="store_true",
                   help="polish the driver's points with L-BFGS-B (default: the physics alone)")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="write COCO's observer data (for cocopp) into exdata/DIR/<method>")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser(
        "search", help="the global-search driver on one problem",
        description="physopt_ref.search: an ensemble of physics runs with restarts, hops and "
        "an L-BFGS-B polish, within an evaluation budget.")
    p.add_argument("optimizer", help="a registered optimizer")
    p.add_argument("problem", help="lj13, lj38 or another cluster name ljN / morseN")
    p.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                   help="a hyperparameter of the optimizer (repeatable)")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="step size if the optimizer takes lr (default 1e-3; --hp wins)")
    p.add_argument("--budget", type=pos_int, default=30000, help="evaluations (default 30000)")
    p.add_argument("--members", type=pos_int, default=16, help="walkers (default 16)")
    p.add_argument("--round-steps", type=pos_int, default=100,
                   help="optimizer steps per round (default 100)")
    p.add_argument("--no-polish", action="store_true", help="no L-BFGS-B polish")
    g = p.add_argument_group(
        "driver settings", "physopt_ref.search's settings (docs/bbob.md); each left out keeps "
        "the driver's default, each given is checked by the driver")
    for flag, kind, text in _DRIVER_SETTINGS:
        g.add_argument(flag, type=kind, default=None, metavar=kind.__name__.upper(), help=text)
    g.add_argument("--keep-best", action="store_true", default=None,
                   help="the walker at the lowest value never restarts")
    g.add_argument("--perturb", choices=("problem", "uniform"), default=None,
                   help="the hop: the problem's own move (clusters: all atoms or a surface "
                   "atom; the default) or SciPy's uniform displacement of every coordinate")
    p.add_argument("--seed", type=int, default=0, help="seed of the driver")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


#: ``physopt-ref search`` options passed to :func:`physopt_ref.search` under the same name.
_DRIVER_SETTINGS: tuple[tuple[str, Any, str], ...] = (
    ("--polish-top", int, "runs polished per round, the best first"),
    ("--polish-maxfun", int, "most evaluations of one L-BFGS-B polish"),
    ("--physics-share", float, "share of the evaluations for physics rounds, in (0, 1]"),
    ("--elite", int, "walkers the basin-hopping phase works on"),
    ("--temperature", float, "Metropolis temperature T > 0"),
    ("--hop", float, "initial hop size s > 0 (adapted every round)"),
    ("--accept-rate", float, "wanted acceptance rate of hops, in (0, 1)"),
    ("--patience", int, "rounds without improvement before a walker restarts"),
    ("--crossover-rate", float, "share of basin-hopping steps that are crossovers of two "
     "elites (clusters: cut and splice), in [0, 1]"),
    ("--distinct-tol", float, "relative energy difference under which two walkers are in the "
     "same minimum (the worse restarts); 0: off"),
)


def _driver_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The driver settings given on the command line, by :func:`physopt_ref.search` name."""
    from physopt_ref.runner.search_parts import uniform_hop

    names = [flag[2:].replace("-", "_") for flag, _, _ in _DRIVER_SETTINGS] + ["keep_best"]
    out = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.perturb == "uniform":
        out["perturb"] = uniform_hop
    return out


def _hyperparameters(pairs: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {n: {} for n in names}
    for text in pairs:
        # OPTIMIZER.NAME=VALUE: the optimizer before the first dot, NAME=VALUE after it (a
        # dotted key is not an identifier, which parse_assignment asks of the name).
        head, dot, rest = text.partition(".")
        opt = head.strip()
        if not dot or "=" in head or "=" not in rest or opt not in out:
            raise UsageError(f"--hp {text!r}: write OPTIMIZER.NAME=VALUE with OPTIMIZER among "
                             f"{names}")
        hp, value = parse_assignment(rest, "--hp")
        if hp in out[opt]:
            raise UsageError(f"--hp {opt}.{hp} given twice")
        out[opt][hp] = value
    return out


def _build(name: str, hp: dict[str, Any], lr: float) -> Any:
    """The optimizer with the settings' required hyperparameters, ``lr`` unless given, ``hp``."""
    import inspect

    import physopt_ref as po
    from physopt_ref.cli.settings import REQUIRED

    if name not in po.REGISTRY:
        raise UsageError(f"unknown optimizer {name!r}; registered: {po.registered_names()}")
    params = inspect.signature(po.REGISTRY[name].factory).parameters
    settings = {**REQUIRED.get(name, {}), **({"lr": lr} if "lr" in params else {}), **hp}
    try:
        return po.get_optimizer(name, **settings)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{name}: {exc}") from exc


def cmd_bbob(args: argparse.Namespace, out: TextIO) -> int:
    """``physopt-ref bbob``."""
    if importlib.util.find_spec("cocoex") is None:
        raise UsageError("bbob needs COCO's cocoex: pip install 'physopt_ref[bbob]'")
    from physopt_ref.adapters.bbob import bbob

    names = [n for n in args.optimizers.split(",") if n.strip()]
    peers = [p for p in args.peers.split(",") if p.strip()]
    hps = _hyperparameters(args.hp, names)
    methods = {n: _build(n, hps[n], args.lr) for n in names}
    try:
        result = bbob(methods, dimensions=args.dims, instances=args.instances,
                      functions=args.functions, budget_per_dim=args.budget, peers=peers,
                      polish="lbfgsb" if args.polish else None, result_folder=args.output,
                      seed=args.seed)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        json.dump({"methods": list(result.methods), "problems": list(result.problems),
                   "ecdf": dict(zip(result.methods, map(float, result.ecdf()), strict=True)),
                   "budget_per_dim": result.budget_per_dim,
                   "result_folders": list(result.result_folders)}, out, indent=2)
        out.write("\n")
        return 0
    out.write(f"bbob: {len(result.problems)} problems (dims {args.dims}), budget "
              f"{args.budget}*d evaluations, finite-difference gradients (2d+1 evaluations)\n")
    out.write("runtime ECDF at the budget (fraction of the 51 targets reached):\n")
    out.write(result.table() + "\n")
    for folder in result.result_folders:
        out.write(f"COCO data for cocopp: {folder}\n")
    return 0


def _cluster(name: str) -> Any:
    from physopt_ref.problems import lennard_jones, morse

    for prefix, make in (("lj", lennard_jones), ("morse", morse)):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return make(int(name[len(prefix):]))
    raise UsageError(f"unknown problem {name!r}: give ljN or morseN (e.g. lj13, lj38)")


def _flags(exc: Exception, settings: dict[str, Any]) -> list[str]:
    """The command-line options a refusal of the driver names."""
    return [n.replace("_", "-") for n in settings if str(exc).startswith(n)]


def cmd_search(args: argparse.Namespace, out: TextIO) -> int:
    """``physopt-ref search``."""
    import physopt_ref as po

    problem = _cluster(args.problem)
    hp = _hyperparameters([f"{args.optimizer}.{t}" for t in args.hp], [args.optimizer])
    opt = _build(args.optimizer, hp[args.optimizer], args.lr)
    target = problem.minima[0].value + 1e-6 if problem.minima else None
    settings = _driver_settings(args)
    try:
        result = po.search(opt, problem, budget=args.budget, members=args.members,
                           round_steps=args.round_steps, target=target, seed=args.seed,
                           polish=None if args.no_polish else "lbfgsb", **settings)
    except (TypeError, ValueError) as exc:
        hint = "".join(f" (option --{n})" for n in _flags(exc, settings))
        raise UsageError(f"search: {exc}{hint}") from exc
    record = {"problem": problem.name, "n_atoms": getattr(problem, "n_atoms", None),
              "best_value": result.best_value, "known_minimum": target and target - 1e-6,
              "evaluations": result.evaluations, "rounds": result.rounds,
              "restarts": result.restarts, "provenance": result.provenance,
              "phase_evaluations": result.phase_evaluations,
              "settings": {k: (v.__name__ if callable(v) else v) for k, v in settings.items()},
              "message": result.message}
    if args.json:
        json.dump(record, out, indent=2, default=str)
        out.write("\n")
        return 0
    for key, value in record.items():
        out.write(f"{key}: {value}\n")
    return 0
