"""Test configuration: the ``xp`` backend fixture and hypothesis profiles.

Backends: numpy and array_api_strict always; torch, jax and cupy when they import (cupy only with
a GPU). ``PHYSOPT_BACKENDS=numpy,torch`` selects a subset; naming a backend that is not installed
is an error, not a silent skip.

Every step runs with the library's full input checks on (``physopt_ref.set_debug_checks``), and
JAX runs with x64 enabled (float64), which the library itself never changes.

Hypothesis: the ``deterministic`` profile (derandomised, no example database) is the default, so
CI runs are reproducible; ``HYPOTHESIS_PROFILE=explore`` draws fresh examples.
"""

from __future__ import annotations

import importlib.util
import os

import hypothesis
import pytest
from physopt_ref.backends import BACKENDS, available_backends, get_namespace

import physopt_ref

# The tests run every step with the full input checks (the library's debug switch).
physopt_ref.set_debug_checks(True)

# float64 on JAX needs its x64 flag. The library never sets it (a backend's global setting);
# the tests do, and the float32 compilation tests turn it off locally (jax.enable_x64(False)).
if importlib.util.find_spec("jax") is not None:
    import jax

    jax.config.update("jax_enable_x64", True)

hypothesis.settings.register_profile(
    "deterministic",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    max_examples=40,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
hypothesis.settings.register_profile(
    "explore",
    deadline=None,
    max_examples=300,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


def _selected_backends() -> list[str]:
    here = available_backends()
    wanted = os.environ.get("PHYSOPT_BACKENDS", "").strip()
    if not wanted:
        return here
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise pytest.UsageError(f"PHYSOPT_BACKENDS names unknown backends {unknown}")
    missing = [n for n in names if n not in here]
    if missing:
        raise pytest.UsageError(f"PHYSOPT_BACKENDS asks for backends not installed here: {missing}")
    return names


SELECTED_BACKENDS = _selected_backends()


def pytest_report_header(config: pytest.Config) -> str:
    return f"physopt_ref backends under test: {', '.join(SELECTED_BACKENDS)}"


@pytest.fixture(params=SELECTED_BACKENDS)
def xp(request: pytest.FixtureRequest):
    """An Array API namespace, once per selected backend."""
    return get_namespace(request.param)


_BACKEND_OUTCOMES: dict[str, dict[str, int]] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "xp" in callspec.params and report.when == "call":
        counts = _BACKEND_OUTCOMES.setdefault(callspec.params["xp"], {})
        counts[report.outcome] = counts.get(report.outcome, 0) + 1
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Per backend, how many backend-parametrised tests (the generic ones among them) ran."""
    if not _BACKEND_OUTCOMES:
        return
    terminalreporter.section("tests run per backend (the xp fixture)")
    for name in SELECTED_BACKENDS:
        counts = _BACKEND_OUTCOMES.get(name, {})
        text = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        terminalreporter.write_line(f"{name}: {text or 'none'}")
