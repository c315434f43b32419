"""physopt_ref.backends: names, conversion and the counter-based random draws."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from physopt_ref.backends import (
    BackendNotInstalledError,
    available_backends,
    get_namespace,
    namespace_name,
    to_numpy,
)

from physopt_ref import backends

from .helpers import assert_like


def test_numpy_and_strict_always_available() -> None:
    names = available_backends()
    assert "numpy" in names and "array_api_strict" in names


def test_namespace_round_trip(xp: Any) -> None:
    assert get_namespace(namespace_name(xp)) is xp


def test_unknown_and_missing_backends_explain_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="known backends"):
        get_namespace("tensorflow")
    monkeypatch.setitem(backends.BACKENDS, "cupy", ("no_such_module_xyz", "pip install it"))
    with pytest.raises(BackendNotInstalledError, match="pip install it"):
        get_namespace("cupy")
    assert "cupy" not in available_backends()


def test_jax_x64_is_left_alone() -> None:
    """The library never changes a backend's global settings (JAX's x64 flag here)."""
    jax = pytest.importorskip("jax")
    before = jax.config.jax_enable_x64
    with jax.enable_x64(not before):
        get_namespace("jax")
        assert jax.config.jax_enable_x64 == (not before)
    assert jax.config.jax_enable_x64 == before


def test_to_numpy_copies_to_host(xp: Any) -> None:
    x = xp.asarray([1.0, 2.0], dtype=xp.float64)
    out = to_numpy(x)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, [1.0, 2.0])


def test_cupy_step_on_gpu() -> None:
    """On a machine with an NVIDIA GPU and CuPy, every optimizer steps on the device.

    Skipped (not failed) where CuPy or a GPU is missing, as on CI.
    """
    if "cupy" not in available_backends():
        pytest.skip("cupy is not installed or no GPU is visible")
    import physopt_ref as po

    xp = get_namespace("cupy")
    for name in po.registered_names():
        entry = po.REGISTRY[name]
        opt = entry.factory(**entry.test_hyperparameters)
        x = xp.asarray(np.linspace(-1, 1, 64), dtype=xp.float32)
        state = opt.init(x)
        for _ in range(3):
            x, state = opt.step(x, x, state, loss=0.5 * xp.sum(x * x) + 0.5)
        assert_like(x, xp, xp.float32, (64,))
        assert np.all(np.isfinite(to_numpy(x)))
