"""``physopt-ref verify MODULE:FACTORY``: run :mod:`physopt_ref.testing` on a user's optimizer.

``MODULE`` is a dotted module name (importable from the current directory) or the path of a
Python file; ``FACTORY`` a callable in it that returns an optimizer (an object with ``init`` and
``step``). ``--hp NAME=VALUE`` sets its hyperparameters, ``--physics NAME`` adds physics checks.
The output is a pass/fail table, one row per property, with the measured margin; the exit
status is 0 when every property holds, 1 when one fails, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from physopt_ref.cli.args import UsageError, parse_assignment, pos_int

__all__ = ["add_parser", "cmd_verify", "load_factory"]


def add_parser(sub: Any) -> None:
    """The ``verify`` subcommand's arguments."""
    from physopt_ref.testing.properties import PHYSICS_PRESETS
    from physopt_ref.testing.verify import DEFAULT_EXAMPLES

    p = sub.add_parser(
        "verify", help="property checks (contract and physics) on your own optimizer",
        description="Run the physopt_ref.testing kit on an optimizer factory: purity, dtype and "
        "device kept, determinism, ensemble = single runs, backend parity, the state of arrays, "
        "jit / scan / torch.compile, and the physics checks asked for with --physics. Prints "
        "one row per property with the measured margin and, for a failure, a minimal "
        "counterexample; exit status 1 when a property fails. Needs hypothesis.")
    p.add_argument("target", metavar="MODULE:FACTORY",
                   help="a dotted module or a .py file, and the factory in it, e.g. "
                   "examples/verify_my_optimizer.py:ema_heavy_ball")
    p.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                   help="a hyperparameter of the factory (repeatable)")
    p.add_argument("--physics", action="append", metavar="NAME",
                   choices=sorted(PHYSICS_PRESETS),
                   help="a physics check (repeatable): " + ", ".join(sorted(PHYSICS_PRESETS))
                   + " (default: none, or the registered optimizer's own)")
    p.add_argument("--stochastic", action="store_true",
                   help="the step draws random numbers from the hyperparameter 'seed' (another "
                   "seed must change the run; ensemble member k uses seed + k)")
    p.add_argument("--examples", type=pos_int, default=DEFAULT_EXAMPLES,
                   help=f"inputs drawn per property (default {DEFAULT_EXAMPLES})")
    p.add_argument("--no-compile", action="store_true",
                   help="leave out jax.jit, jax.lax.scan and torch.compile")
    p.add_argument("--no-contract", action="store_true",
                   help="only the physics checks")


def load_factory(target: str) -> tuple[str, Any]:
    """``MODULE:FACTORY`` -> ``(name, callable)``; a :class:`UsageError` saying what is wrong."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected MODULE:FACTORY, got {target!r}")
    path = Path(module_name)
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            if not path.is_file():
                raise UsageError(f"no such file: {module_name}")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:
                raise UsageError(f"cannot load {module_name} as a Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path and os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{module_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{target} is not callable")
    return attr, obj


def cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    """Run the kit; 0 when every property holds, 1 when one fails."""
    if importlib.util.find_spec("hypothesis") is None:
        raise UsageError("verify needs hypothesis: pip install 'physopt_ref[testing]'")
    if args.examples < 1:
        raise UsageError(f"--examples must be >= 1, got {args.examples}")
    from physopt_ref.core.registry import REGISTRY
    from physopt_ref.testing import Subject, verify

    name, factory = load_factory(args.target)
    hp = dict(parse_assignment(t, "--hp") for t in args.hp)
    registered = next((e for e in REGISTRY.values() if e.factory is factory), None)
    if registered is not None:
        subject = Subject.registered(registered.name, **hp)
    else:
        subject = Subject(name, factory, hp, stochastic=args.stochastic)
    try:
        opt = subject.build()
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad hyperparameter for {name}: {exc}") from exc
    if not (callable(getattr(opt, "init", None)) and callable(getattr(opt, "step", None))):
        raise UsageError(f"{args.target} returned a {type(opt).__name__}, not an optimizer "
                         "(an object with init and step)")
    if args.no_contract and not args.physics and registered is None:
        raise UsageError("nothing to check: --no-contract without --physics")
    report = verify(subject, physics=args.physics, contract=not args.no_contract,
                    compile=not args.no_compile, max_examples=args.examples)
    out.write(report.table() + "\n")
    return 0 if report.passed else 1
