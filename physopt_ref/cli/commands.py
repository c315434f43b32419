"""The subcommands of ``physopt-ref``: each takes the parsed arguments and an output stream and
returns the exit status (a :class:`~physopt_ref.cli.parser.UsageError` for user errors)."""

from __future__ import annotations

import argparse
import inspect
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TextIO

import numpy as np

from physopt_ref.backends import BackendNotInstalledError, get_namespace, to_numpy
from physopt_ref.cli.args import UsageError, parse_assignment, parse_grid
from physopt_ref.cli.cluster import ChunkProgress, check_cluster_options, cluster_client
from physopt_ref.cli.output import Progress, compare_report, format_table, write_json
from physopt_ref.cli.problem_settings import SETTINGS, available_problem_names, setting_for
from physopt_ref.cli.settings import build_problem, hyperparameters_for, starts_for
from physopt_ref.core.registry import REGISTRY, get_optimizer, registered_names
from physopt_ref.runner.chunked import run_chunked
from physopt_ref.runner.loop import STATUS_MESSAGES, run

__all__ = ["cmd_compare", "cmd_digits", "cmd_list", "cmd_run", "cmd_tune"]


def _namespace(args: argparse.Namespace) -> tuple[Any, Any]:
    try:
        xp = get_namespace(args.backend)
    except BackendNotInstalledError as exc:
        raise UsageError(str(exc)) from exc
    return xp, getattr(xp, args.dtype)


def _check_plot(args: argparse.Namespace) -> None:
    if getattr(args, "plot", None):
        from physopt_ref.cli.plots import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as exc:
            raise UsageError(str(exc)) from exc


def _split_names(text: str | None, option: str = "") -> list[str] | None:
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UsageError(f"{option}: expected comma-separated names, got {text!r}")
    return names


def _progress(args: argparse.Namespace) -> Progress:
    return Progress(enabled=False if args.no_progress else None)


def cmd_compare(args: argparse.Namespace, out: TextIO) -> int:
    """The table, the headlines, the optional ECDF plot."""
    from physopt_ref.cli.compare import compare
    from physopt_ref.cli.headlines import headline_comparisons

    t0 = time.perf_counter()
    xp, dtype = _namespace(args)
    _check_plot(args)
    check_cluster_options(args)
    progress = _progress(args)
    try:
        with cluster_client(args) as client:
            runner = run
            cells: Callable[[int, int, str], None] = progress
            if client is not None:
                chunks = ChunkProgress(progress)
                runner, cells = partial(run_chunked, executor=client, progress=chunks), \
                    chunks.cells()
            result = compare(
                xp=xp, dtype=dtype, full=args.full, seed=args.seed, ensemble=args.ensemble,
                evals=args.evals, optimizers=_split_names(args.optimizers, "--optimizers"),
                problems=_split_names(args.problems, "--problems"), progress=cells,
                runner=runner,
            )
            if not args.no_headlines:
                result.headlines = headline_comparisons(result, xp=xp, dtype=dtype,
                                                        full=args.full, seed=args.seed,
                                                        runner=runner)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        progress.close()
    result.wall_time = time.perf_counter() - t0
    if args.plot:
        from physopt_ref.cli.plots import plot_compare

        plot_compare(result, args.plot)
    if args.json:
        return write_json(result.as_dict(), out)
    mode = "full" if args.full else "quick"
    out.write(compare_report(result, f"physopt-ref compare ({mode} mode, backend "
                                     f"{args.backend}, {args.dtype}, seed {args.seed})") + "\n")
    out.write(f"\ntotal time {result.wall_time:.1f} s\n")
    if args.plot:
        out.write(f"plot written to {args.plot}\n")
    return 0


def _run_inputs(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """The setting, the problem, the hyperparameters and the problem arguments of ``run``."""
    if args.optimizer not in REGISTRY:
        raise UsageError(f"unknown optimizer {args.optimizer!r}; registered: {registered_names()}")
    try:
        setting = setting_for(args.problem)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    hp_over = dict(parse_assignment(t, "--hp") for t in args.hp)
    prob_over = dict(parse_assignment(t, "--problem-arg") for t in args.problem_arg)
    try:
        problem = build_problem(setting, **prob_over)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad --problem-arg for {args.problem}: {exc}") from exc
    try:
        hp, _ = hyperparameters_for(args.optimizer, setting, args.seed, hp_over)
    except ValueError as exc:
        raise UsageError(f"--hp: {exc}") from exc
    return setting, problem, hp, prob_over


def _run_json(args: argparse.Namespace, trace: Any, hp: dict[str, Any], prob_over: dict,
              problem: Any, out: TextIO) -> int:
    doc = {
        "optimizer": args.optimizer, "hyperparameters": hp, "problem": args.problem,
        "problem_args": prob_over, "backend": args.backend, "dtype": args.dtype,
        "seed": args.seed, "ensemble": args.ensemble, "f_min": problem.f_min
        if problem.minima else None,
        "best_value": trace.best_value, "final_value": trace.final_value,
        "best_x": np.asarray(to_numpy(trace.best_x)),
        "status": [STATUS_MESSAGES[int(s)] for s in trace.status.ravel()],
        "steps_to_target": trace.steps_to_target, "success_rate": trace.success_rate,
        "success_ci95": trace.success_interval, "recorded_steps": trace.recorded_steps,
        "losses": trace.losses, "state_history": dict(trace.state_history),
        "trace": trace.to_dict(points=False),
    }
    doc.update({k: doc["trace"][k] for k in ("steps", "evaluations", "target", "gtol")})
    doc["wall_time_s"] = trace.wall_time
    return write_json(doc, out)


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    """One optimizer on one problem: summary, per-run lines, optional plot or JSON."""
    setting, problem, hp, prob_over = _run_inputs(args)
    xp, dtype = _namespace(args)
    _check_plot(args)
    workers, scheduler = check_cluster_options(args)
    if (workers or scheduler) and args.ensemble < 2:
        raise UsageError("--workers and --scheduler split an ensemble into chunks; give "
                         "--ensemble N with N >= 2")
    try:
        opt = get_optimizer(args.optimizer, **hp)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad hyperparameter for {args.optimizer}: {exc}") from exc
    if args.ensemble == 1:
        x0 = problem.start(xp=xp, dtype=dtype)
    else:
        x0 = xp.asarray(starts_for(problem, setting, args.ensemble, args.seed), dtype=dtype)
    steps = args.steps or setting.evals - 1
    target = args.target
    if target is None and problem.minima:
        target = problem.f_min + setting.target_tol
    progress = _progress(args)
    every = max(1, steps // 100)

    def callback(info: Any) -> None:
        if info.step % every == 0:
            progress(info.step, steps, f"{args.optimizer} on {args.problem}")

    options = {"target": target, "gtol": args.gtol, "record_every": args.record_every,
               "grad_noise": args.noise, "noise_seed": args.seed,
               "record_x": bool(args.plot) and problem.dim == 2}
    try:
        with cluster_client(args) as client:
            if client is None:
                trace = run(opt, problem, x0, steps, **options,
                            callback=callback if progress.enabled else None)
            else:
                trace = run_chunked(opt, problem, x0, steps, **options, executor=client,
                                    progress=ChunkProgress(progress, f"of {args.optimizer} on "
                                                                     f"{args.problem}"))
    finally:
        progress.close()
    if args.plot:
        from physopt_ref.cli.plots import plot_run, run_title

        plot_run(trace, problem, args.plot, title=run_title(args.optimizer, hp, args.problem,
                                                            trace))
    if args.json:
        return _run_json(args, trace, hp, prob_over, problem, out)
    out.write(f"{opt!r} on {args.problem} ({problem!r}), backend {args.backend}, "
              f"{args.dtype}, seed {args.seed}\n")
    out.write(trace.summary() + "\n")
    best = trace.best_value.ravel()
    status = trace.status.ravel()
    ett = trace.evaluations_to_target.ravel()
    for k in range(best.size):
        reach = f", target after {ett[k]} evaluations" if ett[k] >= 0 else ""
        out.write(f"  run {k}: best f = {best[k]:.10g} ({STATUS_MESSAGES[int(status[k])]}"
                  f"{reach})\n")
    best_x = np.asarray(to_numpy(trace.best_x))
    if best_x.ndim == 1 and best_x.size <= 10:
        out.write(f"  best x = {np.array2string(best_x, precision=6)}\n")
    if args.plot:
        out.write(f"plot written to {args.plot}\n")
    return 0


def _check_grid_values(
    args: argparse.Namespace, grid: dict[str, tuple[Any, ...]], fixed: dict[str, Any]
) -> None:
    """Build the optimizer once per grid value (the others at the entry's values) before any
    run, so that a bad value is one usage error, not a column of failed rows."""
    try:
        setting = setting_for(args.problem)
        for name, values in {"--hp": (None,), **grid}.items():
            for value in values:
                over = fixed if value is None else {**fixed, name: value}
                hp, _ = hyperparameters_for(args.optimizer, setting, args.seed, over)
                try:
                    get_optimizer(args.optimizer, **hp)
                except (TypeError, ValueError) as exc:
                    where = "--hp" if value is None else f"--grid {name}={value!r}"
                    raise UsageError(
                        f"{where}: bad hyperparameter for {args.optimizer}: {exc}"
                    ) from exc
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def cmd_tune(args: argparse.Namespace, out: TextIO) -> int:
    """A grid search of one optimizer on one compare problem."""
    from physopt_ref.cli.tune import tune

    if args.optimizer not in REGISTRY:
        raise UsageError(f"unknown optimizer {args.optimizer!r}; registered: {registered_names()}")
    xp, dtype = _namespace(args)
    grid = dict(parse_grid(t) for t in args.grid) or None
    fixed = dict(parse_assignment(t, "--hp") for t in args.hp)
    _check_grid_values(args, grid or {}, fixed)
    progress = _progress(args)
    try:
        result = tune(args.optimizer, args.problem, grid, xp=xp, dtype=dtype, fixed=fixed,
                      seed=args.seed, full=args.full, ensemble=args.ensemble, evals=args.evals,
                      progress=progress)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        progress.close()
    if args.json:
        return write_json(result.as_dict(), out)
    from physopt_ref.cli.output import format_interval

    r0 = result.rows[0]
    out.write(f"physopt-ref tune {args.optimizer} on {args.problem}: {len(result.rows)} "
              f"settings, {r0.ensemble} runs of {r0.evals} evaluations each, seed "
              f"{args.seed}; fixed {result.fixed}\n\n")
    rows = [[*(r.hyperparameters[k] for k in result.grid), r.best, r.median_best,
             format_interval(r.successes, r.ensemble, r.success_ci) if r.f_min is not None
             else "-", r.median_evals_to_target, r.error] for r in result.rows]
    out.write(format_table([*result.grid, "best f", "median best", "success (95% CI)",
                            "evals to target", "error"], rows) + "\n")
    out.write(f"\nbest: {result.best}\n")
    if result.agrees is not None:
        verdict = "the same" if result.agrees else "different"
        out.write(f"the settings entry: {result.recorded} ({verdict})\n")
    return 0


def cmd_digits(args: argparse.Namespace, out: TextIO) -> int:
    """The Dyna paper's Table 1 in small."""
    from physopt_ref.cli.digits import PAPER_TABLE_1, run_digits

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
        return write_json(doc, out)
    headers = ["algorithm", "tr. acc.", "val. acc.", "test acc.", "hyperparameters"]
    out.write(f"Logistic regression on scikit-learn digits, {args.epochs} epochs of 96 "
              f"minibatches (Dyna paper Table 1 in small)\n\n")
    rows = [[r.label, r.train_accuracy, r.val_accuracy, r.test_accuracy, r.hyperparameters]
            for r in results]
    out.write(format_table(headers, rows) + "\n")
    out.write("\nThe paper (MNIST, 784 inputs, 50 epochs):\n")
    out.write(format_table(headers, [list(r) for r in PAPER_TABLE_1]) + "\n")
    return 0


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    """The registered optimizers with their hyperparameters, and the problems."""
    opts: dict[str, dict[str, Any]] = {}
    for name in registered_names():
        entry = REGISTRY[name]
        hps = {k: (None if p.default is inspect.Parameter.empty else p.default)
               for k, p in inspect.signature(entry.factory).parameters.items()}
        opts[name] = {"family": entry.family, "stochastic": entry.stochastic,
                      "hyperparameters": hps}
    probs = {}
    for name in available_problem_names():
        s = setting_for(name)
        probs[name] = {"factory": s.factory, "arguments": s.kwargs, "note": s.note,
                       "in_compare": name in SETTINGS}
    if args.json:
        return write_json({"optimizers": opts, "problems": probs}, out)
    out.write("Optimizers (physopt-ref run NAME PROBLEM --hp KEY=VALUE):\n")
    for name, info in opts.items():
        hp = ", ".join(f"{k}={v!r}" for k, v in info["hyperparameters"].items())
        out.write(f"  {name:16s} [{info['family']}] {hp}\n")
    out.write("\nProblems:\n")
    for name, info in probs.items():
        out.write(f"  {name:16s} {info['note']}\n")
    return 0
