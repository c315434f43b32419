"""The argument parser of ``physopt-ref`` and the parsing of ``NAME=VALUE`` options."""

from __future__ import annotations

import argparse
import os
from typing import Any

from physopt_ref.backends import BACKENDS
from physopt_ref.cli.problem_settings import TUNE_SEED

__all__ = [
    "PLOT_EXTENSIONS",
    "PROG",
    "build_parser",
]

#: The figure formats ``--plot`` writes (matplotlib picks the format by extension).
from physopt_ref.cli.args import (
    PROG,
    _finite_float,
    _nonneg_float,
    _Parser,
    nonneg_int,
    pos_int,
)
from physopt_ref.cli.science import add_parsers as _science_parsers
from physopt_ref.cli.verify import add_parser as _verify_parser

PLOT_EXTENSIONS = (".png", ".pdf", ".svg")



def _plot_file(text: str) -> str:
    """``--plot FILE``: a known figure extension in an existing folder (checked up front)."""
    ext = os.path.splitext(text)[1].lower()
    if ext not in PLOT_EXTENSIONS:
        raise argparse.ArgumentTypeError(
            f"expected a file ending in {', '.join(PLOT_EXTENSIONS)}, got {text!r}"
        )
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"the folder {folder!r} of {text!r} does not exist")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file")
    return text


def _repeatable(p: argparse.ArgumentParser, flag: str, metavar: str, text: str) -> None:
    p.add_argument(flag, action="append", default=[], metavar=metavar,
                   help=f"{text} (repeatable)")


def _add_common(p: argparse.ArgumentParser, *, plot: bool = True, seed: int = 0) -> None:
    p.add_argument("--backend", default="numpy", choices=sorted(BACKENDS),
                   help="array backend (default numpy)")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                   help="floating dtype of the runs (default float64)")
    p.add_argument("--seed", type=nonneg_int, default=seed,
                   help=f"seed of the starts, noise and stochastic optimizers (default {seed})")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    if plot:
        p.add_argument("--plot", metavar="FILE", type=_plot_file,
                       help="write a figure (PNG, PDF, SVG by extension); needs matplotlib")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is shown only when stderr is a terminal)")


def _add_cluster(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster", "split the ensembles into chunks that run on a Dask "
                             "cluster (needs the distributed extra); the result is the same")
    g.add_argument("--workers", metavar="N",
                   help="start a local cluster of N worker processes for this command")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="use a running cluster, e.g. tcp://HOST:8786")


def _add_budget(p: argparse.ArgumentParser) -> None:
    p.add_argument("--full", action="store_true", help="paper-sized budgets and ensembles")
    p.add_argument("--ensemble", type=pos_int, help="starts per problem (overrides the settings)")
    p.add_argument("--evals", type=pos_int,
                   help="objective evaluations per run (overrides the settings; the start "
                   "counts as one, each step as one more)")


def _compare_parser(sub: Any) -> None:
    p = sub.add_parser("compare", help="every optimizer on every problem, and the headlines",
                       description="Run every registered optimizer on every problem of the "
                       "comparison (quick mode: under 2 minutes) and print a table with the best "
                       "value, the success count with its 95%% Wilson interval, the median "
                       "evaluations to the target, the time and whether the settings were "
                       "tuned; then the papers' headline comparisons. --plot draws the ECDF of "
                       "evaluations to the target per optimizer.")
    _add_budget(p)
    p.add_argument("--optimizers", help="comma-separated subset of the optimizers")
    p.add_argument("--problems", help="comma-separated subset of the problems")
    p.add_argument("--no-headlines", action="store_true", help="only the table")
    _add_common(p)
    _add_cluster(p)


def _run_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="one optimizer on one problem",
                       description="Run one optimizer on one problem; every hyperparameter can "
                       "be set with --hp NAME=VALUE (see `physopt-ref list`).")
    p.add_argument("optimizer", help="registered optimizer name (see `physopt-ref list`)")
    p.add_argument("problem", help="problem name (see `physopt-ref list`)")
    _repeatable(p, "--hp", "NAME=VALUE", "an optimizer hyperparameter, e.g. --hp lr=0.1")
    _repeatable(p, "--problem-arg", "NAME=VALUE", "an argument of the problem factory, e.g. dim=5")
    p.add_argument("--steps", type=pos_int,
                   help="steps per run (default: the problem's budget of evaluations - 1)")
    p.add_argument("--ensemble", type=pos_int, default=1,
                   help="number of runs; 1 starts at the problem's x0, more draw random starts")
    p.add_argument("--target", type=_finite_float, help="stop a run once f <= TARGET "
                   "(default: f* + the problem's tolerance)")
    p.add_argument("--gtol", type=_nonneg_float, help="stop a run once max|grad| <= GTOL")
    p.add_argument("--noise", type=_nonneg_float, default=0.0,
                   help="standard deviation of Gaussian gradient noise (default 0)")
    p.add_argument("--record-every", type=pos_int, default=1, help="record every K steps")
    _add_common(p)
    _add_cluster(p)


def _tune_parser(sub: Any) -> None:
    p = sub.add_parser("tune", help="grid search of one optimizer on one compare problem",
                       description="Run every point of a hyperparameter grid with the compare "
                       "problem's budget and ensemble, on seeds disjoint from the table's, and "
                       "rank them (most successes, then fewest evaluations to the target, then "
                       "lowest median best value). Without --grid: the grid recorded in the "
                       "settings, which repeats the search behind that entry.")
    p.add_argument("optimizer", help="registered optimizer name")
    p.add_argument("problem", help="a compare problem (see `physopt-ref list`)")
    _repeatable(p, "--grid", "NAME=V1,V2,...",
                "values of one hyperparameter (the grid is the product)")
    _repeatable(p, "--hp", "NAME=VALUE", "a hyperparameter held fixed")
    _add_budget(p)
    _add_common(p, plot=False, seed=TUNE_SEED)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``physopt-ref``."""
    parser = _Parser(
        prog=PROG,
        description="Physics-inspired optimizers (Dyna, CoolMomentum, BBI / ECDSep, Gravity, "
        "classic momentum) on analytic problems, on any Array API backend.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _compare_parser(sub)
    _run_parser(sub)
    _tune_parser(sub)
    _verify_parser(sub)
    _science_parsers(sub)

    p = sub.add_parser("digits", help="the Dyna paper's Table 1 on scikit-learn's digits",
                       description="Logistic regression on scikit-learn's 8x8 digits: Dyna with "
                       "zeta = 1, 0.5 and the Eq. 22 ramp (lr = 2/64) vs Adam (lr 1e-3).")
    p.add_argument("--epochs", type=pos_int, default=50, help="epochs (default 50, as the paper)")
    _add_common(p, plot=False)

    p = sub.add_parser("list", help="registered optimizers and problems")
    p.add_argument("--json", action="store_true", help="print JSON")
    return parser
