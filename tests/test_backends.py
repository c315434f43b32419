"""physopt_ref.backends: names, conversion and the counter-based random draws."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from physopt_ref.backends import (
    BackendNotInstalledError,
    available_backends,
    get_namespace,
    host_normal,
    host_uniform,
    namespace_name,
    normal,
    to_numpy,
    uniform,
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


def test_same_numbers_on_every_backend(xp: Any) -> None:
    like64 = xp.zeros(1, dtype=xp.float64)
    like32 = xp.zeros(1, dtype=xp.float32)
    z = normal(7, 3, (4, 5), like=like64, stream=2)
    assert_like(z, xp, xp.float64, (4, 5))
    np.testing.assert_array_equal(to_numpy(z), host_normal(7, 3, (4, 5), stream=2))
    u = uniform(7, 3, (6,), like=like32)
    assert_like(u, xp, xp.float32, (6,))
    np.testing.assert_array_equal(to_numpy(u), host_uniform(7, 3, (6,)).astype(np.float32))


def test_draws_depend_on_every_key() -> None:
    base = host_normal(1, 2, (50,), stream=3)
    for other in (
        host_normal(2, 2, (50,), stream=3),
        host_normal(1, 3, (50,), stream=3),
        host_normal(1, 2, (50,), stream=4),
    ):
        assert not np.allclose(base, other)
    np.testing.assert_array_equal(base, host_normal(1, 2, (50,), stream=3))


def test_ensemble_member_k_is_seed_plus_k() -> None:
    ens = host_normal(10, 5, (2, 3, 4), batch_ndim=2, stream=1)
    for k, index in enumerate(np.ndindex(2, 3)):
        np.testing.assert_array_equal(ens[index], host_normal(10 + k, 5, (4,), stream=1))


def test_distribution_moments() -> None:
    """Mean, variance and a Kolmogorov-Smirnov check on 2·10⁵ draws (fixed keys)."""
    from scipy import stats

    z = host_normal(123, 0, (200_000,))
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / z.size)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    u = host_uniform(123, 0, (200_000,))
    assert u.min() >= 0 and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # neighbouring counters are uncorrelated
    a, b = host_normal(5, 0, (100_000,)), host_normal(5, 1, (100_000,))
    assert abs(np.corrcoef(a, b)[0, 1]) < 4 / np.sqrt(a.size)


def test_bad_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="seed"):
        host_normal(-1, 0, (3,))
    with pytest.raises(TypeError, match="counter"):
        host_normal(0, 1.5, (3,))
    with pytest.raises(ValueError, match="batch_ndim"):
        host_normal(0, 0, (3,), batch_ndim=2)


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
