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

import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

from physopt_ref.core.registry import REGISTRY
from physopt_ref.testing._compare import x64_scope
from physopt_ref.testing._result import CheckResult, Condition, Report
from physopt_ref.testing.frameworks import not_applicable, optax_properties, physics_view
from physopt_ref.testing.probe import accommodate, probe
from physopt_ref.testing.properties import (
    REGISTERED_PHYSICS,
    Property,
    contract_properties,
    physics_preset,
)
from physopt_ref.testing.subject import Subject, as_subject
from physopt_ref.testing.suggest import suggest_physics
from physopt_ref.testing.torch_checks import not_applicable_results, torch_properties

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


def _contract(subject: Subject, compile: bool, notes: list[str]
              ) -> tuple[Subject, list[tuple[Property, Subject]], list[CheckResult]]:
    """The contract's properties for the subject's framework, the subject as the checks drive
    it, and a skip row for each property that does not apply."""
    if subject.framework == "torch":
        notes.append("a torch.optim.Optimizer class, built as cls(params, **hp); physics checks "
                     "through a NumPy step view")
        return subject, [(p, subject) for p in torch_properties()], not_applicable_results()
    if subject.framework == "optax":
        notes.append("an optax GradientTransformation factory, stepped as update + "
                     "apply_updates; physics checks in JAX's 64-bit scope")
        return subject, [(p, subject) for p in optax_properties(compile)], \
            not_applicable_results(dict(not_applicable(subject)))
    accepts = subject.accepts if subject.accepts is not None else probe(subject)
    notes.append(accepts.describe())
    subject = accommodate(subject, accepts)
    return subject, [(p, subject) for p in contract_properties(compile, accepts)], []


def _physics_scope(subject: Subject) -> Any:
    if subject.framework == "optax":
        import jax.numpy as jnp

        return x64_scope(jnp)
    return contextlib.nullcontext()


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
        :class:`Subject` with the factory. A torch optimizer class or an optax factory comes as
        a Subject from :func:`~physopt_ref.testing.frameworks.framework_subject`.
    physics : iterable of preset names or Property, optional
        Physics properties (:data:`~physopt_ref.testing.properties.PHYSICS_PRESETS`, e.g.
        ``"stability=heavy_ball"``, ``"bias_correction"``). Default: for a registered optimizer
        the ones of :data:`~physopt_ref.testing.properties.REGISTERED_PHYSICS`, else the ones
        :func:`~physopt_ref.testing.suggest.suggest_physics` proposes (the report's notes say
        which and why); ``[]`` for none.
    contract : bool
        Include the contract's properties (purity, dtype, device, determinism, ensembles,
        backend parity, state; for torch and optax subjects the ones that apply, see
        :mod:`~physopt_ref.testing.frameworks`).
    compile : bool
        Include jit / scan / torch.compile (skipped, with the reason, where JAX or torch is
        missing).
    max_examples : int
        Inputs drawn per property (costly properties use fewer).
    only : sequence of str, optional
        Run only the properties with these names.
    progress : callable, optional
        ``progress(name, seconds)`` after each property.

    The report's notes say what was probed (:func:`~physopt_ref.testing.probe.probe`: the tree
    kinds, ensembles and loss the optimizer takes; the inputs drawn keep to them), which physics
    checks were chosen and why, and which properties do not apply.
    """
    subject = as_subject(subject)
    notes: list[str] = []
    subject, contract_runs, skipped = _contract(subject, compile, notes)
    if subject.accepts is not None and not subject.accepts.trees:
        why = "; ".join(f"{k}: {v}" for k, v in subject.accepts.refused.items())
        failed = CheckResult("accepts a parameter tree", Condition(
            "tree kinds accepted", 0, 1, ">=", why), {"optimizer": subject.name})
        return Report(_describe(subject), [failed], notes)
    runs = contract_runs if contract else []
    if not contract:
        skipped = []
    physics_runs: list[tuple[Property, Subject]] = []
    target = physics_view(subject)
    if physics is None:
        if subject.name in REGISTRY and REGISTRY[subject.name].factory is subject.factory:
            physics_runs = _registered_physics(subject)
        else:
            with _physics_scope(target):
                props, reasons = suggest_physics(target)
            physics_runs = [(p, target) for p in props]
            notes += [f"physics suggested: {line}" for line in reasons]
    else:
        for item in physics:
            props = physics_preset(item) if isinstance(item, str) else [item]
            physics_runs += [(p, target) for p in props]
    runs = runs + physics_runs
    if only is not None:
        unknown = set(only) - {p.name for p, _ in runs}
        if unknown:
            raise ValueError(f"unknown properties {sorted(unknown)}; known: "
                             f"{[p.name for p, _ in runs]}")
        runs = [(p, s) for p, s in runs if p.name in only]
        skipped = []
    results = []
    physics_ids = {id(p) for p, _ in physics_runs}
    for prop, target in runs:
        t0 = time.perf_counter()
        scope = _physics_scope(target) if id(prop) in physics_ids else (
            contextlib.nullcontext())
        with scope:
            results.append(search(prop, target, max_examples))
        if progress is not None:
            progress(prop.name, time.perf_counter() - t0)
    return Report(_describe(subject), results + skipped, notes)


def _describe(subject: Subject) -> str:
    hp = ", ".join(f"{k}={v!r}" for k, v in subject.hyperparameters.items())
    return f"{subject.name}({hp})"
