"""One test per defect of issue 12 ("Nothing silent"): each failed before its fix.

Bad inputs must raise a clear exception naming the culprit; numerical edges must give a finite,
documented result in the parameters' dtype. The systematic sweep is ``tests/test_fuzz.py``; the
command-line table is in ``tests/test_cli.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from physopt_ref.backends import get_namespace, to_numpy

import physopt_ref as po
from physopt_ref import REGISTRY

EIGS = np.arange(1.0, 11.0)  # the 10-D quadratic of the issue: eigenvalues 1..10


def quadratic(xp: Any) -> Any:
    """``f(x) = ½ Σ λᵢ xᵢ²`` over the last axis, as a ``fun(x) -> (value, grad)`` of ``xp``."""

    def fun(x: Any) -> tuple[Any, Any]:
        lam = xp.asarray(EIGS, dtype=x.dtype, device=x.device if hasattr(x, "device") else None)
        g = lam * x
        return 0.5 * xp.sum(g * x, axis=-1), g

    return fun


# --------------------------------------------------------------------------------------------
# ECDSep / BBI: ε₂ valid for the dtype


@pytest.mark.parametrize("backend", ["numpy", pytest.param("torch", marks=pytest.mark.slow)])
def test_ecdsep_float32_converged_runs_stay_finite(backend: str) -> None:
    """16 runs, lr 0.05, η 1, float32: with ε₂ = 1e-40 they turned NaN at step 2953
    (f ≈ 8e-38, e^E/V overflowed) and run() reported them diverged (NumPy and torch alike;
    the fuzz suite covers every backend's ε₂ floor)."""
    if backend == "torch":
        pytest.importorskip("torch")
    xp = get_namespace(backend)
    x0 = xp.ones((16, 10), dtype=xp.float32)
    with po.debug_checks(False):  # 4500 steps: the per-step host checks would dominate
        trace = po.run(po.ecdsep(lr=0.05, eta=1.0), quadratic(xp), x0, 4500, batch_ndim=1,
                       record_every=500)
    assert not np.any(trace.status == 4), trace.status
    x = to_numpy(trace.x)
    assert x.dtype == np.float32 and np.all(np.isfinite(x))
    assert np.all(trace.final_value <= 1e-30)  # stopped at the float32 floor, 9.9e-32


@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
def test_eps2_below_the_dtype_floor_is_refused(xp: Any, name: str) -> None:
    hp = {"lr": 0.1} | ({"eta": 1.0} if name == "ecdsep" else {})
    with pytest.raises(ValueError, match=r"eps2 \(ε₂\) = 1e-40 lies below what \S*float32"):
        po.get_optimizer(name, **hp, eps2=1e-40).init(xp.ones(3, dtype=xp.float32))
    po.get_optimizer(name, **hp, eps2=1e-40).init(xp.ones(3, dtype=xp.float64))  # fine


def test_eps2_floor_values() -> None:
    from physopt_ref.optimizers.ecd_common import eps2_floor

    assert eps2_floor(np, np.float32) == pytest.approx(9.86e-32, rel=1e-2)
    assert eps2_floor(np, np.float64) < 1e-40  # float64 keeps the code's default 1e-40


# --------------------------------------------------------------------------------------------
# Mixed-dtype trees


@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
def test_energy_conserving_steps_refuse_mixed_dtype_trees(xp: Any, name: str) -> None:
    """Step 1 promoted the float32 leaf to float64; step 2 then failed with a misleading
    "a gradient of dtype float32 for a parameter of dtype float64"."""
    tree = {"a": xp.ones(3, dtype=xp.float32), "b": xp.ones(2, dtype=xp.float64)}
    opt = po.get_optimizer(name, **REGISTRY[name].test_hyperparameters)
    with pytest.raises(TypeError, match=f"{name} needs every parameter leaf in one floating "
                       r"dtype .* got \S*float32, \S*float64"):
        opt.init(tree)


# --------------------------------------------------------------------------------------------
# BBI numerical edges


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_bbi_non_finite_loss_is_a_no_op(xp: Any, bad: float) -> None:
    """A +inf loss made the parameters NaN for good."""
    opt = po.bbi(lr=0.1)
    x = xp.ones(3, dtype=xp.float64)
    state = opt.init(x)
    with po.debug_checks(False):  # the debug checks refuse it (tested below)
        x1, state = opt.step(x, x, state, loss=bad)
    np.testing.assert_array_equal(to_numpy(x1), np.ones(3))
    assert int(to_numpy(state.event)) == 0 and not bool(to_numpy(state.started))
    x2, state = opt.step(x1, x1, state, loss=1.0)
    assert int(to_numpy(state.event)) == 1
    assert np.all(np.isfinite(to_numpy(x2))) and np.all(to_numpy(x2) < 1.0)


def test_bbi_non_finite_loss_moves_no_floor(xp: Any) -> None:
    opt = po.bbi(lr=0.1, v0=0.5, v0_tuning=True)
    x = xp.ones(3, dtype=xp.float64)
    state = opt.init(x)
    with po.debug_checks(False):
        _, state = opt.step(x, x, state, loss=-np.inf)
    assert float(to_numpy(state.floor)) == 0.5 and int(to_numpy(state.event)) == 0


def test_bbi_float32_loss_near_the_overflow(xp: Any) -> None:
    """E²/V overflowed for a float32 loss near 3e38 and gave NaN."""
    opt = po.bbi(lr=0.1, delta_e=1.0)
    x = xp.ones(3, dtype=xp.float32)
    state = opt.init(x)
    for loss in (3e38, 3e38, 2.9e38):
        x, state = opt.step(x, x, state, loss=xp.asarray(loss, dtype=xp.float32))
        assert x.dtype == xp.float32
        assert np.all(np.isfinite(to_numpy(x))), to_numpy(x)
        assert np.isfinite(float(to_numpy(state.p2)))


def test_bbi_dv_tuning_from_starts_near_v0_stays_on_its_shell() -> None:
    """At the registry's test settings (v0 3.5), starts near v0 blew up: a floor move after the
    start left V > E, and V went 45 -> 1.7e5 (here 5.5 -> 1333 -> 8.5e14 -> inf). A started
    run now keeps E - V across a floor move."""
    opt = po.bbi(**REGISTRY["bbi"].test_hyperparameters)
    rng = np.random.default_rng(0)
    d = rng.normal(size=(256, 10))
    d /= np.sqrt(0.5 * np.sum(EIGS * d * d, axis=1, keepdims=True))
    x = d * np.sqrt(rng.uniform(3.3, 3.7, size=(256, 1)))  # f between 3.3 and 3.7
    state = opt.init(x, batch_ndim=1)
    worst = 0.0
    for _ in range(60):
        f = 0.5 * np.sum(EIGS * x * x, axis=1)
        before = state
        x, state = opt.step(x, EIGS * x, state, loss=f)
        moved = (state.event == 3) & before.started
        # E - V is kept by a floor move of a started run: E rises by the floor's drop
        np.testing.assert_allclose((state.energy - before.energy)[moved],
                                   (before.floor - state.floor)[moved], rtol=1e-12)
        worst = max(worst, float(np.max(state.potential)))
    assert np.all(np.isfinite(x))
    assert worst < 50.0, worst  # was inf within ten calls for 1998 of 2000 such starts


# --------------------------------------------------------------------------------------------
# Flags and the loss


FLAGS = [("bbi", "rescale"), ("bbi", "v0_tuning"), ("ecdsep", "rescale"),
         ("ecdsep", "f0_tuning")]


@pytest.mark.parametrize(("name", "flag"), FLAGS)
@pytest.mark.parametrize("value", ["no", "False", 1, 0, 1.0, None, [True]])
def test_flags_refuse_non_booleans(name: str, flag: str, value: Any) -> None:
    """``rescale="no"`` meant True."""
    hp = {"lr": 0.1} | ({"eta": 1.0} if name == "ecdsep" else {})
    with pytest.raises(TypeError, match=f"{flag} must be True or False"):
        po.get_optimizer(name, **hp, **{flag: value})


@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
def test_loss_true_is_a_clear_type_error(xp: Any, name: str) -> None:
    """``loss=True`` raised AttributeError."""
    opt = po.get_optimizer(name, **REGISTRY[name].test_hyperparameters)
    x = xp.ones(3, dtype=xp.float64)
    with pytest.raises(TypeError, match="loss must be a number or an array, got a bool"):
        opt.step(x, x, opt.init(x), loss=True)


# --------------------------------------------------------------------------------------------
# Gravity, NaN gradients, Adam


@pytest.mark.parametrize("shape", [(0,), (3, 0), (2, 0, 4)])
def test_gravity_empty_leaf(xp: Any, shape: tuple[int, ...]) -> None:
    """Failed with NumPy's "zero-size array to reduction operation maximum"."""
    opt = po.gravity(**REGISTRY["gravity"].test_hyperparameters)
    x = xp.zeros(shape, dtype=xp.float64)
    tree = {"empty": x, "w": xp.ones(2, dtype=xp.float64)}
    new, _ = opt.step(tree, tree, opt.init(tree))
    assert tuple(new["empty"].shape) == shape and new["empty"].dtype == xp.float64
    assert np.all(np.isfinite(to_numpy(new["w"])))


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_gradients_are_refused_under_the_debug_checks(xp: Any, name: str,
                                                                 bad: float) -> None:
    """NaN and inf gradients passed silently through all 11 optimizers."""
    opt = po.get_optimizer(name, **REGISTRY[name].test_hyperparameters)
    x = {"a": xp.ones(3, dtype=xp.float64), "b": xp.ones(2, dtype=xp.float64)}
    g = {"a": x["a"], "b": xp.asarray([1.0, bad], dtype=xp.float64)}
    with po.debug_checks(True), pytest.raises(FloatingPointError,
                                              match=f"{name}: gradient leaf 1 .* NaN or inf"):
        opt.step(x, g, opt.init(x), loss=1.0)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_non_finite_guard_is_the_remedy(xp: Any, name: str) -> None:
    opt = po.chain(po.non_finite_guard(),
                   po.get_optimizer(name, **REGISTRY[name].test_hyperparameters))
    x = xp.ones((2, 3), dtype=xp.float64)
    g = xp.asarray([[1.0, np.nan, 1.0], [1.0, 1.0, 1.0]], dtype=xp.float64)
    state = opt.init(x, batch_ndim=1)
    with po.debug_checks(True):
        new, state = opt.step(x, g, state, loss=xp.asarray([1.0, 1.0], dtype=xp.float64))
    np.testing.assert_array_equal(to_numpy(state.skipped), [1, 0])
    np.testing.assert_array_equal(to_numpy(new)[0], np.ones(3))  # the bad run kept its point
    assert np.all(np.isfinite(to_numpy(new)))


def test_non_finite_loss_is_refused_under_the_debug_checks(xp: Any) -> None:
    opt = po.bbi(lr=0.1)
    x = xp.ones(3, dtype=xp.float64)
    with po.debug_checks(True), pytest.raises(FloatingPointError, match="bbi: the loss"):
        opt.step(x, x, opt.init(x), loss=np.nan)


def test_adam_moves_with_float32_gradients_near_1e30(xp: Any) -> None:
    """g² overflowed to inf, so m/sqrt(v) = 0: Adam silently stopped moving."""
    opt = po.adam(lr=0.01)
    x = xp.zeros(3, dtype=xp.float32)
    state = opt.init(x)
    for k in range(1, 6):
        g = xp.asarray([1e30, -3e37, 1e-3], dtype=xp.float32)
        x, state = opt.step(x, g, state)
        assert x.dtype == xp.float32
        np.testing.assert_allclose(to_numpy(x), [-0.01 * k, 0.01 * k, -0.01 * k], rtol=1e-4)
        assert all(np.all(np.isfinite(to_numpy(r))) for r in state.rms)


@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
def test_ecd_float32_gradients_whose_square_overflows(name: str) -> None:
    """BBI and ECDSep form |g|² and |π|² unscaled, which overflow float32 for |g| above about
    1.8e19: the debug checks refuse such a gradient by name; clipping per element in front
    keeps the parameters and the whole state finite."""
    entry = po.REGISTRY[name]
    g = np.array([1e30, -3e37, 0.1], np.float32)
    opt = entry.factory(**entry.test_hyperparameters)
    x = np.ones(3, np.float32)
    with po.debug_checks(True), pytest.raises(FloatingPointError, match="squared norm"):
        opt.step(x, g, opt.init(x), loss=np.float32(1.0))
    with po.debug_checks(True):  # just below the limit: accepted
        opt.step(x, np.array([1e19, 0.0, 0.0], np.float32), opt.init(x), loss=np.float32(1.0))
    clipped = po.chain(po.transforms.clip_by_value(1e3), opt)
    state = clipped.init(x)
    for _ in range(5):
        x, state = clipped.step(x, g, state, loss=np.float32(1.0))
    assert x.dtype == np.float32 and np.all(np.isfinite(x))
    for field in state:
        for a in field if isinstance(field, tuple) else (field,):
            if hasattr(a, "dtype") and np.issubdtype(np.asarray(a).dtype, np.floating):
                assert np.all(np.isfinite(np.asarray(a)))


# --------------------------------------------------------------------------------------------
# run()


def _failing_at(n: int):
    calls = [0]

    def fun(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls[0] += 1
        if calls[0] > n:
            raise RuntimeError("the simulation crashed")
        return 0.5 * np.sum(x * x, axis=-1), x

    return fun


def test_run_keeps_the_partial_trace_when_the_objective_raises() -> None:
    """An objective raising midway lost the whole record."""
    with pytest.raises(RuntimeError, match="the simulation crashed") as info:
        po.run(po.sgd(lr=0.1), _failing_at(8), np.ones((4, 2)), 100, batch_ndim=1)
    trace = info.value.trace
    assert trace.steps == 7 and list(trace.recorded_steps) == list(range(8))
    np.testing.assert_allclose(to_numpy(trace.x), 0.9**7 * np.ones((4, 2)))
    assert trace.losses.shape == (8, 4)
    assert any("exc.trace" in note for note in info.value.__notes__)


def test_run_keeps_the_partial_trace_when_the_callback_raises() -> None:
    def callback(info: Any) -> None:
        if info.step == 5:
            raise KeyError("user bug")

    with pytest.raises(KeyError) as info:
        po.run(po.sgd(lr=0.1), _failing_at(10**6), np.ones(2), 50, callback=callback)
    assert info.value.trace.steps == 5 and info.value.trace.recorded_steps[-1] == 5


def test_run_suggests_batch_ndim_for_a_plain_function_with_an_ensemble() -> None:
    with pytest.raises(ValueError, match=r"pass run\(\.\.\., batch_ndim=1\)"):
        po.run(po.sgd(lr=0.1), _failing_at(10**6), np.ones((4, 2)), 5)


# --------------------------------------------------------------------------------------------
# torch: no autograd history


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_torch_steps_carry_no_autograd_history(name: str) -> None:
    torch = pytest.importorskip("torch")
    opt = po.get_optimizer(name, **REGISTRY[name].test_hyperparameters)
    x = torch.ones(2, 3, dtype=torch.float64, requires_grad=True)
    loss = 0.5 * (x * x).sum(dim=1)
    (g,) = torch.autograd.grad(loss.sum(), x, create_graph=True)  # g carries history too
    state = opt.init(x, batch_ndim=1)
    for _ in range(3):
        x, state = opt.step(x, g, state, loss=loss)
        tensors = [x, *(a for f in state for a in (f if isinstance(f, tuple) else (f,)))]
        for t in tensors:
            assert t.grad_fn is None and not t.requires_grad
