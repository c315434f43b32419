"""The ``physopt-ref`` command line (also ``python -m physopt_ref``).

Subcommands:

``compare``
    Every registered optimizer on every problem (quick mode by default, ``--full`` for the
    paper-sized runs), printed as a table, then the headline comparisons of the papers.
``run OPTIMIZER PROBLEM``
    One optimizer on one problem, every hyperparameter settable with ``--hp NAME=VALUE``.
``digits``
    The Dyna paper's Table 1 in small (logistic regression on scikit-learn's digits).
``list``
    The registered optimizers (with their hyperparameters) and the problems.

Exit status: 0 on success, 2 for a bad option, a bad hyperparameter, or a backend / optional
package that is not installed.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]

PROG = "physopt-ref"


class UsageError(Exception):
    """A user error: printed as ``physopt-ref: error: ...`` with exit status 2."""


def _parse_assignment(text: str, what: str) -> tuple[str, Any]:
    if "=" not in text:
        raise UsageError(f"{what} must look like NAME=VALUE, got {text!r}")
    name, raw = text.split("=", 1)
    name = name.strip()
    if not name.isidentifier():
        raise UsageError(f"{what}: {name!r} is not a valid name")
    raw = raw.strip()
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return name, lowered == "true"
    if lowered in ("none", "null"):
        return name, None
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a plain string, e.g. schedule=paper
    return name, value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _pos_int(text: str) -> int:
    value = _nonneg_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _add_common(p: argparse.ArgumentParser, *, plot: bool = True) -> None:
    from .backends import BACKENDS

    p.add_argument("--backend", default="numpy", choices=sorted(BACKENDS),
                   help="array backend (default numpy)")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                   help="floating dtype of the runs (default float64)")
    p.add_argument("--seed", type=_nonneg_int, default=0,
                   help="seed of the starts, noise and stochastic optimizers (default 0)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    if plot:
        p.add_argument("--plot", metavar="FILE",
                       help="write a figure (PNG, PDF, SVG by extension); needs matplotlib")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is shown only when stderr is a terminal)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``physopt-ref``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Physics-inspired optimizers (Dyna, CoolMomentum, BBI / ECDSep, Gravity, "
        "classic momentum) on analytic problems, on any Array API backend.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("compare", help="every optimizer on every problem, and the headlines",
                       description="Run every registered optimizer on every problem of the "
                       "comparison (quick mode: under 2 minutes) and print a table with the best "
                       "value, the success rate over the ensemble, the median steps to the "
                       "target and the time; then the papers' headline comparisons.")
    p.add_argument("--full", action="store_true", help="paper-sized budgets and ensembles")
    p.add_argument("--ensemble", type=_pos_int, help="starts per problem (overrides the settings)")
    p.add_argument("--steps", type=_pos_int, help="steps per run (overrides the settings)")
    p.add_argument("--optimizers", help="comma-separated subset of the optimizers")
    p.add_argument("--problems", help="comma-separated subset of the problems")
    p.add_argument("--no-headlines", action="store_true", help="only the table")
    _add_common(p)

    p = sub.add_parser("run", help="one optimizer on one problem",
                       description="Run one optimizer on one problem; every hyperparameter can "
                       "be set with --hp NAME=VALUE (see `physopt-ref list`).")
    p.add_argument("optimizer", help="registered optimizer name (see `physopt-ref list`)")
    p.add_argument("problem", help="problem name (see `physopt-ref list`)")
    p.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                   help="an optimizer hyperparameter (repeatable), e.g. --hp lr=0.1")
    p.add_argument("--problem-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="an argument of the problem factory (repeatable), e.g. dim=5")
    p.add_argument("--steps", type=_pos_int, help="steps per run (default: the problem's setting)")
    p.add_argument("--ensemble", type=_pos_int, default=1,
                   help="number of runs; 1 starts at the problem's x0, more draw random starts")
    p.add_argument("--target", type=float, help="stop a run once f <= TARGET "
                   "(default: f* + the problem's tolerance)")
    p.add_argument("--gtol", type=float, help="stop a run once max|grad| <= GTOL")
    p.add_argument("--noise", type=float, default=0.0,
                   help="standard deviation of Gaussian gradient noise (default 0)")
    p.add_argument("--record-every", type=_pos_int, default=1, help="record every K steps")
    _add_common(p)

    p = sub.add_parser("digits", help="the Dyna paper's Table 1 on scikit-learn's digits",
                       description="Logistic regression on scikit-learn's 8x8 digits: Dyna with "
                       "zeta = 1, 0.5 and the Eq. 22 ramp (lr = 2/64) vs Adam (lr 1e-3).")
    p.add_argument("--epochs", type=_pos_int, default=50, help="epochs (default 50, as the paper)")
    _add_common(p, plot=False)

    p = sub.add_parser("list", help="registered optimizers and problems")
    p.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, bool | int | str) or v is None:
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return _jsonable(v.item())
        if isinstance(v, np.ndarray):
            return _jsonable(v.tolist())
    except ImportError:  # pragma: no cover
        pass
    return repr(v)


def _namespace(args: argparse.Namespace) -> tuple[Any, Any]:
    from .backends import BackendNotInstalledError, get_namespace

    try:
        xp = get_namespace(args.backend)
    except BackendNotInstalledError as exc:
        raise UsageError(str(exc)) from exc
    return xp, getattr(xp, args.dtype)


def _check_plot(args: argparse.Namespace) -> None:
    if getattr(args, "plot", None):
        from ._cli_output import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as exc:
            raise UsageError(str(exc)) from exc


def _split_names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


def _cmd_compare(args: argparse.Namespace, out: Any) -> int:
    from ._cli_compare import compare
    from ._cli_output import Progress, format_table, plot_compare

    xp, dtype = _namespace(args)
    _check_plot(args)
    progress = Progress(enabled=False if args.no_progress else None)
    try:
        result = compare(
            xp=xp, dtype=dtype, full=args.full, seed=args.seed, ensemble=args.ensemble,
            steps=args.steps, optimizers=_split_names(args.optimizers),
            problems=_split_names(args.problems), headlines=not args.no_headlines,
            progress=progress,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        progress.close()
    if args.plot:
        plot_compare(result, args.plot)
    if args.json:
        json.dump(_jsonable(result.as_dict()), out, indent=2)
        out.write("\n")
        return 0
    mode = "full" if args.full else "quick"
    out.write(f"physopt-ref compare ({mode} mode, backend {args.backend}, {args.dtype}, "
              f"seed {args.seed})\n\n")
    headers = ["problem", "optimizer", "runs", "steps", "best f", "median best",
               "success", "steps to target", "time s", "note"]
    rows = []
    for r in result.rows:
        note = r.error or ("" if r.tuned else "defaults")
        rows.append([r.problem, r.optimizer, r.ensemble, r.steps, r.best, r.median_best,
                     f"{r.success_rate:.0%}" if math.isfinite(r.success_rate) else "-",
                     r.median_steps_to_target, r.time_s, note])
    out.write(format_table(headers, rows) + "\n")
    out.write("\nsuccess: value <= f* + the problem's tolerance; steps to target: median over "
              "the successful runs; note 'defaults': no tuned setting for this pair.\n")
    if result.headlines:
        out.write("\nHeadline comparisons (ours vs the paper):\n")
        for h in result.headlines:
            out.write(f"- {h.title}\n    measured: {h.measured}\n    paper:    {h.paper}\n")
    for s in result.skipped:
        out.write(f"(skipped: {s})\n")
    out.write(f"\ntotal time {result.wall_time:.1f} s\n")
    if args.plot:
        out.write(f"plot written to {args.plot}\n")
    return 0


def _cmd_run(args: argparse.Namespace, out: Any) -> int:
    import numpy as np

    from ._base import REGISTRY, get_optimizer, registered_names
    from ._cli_output import Progress, plot_run
    from ._cli_settings import build_problem, hyperparameters_for, setting_for, starts_for
    from ._run import STATUS_MESSAGES, run

    if args.optimizer not in REGISTRY:
        raise UsageError(f"unknown optimizer {args.optimizer!r}; registered: {registered_names()}")
    try:
        setting = setting_for(args.problem)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    xp, dtype = _namespace(args)
    _check_plot(args)
    hp_over = dict(_parse_assignment(t, "--hp") for t in args.hp)
    prob_over = dict(_parse_assignment(t, "--problem-arg") for t in args.problem_arg)
    try:
        problem = build_problem(setting, **prob_over)
    except LookupError as exc:
        raise UsageError(str(exc)) from exc
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad --problem-arg for {args.problem}: {exc}") from exc
    hp, _ = hyperparameters_for(args.optimizer, setting, args.seed, hp_over)
    try:
        params = inspect.signature(REGISTRY[args.optimizer].factory).parameters
    except (TypeError, ValueError):
        params = {}
    unknown = [k for k in hp_over if params and k not in params]
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        raise UsageError(f"{args.optimizer} has no hyperparameter {', '.join(unknown)}; "
                         f"it takes {', '.join(params)}")
    try:
        opt = get_optimizer(args.optimizer, **hp)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad hyperparameter for {args.optimizer}: {exc}") from exc

    if args.ensemble == 1:
        x0 = problem.start(xp=xp, dtype=dtype)
    else:
        x0 = xp.asarray(starts_for(problem, setting, args.ensemble, args.seed), dtype=dtype)
    steps = args.steps or setting.steps
    target = args.target
    if target is None and getattr(problem, "minima", ()):
        target = problem.f_min + setting.target_tol
    progress = Progress(enabled=False if args.no_progress else None)
    every = max(1, steps // 100)

    def callback(info: Any) -> None:
        if info.step % every == 0:
            progress(info.step, steps, f"{args.optimizer} on {args.problem}")

    try:
        trace = run(opt, problem, x0, steps, target=target, gtol=args.gtol,
                    record_every=args.record_every, grad_noise=args.noise, noise_seed=args.seed,
                    record_x=bool(args.plot) and problem.dim == 2,
                    callback=callback if progress.enabled else None)
    finally:
        progress.close()
    if args.plot:
        plot_run(trace, problem, args.plot, title=f"{opt!r} on {args.problem}")
    from .backends import to_numpy

    best_x = np.asarray(to_numpy(trace.best_x))
    if args.json:
        doc = {
            "optimizer": args.optimizer, "hyperparameters": hp, "problem": args.problem,
            "problem_args": prob_over, "backend": args.backend, "dtype": args.dtype,
            "seed": args.seed, "ensemble": args.ensemble, "steps": trace.steps,
            "target": target, "gtol": args.gtol, "f_min": problem.f_min
            if getattr(problem, "minima", ()) else None,
            "best_value": trace.best_value, "final_value": trace.final_value,
            "best_x": best_x, "status": [STATUS_MESSAGES[int(s)] for s in trace.status.ravel()],
            "steps_taken": trace.steps_taken, "steps_to_target": trace.steps_to_target,
            "success_rate": trace.success_rate, "evaluations": trace.evaluations,
            "wall_time_s": trace.wall_time, "recorded_steps": trace.recorded_steps,
            "losses": trace.losses,
            "state_history": {k: v for k, v in trace.state_history.items()},
        }
        json.dump(_jsonable(doc), out, indent=2)
        out.write("\n")
        return 0
    out.write(f"{opt!r} on {args.problem} ({problem!r}), backend {args.backend}, "
              f"{args.dtype}, seed {args.seed}\n")
    out.write(trace.summary() + "\n")
    if trace.losses.ndim == 1:
        best = np.atleast_1d(trace.best_value)
    else:
        best = trace.best_value.ravel()
    status = trace.status.ravel()
    stt = trace.steps_to_target.ravel()
    for k in range(best.size):
        reach = f", target at step {stt[k]}" if stt[k] >= 0 else ""
        out.write(f"  run {k}: best f = {best[k]:.10g} ({STATUS_MESSAGES[int(status[k])]}"
                  f"{reach})\n")
    if best_x.ndim == 1 and best_x.size <= 10:
        out.write(f"  best x = {np.array2string(best_x, precision=6)}\n")
    if args.plot:
        out.write(f"plot written to {args.plot}\n")
    return 0


def _cmd_digits(args: argparse.Namespace, out: Any) -> int:
    from ._cli_output import format_table
    from ._digits import PAPER_TABLE_1, run_digits

    xp, _ = _namespace(args)
    try:
        results = run_digits(epochs=args.epochs, seed=args.seed, xp=xp)
    except ImportError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        doc = {"epochs": args.epochs, "seed": args.seed,
               "rows": [r.__dict__ for r in results],
               "paper_table_1": [dict(zip(("algorithm", "train", "val", "test", "hp"), row,
                                          strict=True)) for row in PAPER_TABLE_1]}
        json.dump(_jsonable(doc), out, indent=2)
        out.write("\n")
        return 0
    out.write(f"Logistic regression on scikit-learn digits, {args.epochs} epochs of 96 "
              f"minibatches (Dyna paper Table 1 in small)\n\n")
    rows = [[r.label, r.train_accuracy, r.val_accuracy, r.test_accuracy, r.hyperparameters]
            for r in results]
    out.write(format_table(["algorithm", "tr. acc.", "val. acc.", "test acc.", "hyperparameters"],
                           rows) + "\n")
    out.write("\nThe paper (MNIST, 784 inputs, 50 epochs):\n")
    out.write(format_table(["algorithm", "tr. acc.", "val. acc.", "test acc.", "hyperparameters"],
                           [list(r) for r in PAPER_TABLE_1]) + "\n")
    if not any(r.label == "Dyna" for r in results):
        out.write("(Dyna is not installed in this version: only Adam ran)\n")
    return 0


def _cmd_list(args: argparse.Namespace, out: Any) -> int:
    from ._base import REGISTRY, registered_names
    from ._cli_settings import SETTINGS, available_problem_names, setting_for

    opts = {}
    for name in registered_names():
        entry = REGISTRY[name]
        try:
            sig = inspect.signature(entry.factory)
            hps = {k: (None if p.default is inspect.Parameter.empty else p.default)
                   for k, p in sig.parameters.items()}
        except (TypeError, ValueError):
            hps = {}
        opts[name] = {"family": entry.family, "stochastic": entry.stochastic,
                      "hyperparameters": hps}
    probs = {}
    for name in available_problem_names():
        s = setting_for(name)
        probs[name] = {"factory": s.factory, "arguments": s.kwargs, "note": s.note,
                       "in_compare": name in SETTINGS}
    if args.json:
        json.dump(_jsonable({"optimizers": opts, "problems": probs}), out, indent=2)
        out.write("\n")
        return 0
    out.write("Optimizers (physopt-ref run NAME PROBLEM --hp KEY=VALUE):\n")
    for name, info in opts.items():
        hp = ", ".join(f"{k}={v!r}" for k, v in info["hyperparameters"].items())
        out.write(f"  {name:16s} [{info['family']}] {hp}\n")
    out.write("\nProblems:\n")
    for name, info in probs.items():
        out.write(f"  {name:16s} {info['note']}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or an argparse error (2, message already printed)
        return int(exc.code) if isinstance(exc.code, int) else 2
    out = sys.stdout
    handlers = {"compare": _cmd_compare, "run": _cmd_run, "digits": _cmd_digits,
                "list": _cmd_list}
    try:
        return handlers[args.command](args, out)
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
