"""The kit itself (:mod:`physopt_ref.testing`): strategies, failure reports, verify, the CLI.

- the strategies draw valid inputs: every registered optimizer accepts the hyperparameters drawn
  for it (per-run arrays included) and runs finite on drawn trees; the contract holds on drawn
  trees, ensembles, backends and hyperparameters;
- every check fails on a planted bug, naming the property, the measured margin and the input,
  and hypothesis shrinks the input to a minimal counterexample;
- :func:`~physopt_ref.testing.verify` and ``physopt-ref verify`` print one row per property
  (exit 1 on a failure, 2 on a usage error); the example ``examples/verify_my_optimizer.py``
  catches its planted bug and passes the corrected version;
- without hypothesis the checks still import and run.
"""

from __future__ import annotations

import inspect
import runpy
import subprocess
import sys
import unittest
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from array_api_compat import array_namespace
from hypothesis import given, settings
from hypothesis import strategies as st
from physopt_ref.backends import get_namespace, to_numpy

import physopt_ref as po
from physopt_ref import REGISTRY, registered_names, tree_flatten, tree_unflatten
from physopt_ref import testing as kit
from physopt_ref.cli import main
from physopt_ref.testing import strategies as pst

from .conftest import SELECTED_BACKENDS

NAMES = registered_names()
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "verify_my_optimizer.py"


# ---------------------------------------------------------------------------------------------
# Strategies


def test_ranges_name_real_hyperparameters_of_registered_optimizers() -> None:
    for name, ranges in kit.RANGES.items():
        assert name in REGISTRY, f"RANGES lists {name!r}, which is not registered"
        params = inspect.signature(REGISTRY[name].factory).parameters
        assert set(ranges) <= set(params), (name, set(ranges) - set(params))
    for name in NAMES:  # every registered optimizer has a space (a table entry or the registry's)
        _, ranges, _ = kit.hyperparameter_space(name)
        assert ranges or not REGISTRY[name].sweep, name


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=12)
@given(data=st.data())
def test_drawn_hyperparameters_are_accepted_and_runs_stay_finite(name: str, data: Any) -> None:
    hp = data.draw(pst.hyperparameters(name, per_run_shape=(2,)), label="hyperparameters")
    workload = data.draw(pst.workloads(), label="workload")
    opt = REGISTRY[name].factory(**hp)
    steps = kit.trajectory(opt, kit.NP, workload.start((2,)), 8, batch_ndim=1,
                           workload=workload)
    for t, leaves in enumerate(steps):
        for leaf in leaves:
            assert leaf.shape[0] == 2
            assert np.all(np.isfinite(leaf)), (name, hp, t)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=4)
@given(data=st.data())
def test_contract_holds_on_drawn_inputs(name: str, data: Any) -> None:
    """Purity, ensembles, determinism, dtype and backend parity on drawn trees, ensembles,
    backends and hyperparameters (the registry's settings are one point of this space)."""
    hp = data.draw(pst.hyperparameters(name), label="hyperparameters")
    workload = data.draw(pst.workloads(), label="workload")
    batch_shape = data.draw(pst.ensemble_shapes(max_dims=2, max_side=2), label="batch_shape")
    backend = data.draw(pst.backends(SELECTED_BACKENDS), label="backend")
    subject = kit.Subject.registered(name, **hp)
    xp = get_namespace(backend)
    kit.check_purity(subject, workload=workload, batch_shape=batch_shape).raise_if_failed()
    # (drawn settings may draw no random numbers at all: BBI without bounces, say)
    kit.check_determinism(subject, workload=workload, batch_shape=batch_shape,
                          other_seed_offset=None).raise_if_failed()
    kit.check_dtype_kept(subject, xp, workload=workload).raise_if_failed()
    if batch_shape:
        kit.check_ensemble_equals_single_runs(subject, workload=workload,
                                              batch_shape=batch_shape).raise_if_failed()
    if backend != "numpy":
        kit.check_backend_parity(subject, xp, workload=workload).raise_if_failed()


@settings(max_examples=30)
@given(workload=pst.workloads())
def test_workloads_are_consistent_trees(workload: kit.QuadraticWorkload) -> None:
    """Loss and gradient agree (central differences) and keep the tree's structure."""
    params = workload.start()
    loss, grads = workload.loss_and_grads(kit.NP, params, 0)
    leaves, treedef = tree_flatten(params)
    g_leaves, g_def = tree_flatten(grads)
    assert g_def == treedef and float(loss) >= workload.offset
    for i, (x, g) in enumerate(zip(leaves, g_leaves, strict=True)):
        for j in range(x.size):
            shifted = []
            for h in (1e-6, -1e-6):
                moved = [np.array(v, dtype=np.float64) for v in leaves]
                moved[i].reshape(-1)[j] += h
                shifted.append(float(workload.loss_and_grads(
                    kit.NP, tree_unflatten(treedef, moved), 0)[0]))
            fd = (shifted[0] - shifted[1]) / 2e-6
            assert fd == pytest.approx(float(g.reshape(-1)[j]), rel=1e-6, abs=1e-8)
    assert len(kit.leaf_paths(params)) == len(leaves)


# ---------------------------------------------------------------------------------------------
# Planted bugs: each check fails, naming the property and the margin


class _State(NamedTuple):
    count: Any
    velocity: tuple[Any, ...]


class _RawHeavyBall:
    """A heavy ball written without the scaffold, the way a user might, with switchable bugs."""

    def __init__(self, lr: float = 0.1, momentum: float = 0.5, bug: str = "") -> None:
        self.lr, self.momentum, self.bug = lr, momentum, bug

    def init(self, params: Any, *, batch_ndim: int = 0) -> _State:
        leaves, _ = tree_flatten(params)
        xp = array_namespace(*leaves)
        count = xp.zeros(leaves[0].shape[:batch_ndim], dtype=xp.int32, device=leaves[0].device)
        return _State(count, tuple(xp.zeros_like(p) for p in leaves))

    def step(self, params: Any, grads: Any, state: _State, *, loss: Any = None):
        leaves, treedef = tree_flatten(params)
        g_leaves, _ = tree_flatten(grads)
        xp = array_namespace(*leaves, *g_leaves)
        scale = 1.0
        if self.bug == "mixes runs":  # a norm over the whole arrays, ensemble axes included
            scale = 1.0 / (1.0 + xp.sqrt(sum(xp.sum(g * g) for g in g_leaves)))
        new, velocity = [], []
        for p, g, v in zip(leaves, g_leaves, state.velocity, strict=True):
            if self.bug == "in-place":
                v *= self.momentum
                v -= self.lr * g
            else:
                v = self.momentum * v - self.lr * scale * g
            if self.bug == "float64":
                v = xp.astype(v, xp.float64)
            if self.bug == "default device":
                v = v + xp.asarray(0.0, dtype=v.dtype)
            if self.bug == "random":
                v = v + 1e-12 * float(np.random.default_rng().normal())
            if self.bug == "numpy only" and isinstance(p, np.ndarray):
                v = v * (1 + 1e-6)
            if self.bug == "host sync" and float(xp.sum(v)) > 1e300:
                v = -v
            velocity.append(v)
            new.append(p - v if self.bug == "wrong sign" else p + v)
        return tree_unflatten(treedef, new), _State(state.count + 1, tuple(velocity))


def _raw(bug: str) -> kit.Subject:
    return kit.Subject(f"heavy ball ({bug})", lambda **hp: _RawHeavyBall(**{"bug": bug, **hp}),
                       {"lr": 0.1, "momentum": 0.5})


def test_the_raw_heavy_ball_passes_the_contract() -> None:
    """The reference point of the planted bugs: without a bug it passes (any object with init
    and step will do; no scaffold needed)."""
    report = kit.verify(_raw(""), physics=["stability=heavy_ball", "damping"], compile=False,
                        max_examples=3)
    assert report.passed, report.table()


SINGLE = kit.QuadraticWorkload(np.array([0.5, 1.0, 2.0]), np.array([1.0, -2.0, 0.5]))


@pytest.mark.parametrize(
    ("bug", "check", "quantity"),
    [
        ("in-place", lambda s: kit.check_purity(s, workload=SINGLE), "inputs modified"),
        ("float64", lambda s: kit.check_dtype_kept(s, workload=SINGLE), "violations"),
        ("default device", lambda s: kit.check_device_kept(s, workload=SINGLE), "violations"),
        ("random", lambda s: kit.check_determinism(s, workload=SINGLE), "run 1 - run 2"),
        ("mixes runs", lambda s: kit.check_ensemble_equals_single_runs(s, workload=SINGLE),
         "max error / tolerance"),
        ("numpy only", lambda s: kit.check_backend_parity(
            s, get_namespace("array_api_strict"), workload=SINGLE), "max error / tolerance"),
    ],
)
def test_each_contract_check_catches_its_bug(bug: str, check: Any, quantity: str) -> None:
    result = check(_raw(bug))
    assert result.failed, result.message()
    c = result.condition
    assert quantity in c.quantity and c.margin < 0
    text = result.message()
    assert f"property {result.property!r} FAILED" in text and "counterexample" in text
    with pytest.raises(kit.PropertyError) as info:
        result.raise_if_failed()
    assert isinstance(info.value, AssertionError) and info.value.result is result


def test_a_search_shrinks_to_a_minimal_counterexample() -> None:
    """Runs mixed through a norm over the ensemble: the counterexample shrinks to one array of
    one element and a small one-axis ensemble (hypothesis shrinks trees, shapes and
    ensembles)."""
    prop = next(p for p in kit.contract_properties(compile=False)
                if p.name == "ensemble = single runs")
    result = kit.search(prop, _raw("mixes runs"), max_examples=20)
    assert result.failed
    batch_shape = result.example["batch_shape"]
    assert len(batch_shape) == 1 and 2 <= batch_shape[0] <= 3, result.message()
    leaves = tree_flatten(result.example["workload"]["x0"])[0]
    assert len(leaves) == 1 and np.size(leaves[0]) == 1, result.message()
    assert 1 <= result.examples_run <= 20


def test_stability_check_catches_a_wrong_sign() -> None:
    """The momentum update with the wrong sign ascends: no step size is stable."""
    result = kit.search(kit.stability_bound("heavy_ball"), _raw("wrong sign"), max_examples=3)
    assert result.failed and result.values["measured"] == 0.0
    assert result.condition.measured == 1.0 and "theory" in result.condition.detail
    assert kit.search(kit.stability_bound("heavy_ball"), _raw(""), max_examples=3).passed


def test_stability_at_one_step_size_reports_the_side() -> None:
    hb = lambda lr: po.heavy_ball(lr=lr, momentum=0.5)  # noqa: E731
    threshold = kit.stability_threshold("heavy_ball", 2.0, 0.5)
    assert threshold == pytest.approx(1.5)
    assert kit.check_stability_at(hb, 2.0, 0.9 * threshold, threshold).passed
    assert kit.check_stability_at(hb, 2.0, 1.1 * threshold, threshold).passed
    wrong = kit.check_stability_at(hb, 2.0, 0.9 * threshold, 0.5 * threshold)  # a wrong theory
    assert wrong.failed and wrong.condition.relation == ">"
    with pytest.raises(ValueError, match="momentum"):
        kit.stability_threshold("nesterov", 1.0, 1.0)


def test_bias_correction_catches_the_example_bug() -> None:
    example = runpy.run_path(str(EXAMPLE))
    buggy = kit.search(kit.bias_correction(), kit.Subject(
        "buggy", example["buggy_ema_heavy_ball"]), max_examples=10)
    assert buggy.failed
    assert buggy.example["steps"] == 2 and buggy.example["grad"].shape == (1,)
    fixed = kit.search(kit.bias_correction(), kit.Subject("fixed", example["ema_heavy_ball"]),
                       max_examples=10)
    assert fixed.passed, fixed.message()


def test_energy_checks_catch_a_step_without_rescale() -> None:
    """A zero-gradient BBI step with the rescale off leaves H away from E."""
    opt = po.bbi(lr=0.05, delta_e=1.0, rescale=False, t0=None, t1=None)
    x = np.array([1.0, -0.5, 0.25])
    state = opt.init(x)
    for _ in range(2):
        x, state = opt.step(x, x, state, loss=0.5 * float(x @ x) + 0.5)
    result = kit.check_energy_shell(opt, x, state, 0.3 * float(state.energy), kit.BornInfeld())
    assert result.failed and result.condition.measured > 1e-6
    with_rescale = po.bbi(lr=0.05, delta_e=1.0, t0=None, t1=None)
    assert kit.check_energy_shell(with_rescale, x, state, 0.3 * float(state.energy),
                                  kit.BornInfeld()).passed


def test_step_bound_and_damping_checks_catch_violations() -> None:
    sizes = kit.step_sizes(po.sgd(lr=0.1), np.zeros(2), [np.array([1.0, 50.0])] * 3)
    result = kit.check_step_bound(sizes, 1.0)
    assert result.failed and "step 1, element (1,)" in result.condition.detail
    assert result.condition.measured == pytest.approx(5.0)
    # gradient descent labelled as a momentum method: its "critical damping" is no such thing
    ignores_momentum = lambda lr, momentum: po.sgd(lr=lr)  # noqa: E731
    assert kit.check_critical_damping(ignores_momentum, 1e-3, 1.0).failed


def test_verify_reports_an_exception_as_the_failure_of_its_property() -> None:
    """A host sync in the step (float() of an array) fails under jax.jit: the row says so."""
    pytest.importorskip("jax")
    report = kit.verify(_raw("host sync"), only=["jax.jit = eager"])
    (row,) = report.results
    assert row.failed and row.condition.quantity == "exceptions raised"
    assert "Concretization" in row.condition.detail or "Tracer" in row.condition.detail


# ---------------------------------------------------------------------------------------------
# Results, reports, verify


def test_results_and_reports() -> None:
    ok = kit.CheckResult("p", kit.Condition("q", 0.5, 1.0, "<="), {"x": 1})
    bad = kit.CheckResult("r", kit.Condition("q", 2.0, 1.0, "<="), {"x": np.array([1.0])})
    skip = kit.CheckResult.skipped("s", "jax is not installed")
    assert ok.passed and ok.margin == 0.5 and bad.failed and bad.margin == -1.0
    assert (ok.status, bad.status, skip.status) == ("pass", "FAIL", "skip")
    assert kit.Condition("q", float("nan"), 1.0).margin == -float("inf")
    with pytest.raises(unittest.SkipTest, match="jax is not installed"):
        skip.raise_if_failed()
    report = kit.Report("mine", [ok, bad, skip])
    assert not report.passed and report.failures == [bad] and report["p"] is ok
    table = report.table()
    assert "mine: 1 passed, 1 failed, 1 skipped" in table
    assert table.splitlines()[3].split()[:2] == ["r", "FAIL"]
    with pytest.raises(kit.PropertyError, match="property 'r' FAILED"):
        report.raise_if_failed()
    tight = kit.combine("c", [kit.Condition("a", 0.0, 0.0), kit.Condition("b", 0.9, 1.0)])
    assert tight.condition.quantity == "b"  # a zero count has nothing to rank


@pytest.mark.parametrize("name", sorted(kit.REGISTERED_PHYSICS))
def test_registered_physics_holds(name: str) -> None:
    report = kit.verify(name, contract=False, max_examples=2)
    assert report.results and report.passed, report.table()


def test_verify_the_contract_of_a_registered_optimizer() -> None:
    report = kit.verify("heavy_ball", physics=[], compile=False, max_examples=3)
    assert [r.property for r in report.results] == [
        "purity", "dtype kept", "device kept", "determinism", "ensemble = single runs",
        "backend parity", "state of arrays"]
    assert report.passed, report.table()
    with pytest.raises(ValueError, match="unknown properties"):
        kit.verify("heavy_ball", only=["speed"])


# ---------------------------------------------------------------------------------------------
# The command line and the example


def test_cli_verify_fails_the_buggy_example_and_passes_the_fixed_one(capsys: Any) -> None:
    args = ["--hp", "lr=0.1", "--hp", "momentum=0.9", "--physics", "bias_correction",
            "--examples", "3", "--no-compile"]
    assert main(["verify", f"{EXAMPLE}:buggy_ema_heavy_ball", *args]) == 1
    out = capsys.readouterr().out
    rows = {line.split("  ")[0].strip(): line for line in out.splitlines()}
    assert rows["bias correction"].split()[2] == "FAIL"
    assert rows["purity"].split()[1] == "pass"
    assert "counterexample: grad=[1.], steps=2" in out
    assert main(["verify", f"{EXAMPLE}:ema_heavy_ball", *args]) == 0
    assert "8 passed, 0 failed" in capsys.readouterr().out


def test_cli_verify_a_registered_optimizer_by_module(capsys: Any) -> None:
    assert main(["verify", "physopt_ref:sgd", "--no-contract", "--examples", "2"]) == 0
    out = capsys.readouterr().out
    assert "stability bound" in out and "1 passed, 0 failed" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "no_such_module_xyz:f"], "cannot import"),
        (["verify", "physopt_ref"], "MODULE:FACTORY"),
        (["verify", "physopt_ref:no_such_factory"], "no attribute"),
        (["verify", "physopt_ref:__version__"], "not callable"),
        (["verify", f"{EXAMPLE}:ema_heavy_ball", "--hp", "momentum=1.5"], "momentum"),
        (["verify", f"{EXAMPLE}:ema_heavy_ball", "--hp", "lr"], "NAME=VALUE"),
        (["verify", f"{EXAMPLE}:ema_heavy_ball", "--examples", "0"], "--examples"),
    ],
)
def test_cli_verify_usage_errors(argv: list[str], message: str, capsys: Any) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_example_catches_the_bug_and_passes_the_fix(capsys: Any) -> None:
    example = runpy.run_path(str(EXAMPLE))
    assert example["main"](["--quick"]) == 0
    out = capsys.readouterr().out
    assert "buggy_ema_heavy_ball(lr=0.1, momentum=0.9): 7 passed, 1 failed" in out
    assert "ema_heavy_ball(lr=0.1, momentum=0.9): 8 passed, 0 failed" in out
    assert "bug caught: True; corrected version passes: True" in out


def test_checks_run_without_hypothesis() -> None:
    """The kit's checks import and run without hypothesis; strategies and verify say what to
    install."""
    code = (
        "import sys\n"
        "sys.modules['hypothesis'] = None\n"
        "import physopt_ref.testing as kit\n"
        "assert kit.check_purity(kit.Subject.registered('sgd')).passed\n"
        "try:\n"
        "    import physopt_ref.testing.strategies\n"
        "except ImportError as exc:\n"
        "    assert 'physopt_ref[testing]' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('strategies imported without hypothesis')\n"
        "try:\n"
        "    kit.verify('sgd', compile=False)\n"
        "except ImportError as exc:\n"
        "    assert 'physopt_ref[testing]' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('verify ran without hypothesis')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_to_numpy_of_checked_values() -> None:
    """Values carried by a result stay usable (the final state of a bias-correction run)."""
    result = kit.check_bias_correction(po.adam(lr=0.01), np.array([2.0, -1.0]), 3,
                                       expected_step=-0.01 * np.array([1.0, -1.0]),
                                       step_rtol=1e-6)
    assert result.passed, result.message()
    assert to_numpy(result.values["state"].count) == 3
