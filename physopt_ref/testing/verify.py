"""Run the kit on an optimizer: a hypothesis search per property, one row per property.

:func:`search` draws inputs for one :class:`~physopt_ref.testing.properties.Property` and runs
its check on each; on the first failure hypothesis shrinks the input to a minimal one, and the
result reports that counterexample with its margin. When every input passes, the result is the
tightest one seen (the smallest margin). :func:`verify` does this for the contract's properties
and the physics ones asked for, and returns a :class:`~physopt_ref.testing.Report`.

The search is derandomised (the same inputs on every call) with no example database, so a
report is reproducible; an exception raised by the optimizer counts as a failure of the
property being checked, with the exception as the detail.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from physopt_ref.core.registry import REGISTRY
from physopt_ref.testing._result import CheckResult, Condition, Report
from physopt_ref.testing.properties import (
    REGISTERED_PHYSICS,
    Property,
    contract_properties,
    physics_preset,
)
from physopt_ref.testing.subject import Subject, as_subject

__all__ = ["DEFAULT_EXAMPLES", "search", "verify"]

#: Inputs drawn per property by default (costly properties cap it lower).
DEFAULT_EXAMPLES = 10


class _FailedError(Exception):
    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.message())
        self.result = result


def _run_one(prop: Property, subject: Subject, example: Any) -> CheckResult:
    """The check on one input; an exception from the optimizer becomes a failed result."""
    try:
        return prop.check(subject, example)
    except Exception as exc:  # the optimizer under test raised: a failure of this property
        detail = f"{type(exc).__name__}: {exc}"
        described = {"input": example} if example is not None else {}
        return CheckResult(prop.name, Condition("exceptions raised", 1, 0, "<=", detail),
                           described)


def search(prop: Property, subject: Any, max_examples: int = DEFAULT_EXAMPLES) -> CheckResult:
    """Check ``prop`` on up to ``max_examples`` drawn inputs; shrink the first failure.

    Returns the failing result for the minimal counterexample, or the passing result with the
    smallest margin, or a skip.
    """
    subject = as_subject(subject)
    if prop.strategy is None:
        return _run_one(prop, subject, None)
    try:
        from hypothesis import HealthCheck, Verbosity, given, settings
    except ImportError as exc:
        raise ImportError(
            "physopt_ref.testing.verify needs hypothesis: pip install 'physopt_ref[testing]' "
            "(the check functions themselves run without it)"
        ) from exc

    n = min(max_examples, prop.max_examples or max_examples)
    strategy = prop.strategy(subject)
    seen: dict[str, Any] = {"count": 0, "tightest": None, "skip": None}

    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
              print_blob=False, report_multiple_bugs=False)
    @given(strategy)
    def run(example: Any) -> None:
        seen["count"] += 1
        result = _run_one(prop, subject, example)
        if result.condition is None:
            seen["skip"] = result
            return
        if result.failed:
            seen.setdefault("until_failure", seen["count"])
            raise _FailedError(result)
        best = seen["tightest"]
        if best is None or result.condition.slack < best.condition.slack:
            seen["tightest"] = result

    try:
        run()
    except _FailedError as exc:  # the shrunk counterexample; count the inputs drawn until the
        # first failure (shrinking tries more)
        return exc.result.with_example(exc.result.example, examples_run=seen["until_failure"])
    if seen["tightest"] is not None:
        r = seen["tightest"]
        return r.with_example(r.example, examples_run=seen["count"])
    return seen["skip"] or CheckResult.skipped(prop.name, "no input was drawn")


def _registered_physics(subject: Subject) -> list[tuple[Property, Subject]]:
    out = []
    for preset, overrides in REGISTERED_PHYSICS.get(subject.name, ()):
        variant = subject.with_hyperparameters(**overrides)
        out += [(p, variant) for p in physics_preset(preset)]
    return out


def verify(
    subject: Any,
    *,
    physics: Iterable[str | Property] | None = None,
    contract: bool = True,
    compile: bool = True,
    max_examples: int = DEFAULT_EXAMPLES,
    only: Sequence[str] | None = None,
    progress: Any = None,
) -> Report:
    """Check an optimizer's contract and physics; one :class:`Report` row per property.

    Parameters
    ----------
    subject : Subject, registered name, or optimizer
        What to check. A plain optimizer object cannot vary its seed or step size: the checks
        that need to (determinism of a stochastic step, the stability threshold) need a
        :class:`Subject` with the factory.
    physics : iterable of preset names or Property, optional
        Physics properties (:data:`~physopt_ref.testing.properties.PHYSICS_PRESETS`, e.g.
        ``"stability=heavy_ball"``, ``"bias_correction"``). Default: for a registered optimizer
        the ones of :data:`~physopt_ref.testing.properties.REGISTERED_PHYSICS`, else none.
    contract : bool
        Include the contract's properties (purity, dtype, device, determinism, ensembles,
        backend parity, state).
    compile : bool
        Include jit / scan / torch.compile (skipped, with the reason, where JAX or torch is
        missing).
    max_examples : int
        Inputs drawn per property (costly properties use fewer).
    only : sequence of str, optional
        Run only the properties with these names.
    progress : callable, optional
        ``progress(name, seconds)`` after each property.
    """
    subject = as_subject(subject)
    runs: list[tuple[Property, Subject]] = []
    if contract:
        runs += [(p, subject) for p in contract_properties(compile)]
    if physics is None:
        runs += _registered_physics(subject) if subject.name in REGISTRY and (
            REGISTRY[subject.name].factory is subject.factory) else []
    else:
        for item in physics:
            props = physics_preset(item) if isinstance(item, str) else [item]
            runs += [(p, subject) for p in props]
    if only is not None:
        unknown = set(only) - {p.name for p, _ in runs}
        if unknown:
            raise ValueError(f"unknown properties {sorted(unknown)}; known: "
                             f"{[p.name for p, _ in runs]}")
        runs = [(p, s) for p, s in runs if p.name in only]
    results = []
    for prop, target in runs:
        t0 = time.perf_counter()
        results.append(search(prop, target, max_examples))
        if progress is not None:
            progress(prop.name, time.perf_counter() - t0)
    return Report(_describe(subject), results)


def _describe(subject: Subject) -> str:
    hp = ", ".join(f"{k}={v!r}" for k, v in subject.hyperparameters.items())
    return f"{subject.name}({hp})"
