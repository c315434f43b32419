"""``physopt_ref.run(..., compile=True)``: the run loop's step as one ``jax.jit`` call.

The compiled loop must give the eager loop's trace (the same per-run stops, records and
evaluation counts; values to rounding) and trace its step once for the whole run. Runs on JAX
only (skipped without it); NumPy and the other backends are refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import physopt_ref
from physopt_ref import REGISTRY, run
from physopt_ref.runner import compiled as _compiled

from .test_run import Blowup, Quad, starts

jnp = pytest.importorskip("jax.numpy")


def _assert_same_trace(a: physopt_ref.Trace, b: physopt_ref.Trace) -> None:
    for key in ("status", "steps_taken", "steps_to_target", "run_evaluations"):
        np.testing.assert_array_equal(np.asarray(getattr(a, key)), np.asarray(getattr(b, key)),
                                      err_msg=key)
    np.testing.assert_array_equal(a.steps, b.steps)
    # to rounding: XLA fuses and reorders, and the energy-conserving steps amplify a last-bit
    # difference over 40 steps to about 1e-10 relative; a wrong step differs by O(1)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(np.asarray(a.x), np.asarray(b.x), rtol=1e-7, atol=1e-12)
    assert set(a.state_history) == set(b.state_history)
    for key, value in a.state_history.items():
        np.testing.assert_allclose(value, b.state_history[key], rtol=1e-7, atol=1e-12,
                                   err_msg=key)


@pytest.mark.parametrize("name", ["heavy_ball", "adam", "bbi", "ecdsep"])
def test_compiled_loop_equals_the_eager_loop(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stops at different steps (a target), gradient noise keyed by the step, records every 3
    steps; the step is traced once although the loop takes 40 steps."""
    opt = REGISTRY[name].factory(**REGISTRY[name].test_hyperparameters)
    x0 = jnp.asarray(starts(4))
    kw: dict[str, Any] = {"target": 0.5 + 1e-3, "record_every": 3, "check_every": 4,
                          "grad_noise": 1e-3, "noise_seed": 3}
    eager = run(opt, Quad(), x0, 40, **kw)
    traced = []
    advance = _compiled._advance

    def counting(*args: Any) -> Any:
        traced.append(args[-1])
        return advance(*args)

    monkeypatch.setattr(_compiled, "_advance", counting)
    _compiled.clear_compile_cache()  # an earlier test's compiled step would not trace again
    compiled = run(opt, Quad(), x0, 40, compile=True, **kw)
    assert len(traced) == 1 and not isinstance(traced[0], int)  # one trace, k a tracer
    _assert_same_trace(eager, compiled)


def test_compiled_loop_reports_divergence() -> None:
    x0 = jnp.asarray(np.array([[0.1], [3.0]]))
    tr = run(physopt_ref.sgd(lr=0.1), Blowup(), x0, 50, compile=True)
    assert tr.status.tolist() == [0, 4]
    assert np.all(np.isfinite(np.asarray(tr.x)))


def test_compile_needs_jax_arrays() -> None:
    with pytest.raises(ValueError, match=r"compile=True.*needs JAX arrays; x0 holds .*numpy"):
        run(physopt_ref.sgd(), Quad(), starts(2), 5, compile=True)


def test_per_run_hyperparameters_under_debug_checks_and_no_dtype_warning():
    """``run(compile=True)`` on JAX with a per-run lr and the debug checks on: the traced
    parameters report no device, which the per-run check took for another device (it raised
    "the per-run array lr is on cpu:0, the parameters on None"); and the run's status codes
    asked JAX (32-bit mode) for int64, which warned at every run."""
    import warnings

    import jax.numpy as jnp
    from physopt_ref.problems import quadratic

    problem = quadratic(dim=2)
    lrs = jnp.asarray([0.02, 0.01, 0.005])
    opt = physopt_ref.heavy_ball(lr=lrs, momentum=0.5)
    x0 = jnp.ones((3, 2))
    with physopt_ref.debug_checks(True), warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled = run(opt, problem, x0, 20, compile=True)
    eager = run(opt, problem, x0, 20)
    np.testing.assert_allclose(np.asarray(compiled.losses), np.asarray(eager.losses), rtol=1e-5)
