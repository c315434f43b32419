"""The ``physopt-ref`` command line (also ``python -m physopt_ref``).

Subcommands:

``compare``
    Every registered optimizer on every problem (quick mode by default, ``--full`` for the
    paper-sized runs), printed as a table with success intervals and tuning budgets, then the
    headline comparisons of the papers; ``--plot`` draws the runtime ECDF.
``run OPTIMIZER PROBLEM``
    One optimizer on one problem, every hyperparameter settable with ``--hp NAME=VALUE``.
``tune OPTIMIZER PROBLEM``
    A grid search on one compare problem (``--grid NAME=V1,V2,...``; without it, the grid
    recorded in the settings).
``digits``
    The Dyna paper's Table 1 in small (logistic regression on scikit-learn's digits).
``list``
    The registered optimizers (with their hyperparameters) and the problems.
``search OPTIMIZER PROBLEM``
    The global-search driver (:func:`physopt_ref.search`) on a cluster problem.
``bbob``
    The COCO bbob suite (needs ``cocoex``), with L-BFGS-B and CMA-ES as peers.
``verify MODULE:FACTORY``
    The property checks of :mod:`physopt_ref.testing` on a user's optimizer (a factory, a
    ``torch.optim.Optimizer`` class or an optax transformation factory): a pass/fail table, one
    row per property, with the measured margin (exit status 1 when a property fails; 2 when the
    module cannot be imported or the factory raises, with one line on stderr).

Exit status: 0 on success, 1 when ``verify`` finds a failing property, 2 for a bad option, a bad
hyperparameter, or a backend / optional package that is not installed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from physopt_ref.cli.args import UsageError
from physopt_ref.cli.commands import cmd_compare, cmd_digits, cmd_list, cmd_run, cmd_tune
from physopt_ref.cli.parser import PROG, build_parser
from physopt_ref.cli.science import cmd_bbob, cmd_search
from physopt_ref.cli.verify import cmd_verify

__all__ = ["main"]

_HANDLERS = {"compare": cmd_compare, "run": cmd_run, "tune": cmd_tune, "digits": cmd_digits,
             "list": cmd_list, "verify": cmd_verify, "bbob": cmd_bbob,
             "search": cmd_search}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a property fails, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return _HANDLERS[args.command](args, sys.stdout)
    except SystemExit as exc:  # --help, --version (0)
        return int(exc.code) if isinstance(exc.code, int) else 2
    except UsageError as exc:  # every bad option and value: one line, exit status 2
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    except BrokenPipeError:  # the reader left (``physopt-ref list | head``): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
