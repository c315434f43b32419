"""``physopt-ref verify MODULE:FACTORY``: run :mod:`physopt_ref.testing` on a user's optimizer.

``MODULE`` is a dotted module name (importable from the current directory) or the path of a
Python file; ``FACTORY`` a callable in it that returns an optimizer (an object with ``init`` and
``step``), a ``torch.optim.Optimizer`` subclass (``torch.optim:Adam``) or a factory of optax
transformations (``optax:adam``). ``--hp NAME=VALUE`` sets its hyperparameters, ``--physics
NAME`` chooses physics checks (without it the kit suggests some and says why). The output is a
pass/fail table, one row per property, with the measured margin.

Exit status: 0 when every property holds, 1 when one fails, 2 for a usage error: a bad option,
a module that cannot be imported (ImportError, SyntaxError, or any exception raised while it
runs), a missing or non-callable factory, a factory that raises or returns no optimizer. A
status 2 is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from physopt_ref.cli.args import UsageError, parse_assignments, pos_int

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
        "counterexample; exit status 1 when a property fails, 2 for a usage, import or factory "
        "error. Needs hypothesis.")
    p.add_argument("target", metavar="MODULE:FACTORY",
                   help="a dotted module or a .py file, and the factory in it, e.g. "
                   "examples/verify_my_optimizer.py:ema_heavy_ball, torch.optim:Adam (a torch "
                   "optimizer class), optax:adam (an optax transformation factory)")
    p.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                   help="a hyperparameter of the factory (repeatable)")
    p.add_argument("--physics", action="append", metavar="NAME",
                   choices=sorted(PHYSICS_PRESETS),
                   help="a physics check (repeatable): " + ", ".join(sorted(PHYSICS_PRESETS))
                   + " (default: the registered optimizer's own, else the ones the kit "
                   "suggests from the hyperparameter names and the first steps)")
    p.add_argument("--stochastic", action="store_true",
                   help="the step draws random numbers keyed by the hyperparameters 'seed' and "
                   "'member' (another seed must change the run; ensemble member k equals the "
                   "single run with member=k)")
    p.add_argument("--examples", type=pos_int, default=DEFAULT_EXAMPLES,
                   help=f"inputs drawn per property (default {DEFAULT_EXAMPLES})")
    p.add_argument("--no-compile", action="store_true",
                   help="leave out jax.jit, jax.lax.scan and torch.compile")
    p.add_argument("--no-contract", action="store_true",
                   help="only the physics checks")


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _import(module_name: str) -> Any:
    path = Path(module_name)
    if module_name.endswith(".py") or os.sep in module_name:
        if not path.is_file():
            raise UsageError(f"no such file: {module_name}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"cannot load {module_name} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(path.stem, module)
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(module_name)


def load_factory(target: str) -> tuple[str, Any]:
    """``MODULE:FACTORY`` -> ``(name, callable)``; a :class:`UsageError` saying what is wrong
    (the module cannot be imported or raises while it runs, the factory is missing)."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected MODULE:FACTORY, got {target!r}")
    try:
        module = _import(module_name)
    except UsageError:
        raise
    except (Exception, SystemExit) as exc:  # ImportError, SyntaxError, or the module's own
        raise UsageError(f"cannot import {module_name}: {_one_line(exc)}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{module_name} has no attribute {attr!r}") from None
        except Exception as exc:  # a module-level __getattr__ that raises
            raise UsageError(f"{module_name}.{attr}: {_one_line(exc)}") from exc
    if not callable(obj):
        raise UsageError(f"{target} is not callable")
    return attr, obj


def _subject(args: argparse.Namespace, name: str, factory: Any, hp: dict[str, Any]) -> Any:
    """The subject to verify; a :class:`UsageError` when building it fails."""
    from physopt_ref.core.registry import REGISTRY
    from physopt_ref.testing import Subject
    from physopt_ref.testing.frameworks import framework_subject

    registered = next((e for e in REGISTRY.values() if e.factory is factory), None)
    try:
        if registered is not None:
            subject = Subject.registered(registered.name, **hp)
        else:
            subject = framework_subject(name, factory, hp, stochastic=args.stochastic)
        if subject.framework != "physopt":
            return subject
        opt = subject.build()
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad hyperparameter for {name}: {_one_line(exc)}") from exc
    except Exception as exc:  # the factory's own failure
        raise UsageError(f"{args.target} raised when built: {_one_line(exc)}") from exc
    if not (callable(getattr(opt, "init", None)) and callable(getattr(opt, "step", None))):
        raise UsageError(f"{args.target} returned a {type(opt).__name__}, not an optimizer "
                         "(an object with init and step, a torch.optim.Optimizer class or an "
                         "optax transformation factory)")
    return subject


def cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    """Run the kit; 0 when every property holds, 1 when one fails (2: :class:`UsageError`)."""
    if importlib.util.find_spec("hypothesis") is None:
        raise UsageError("verify needs hypothesis: pip install 'physopt_ref[testing]'")
    if args.examples < 1:
        raise UsageError(f"--examples must be >= 1, got {args.examples}")
    from physopt_ref.testing import verify

    name, factory = load_factory(args.target)
    hp = parse_assignments(args.hp, "--hp")
    subject = _subject(args, name, factory, hp)
    report = verify(subject, physics=args.physics, contract=not args.no_contract,
                    compile=not args.no_compile, max_examples=args.examples)
    if not report.results or (args.no_contract and all(r.status == "skip"
                                                        for r in report.results)):
        raise UsageError("nothing to check: --no-contract and no physics check suggested "
                         "(give --physics)")
    out.write(report.table() + "\n")
    return 0 if report.passed else 1
