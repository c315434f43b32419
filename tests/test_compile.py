"""Compilation is part of the contract: every registered step under jit, scan and torch.compile.

For every optimizer of :data:`physopt_ref.REGISTRY`, on the contract quadratic of
``test_contract``:

* ``jax.jit(opt.step)`` equals the eager NumPy run step by step, in float64 (x64 on) and in
  float32 with JAX's default 32-bit mode (x64 off, where the random draws use uint32 words);
* ``jax.lax.scan`` over 200 steps equals 200 eager NumPy steps (the registry's ``long_run``
  settings keep the trajectory reproducible to rounding);
* ``torch.compile(opt.step, fullgraph=True)`` (inductor, the C++ CPU backend) compiles once and
  runs 20 steps without recompiling, equal to the eager torch run. ``fullgraph=True`` also makes
  any host synchronisation inside a step (``.item()``, ``bool()`` on a tensor) an error, as
  ``jax.jit`` does for tracers: together they are the host-sync check.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from physopt_ref import REGISTRY, registered_names

from .test_contract import NP, build, loss_and_grads, start

NAMES = registered_names()

pytestmark = pytest.mark.filterwarnings(
    # array-api-compat's torch wrappers use functools.lru_cache; Dynamo says it traces through.
    "ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning",
    # inductor's own use of a deprecated torch.jit API while it compiles (torch 2.13)
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
)


def _numpy_run(name: str, steps: int, dtype: Any, **overrides: Any) -> list[dict[str, Any]]:
    opt = build(name, **overrides)
    params = {k: np.asarray(v, dtype=dtype) for k, v in start((2,)).items()}
    state = opt.init(params, batch_ndim=1)
    out = []
    for _ in range(steps):
        loss, grads = loss_and_grads(NP, params, 1)
        params, state = opt.step(params, grads, state, loss=loss)
        out.append({k: np.asarray(v) for k, v in params.items()})
    return out


def _tolerances(dtype: Any, steps: int) -> dict[str, float]:
    """Rounding-level agreement, for a problem of scale 1; float32 errors grow over 200 steps."""
    if np.dtype(dtype) == np.float64:
        return {"rtol": 1e-9, "atol": 1e-12}
    return {"rtol": 2e-3, "atol": 2e-5 if steps <= 20 else 5e-4}


PRECISIONS = [pytest.param(np.float64, True, id="float64-x64"),
              pytest.param(np.float32, False, id="float32-no-x64")]


@pytest.mark.parametrize(("dtype", "x64"), PRECISIONS)
@pytest.mark.parametrize("name", NAMES)
def test_jax_jit_step_equals_eager_numpy(name: str, dtype: Any, x64: bool) -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    steps = 12
    reference = _numpy_run(name, steps, dtype)
    with jax.enable_x64(x64):
        opt = build(name)
        params = {k: jnp.asarray(v, dtype=dtype) for k, v in start((2,)).items()}
        state = opt.init(params, batch_ndim=1)
        step = jax.jit(opt.step)
        for t in range(steps):
            loss, grads = loss_and_grads(jnp, params, 1)
            params, state = step(params, grads, state, loss=loss)
            for key, want in reference[t].items():
                assert params[key].dtype == jnp.dtype(dtype)
                np.testing.assert_allclose(
                    np.asarray(params[key]), want, **_tolerances(dtype, steps),
                    err_msg=f"{name} jit step {t + 1} leaf {key}",
                )
        assert state.count.dtype == jnp.int32
        np.testing.assert_array_equal(np.asarray(state.count), [steps, steps])


@pytest.mark.parametrize(("dtype", "x64"), PRECISIONS)
@pytest.mark.parametrize("name", NAMES)
def test_jax_scan_200_steps_equals_eager_numpy(name: str, dtype: Any, x64: bool) -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    steps = 200
    overrides = dict(REGISTRY[name].long_run)
    reference = _numpy_run(name, steps, dtype, **overrides)[-1]
    with jax.enable_x64(x64):
        opt = build(name, **overrides)
        params = {k: jnp.asarray(v, dtype=dtype) for k, v in start((2,)).items()}
        state = opt.init(params, batch_ndim=1)

        def body(carry: Any, _: Any) -> tuple[Any, None]:
            p, s = carry
            loss, grads = loss_and_grads(jnp, p, 1)
            return opt.step(p, grads, s, loss=loss), None

        (params, state), _ = jax.lax.scan(body, (params, state), None, length=steps)
    for key, want in reference.items():
        np.testing.assert_allclose(
            np.asarray(params[key]), want, **_tolerances(dtype, steps), err_msg=f"{name} leaf {key}"
        )
    np.testing.assert_array_equal(np.asarray(state.count), [steps, steps])


@pytest.mark.parametrize("name", NAMES)
def test_torch_compile_compiles_once(name: str) -> None:
    torch = pytest.importorskip("torch")
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    opt = build(name)
    counter = CompileCounterWithBackend("inductor")
    step = torch.compile(opt.step, backend=counter, fullgraph=True)

    def run(fn: Any) -> tuple[dict[str, Any], Any]:
        params = {k: torch.asarray(v, dtype=torch.float32) for k, v in start((2,)).items()}
        state = opt.init(params, batch_ndim=1)
        for _ in range(20):
            loss, grads = loss_and_grads(torch, params, 1)
            params, state = fn(params, grads, state, loss=loss)
        return params, state

    compiled, state = run(step)
    assert counter.frame_count == 1, f"{name}: compiled {counter.frame_count} times in 20 steps"
    eager, _ = run(opt.step)
    for key in eager:
        assert compiled[key].dtype == torch.float32
        np.testing.assert_allclose(
            compiled[key].numpy(), eager[key].numpy(), rtol=1e-4, atol=1e-6, err_msg=key
        )
    assert state.count.dtype == torch.int32 and state.count.tolist() == [20, 20]
