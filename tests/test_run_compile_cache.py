"""The cache of ``run(..., compile=True)``'s compiled loop step (``runner/compiled.py``).

A second run with the same optimizer settings, objective, run settings and shapes reuses the
compiled step (no trace, no compilation) and gives the first run's bits, which are those of a
fresh process; a run that differs in anything the step reads (a hyperparameter, the problem
or its data, the target, the noise seed, the shape, a per-run array, a closure) never reuses
a wrong entry: it equals the run after the cache is cleared. The cache is bounded and keeps
no reference to a run's objects.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import weakref
from typing import Any

import numpy as np
import pytest
from physopt_ref.problems import Problem

import physopt_ref
from physopt_ref import run
from physopt_ref.runner import compiled as _compiled
from physopt_ref.runner.compile_key import Uncacheable, settings_key

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")


class Counted(Problem):
    """½ Σ c x² + 0.5; ``traces`` counts the evaluations with a tracer (a trace of the step)."""

    name = "counted"
    dim = 2
    x0 = np.array([1.0, -1.0])
    traces = 0

    def __init__(self, c: Any = (1.0, 3.0)) -> None:
        self.c = np.asarray(c, dtype=np.float64)

    def _value_and_grad(self, xp: Any, x: Any) -> tuple[Any, Any]:
        if isinstance(x, jax.core.Tracer):
            type(self).traces += 1
        c = xp.asarray(self.c, dtype=x.dtype)
        return 0.5 * xp.sum(c * x * x, axis=-1) + 0.5, c * x


def _x0(k: int = 4) -> Any:
    return jnp.asarray(np.linspace(0.5, 2.0, 2 * k).reshape(k, 2))


_KW: dict[str, Any] = {"target": 0.5 + 1e-3, "grad_noise": 1e-2, "noise_seed": 3,
                       "record_every": 2}


def _same(a: physopt_ref.Trace, b: physopt_ref.Trace) -> None:
    """Bit for bit: losses, points, stops."""
    np.testing.assert_array_equal(a.losses, b.losses)
    np.testing.assert_array_equal(np.asarray(a.x), np.asarray(b.x))
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_array_equal(a.steps_to_target, b.steps_to_target)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    _compiled.clear_compile_cache()
    yield
    _compiled.clear_compile_cache()


def test_second_identical_run_reuses_the_compiled_step() -> None:
    """New optimizer and problem objects with the same settings: no trace, the same bits."""
    Counted.traces = 0
    first = run(physopt_ref.heavy_ball(lr=0.05, momentum=0.5), Counted(), _x0(), 30,
                compile=True, **_KW)
    assert Counted.traces == 1
    second = run(physopt_ref.heavy_ball(lr=0.05, momentum=0.5), Counted(), _x0(), 30,
                 compile=True, **_KW)
    assert Counted.traces == 1  # not traced again (so not compiled again)
    info = _compiled.compile_cache_info()
    assert (info["hits"], info["misses"], info["size"]) == (1, 1, 1)
    _same(first, second)


_SCRIPT = """
import json, sys
import numpy as np, jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", {x64})
sys.path.insert(0, {root!r})
import physopt_ref
from tests.test_run_compile_cache import Counted, _KW, _x0
tr = physopt_ref.run(physopt_ref.bbi(lr=0.05), Counted(), _x0(), 30, compile=True, **_KW)
print(json.dumps([np.asarray(tr.losses).tobytes().hex(), np.asarray(tr.x).tobytes().hex()]))
"""


def test_cached_run_gives_the_bits_of_a_fresh_process() -> None:
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = [run(physopt_ref.bbi(lr=0.05), Counted(), _x0(), 30, compile=True, **_KW)
            for _ in range(2)]
    assert _compiled.compile_cache_info()["hits"] == 1
    out = subprocess.run([sys.executable, "-c", _SCRIPT.format(
        root=root, x64=bool(jax.config.jax_enable_x64))], check=True,
                         capture_output=True, text=True, timeout=300)
    losses, x = json.loads(out.stdout.strip().splitlines()[-1])
    for tr in runs:
        assert np.asarray(tr.losses).tobytes().hex() == losses
        assert np.asarray(tr.x).tobytes().hex() == x


def _base() -> tuple[Any, Any, Any, int, dict[str, Any]]:
    return physopt_ref.heavy_ball(lr=0.05, momentum=0.5), Counted(), _x0(), 30, dict(_KW)


def _variant(change: str) -> tuple[Any, Any, Any, int, dict[str, Any]]:
    opt, problem, x0, steps, kw = _base()
    if change == "hyperparameter":
        opt = physopt_ref.heavy_ball(lr=0.05, momentum=0.6)
    elif change == "optimizer":
        opt = physopt_ref.nesterov(lr=0.05, momentum=0.5)
    elif change == "problem data":
        problem = Counted((1.0, 2.0))
    elif change == "target":
        kw["target"] = 0.5 + 1e-2
    elif change == "gtol":
        kw["gtol"] = 1e-2
    elif change == "noise seed":
        kw["noise_seed"] = 4
    elif change == "noise member":
        kw["noise_member"] = 5
    elif change == "grad noise":
        kw["grad_noise"] = 2e-2
    elif change == "shape":
        x0 = _x0(6)
    elif change == "dtype":
        x0 = x0.astype(jnp.float32)
    else:
        raise AssertionError(change)
    return opt, problem, x0, steps, kw


def _run(case: tuple[Any, Any, Any, int, dict[str, Any]]) -> physopt_ref.Trace:
    opt, problem, x0, steps, kw = case
    return run(opt, problem, x0, steps, compile=True, **kw)


_CHANGES = ["hyperparameter", "optimizer", "problem data", "target", "gtol",
            "noise seed", "noise member", "grad noise", "shape", "dtype"]


@pytest.mark.parametrize("change", _CHANGES)
def test_changed_setting_never_reuses_a_wrong_entry(change: str) -> None:
    with jax.enable_x64(True):
        base = _run(_base())
        cached = _run(_variant(change))
        info = _compiled.compile_cache_info()
        assert (info["hits"], info["misses"]) == (0, 2), info  # a new entry, not the base's
        _compiled.clear_compile_cache()
        fresh = _run(_variant(change))
        again = _run(_base())
    _same(cached, fresh)
    _same(base, again)
    assert not np.array_equal(base.losses[-1], cached.losses[-1]) or change in (
        "target", "gtol", "noise member")  # the change matters (these three may stop alike)


def test_per_run_arrays_and_problem_data_are_keyed_by_content() -> None:
    """Equal contents give equal keys (no array is kept), other contents other keys."""

    def opt(lr: Any) -> Any:
        return physopt_ref.heavy_ball(lr=lr, momentum=0.5)

    lr = [0.05, 0.04, 0.03, 0.02]
    assert settings_key(opt(jnp.asarray(lr))) == settings_key(opt(jnp.asarray(lr)))
    assert settings_key(opt(jnp.asarray(lr))) != settings_key(opt(jnp.asarray(lr[::-1])))
    assert settings_key(opt(jnp.asarray(lr))) != settings_key(opt(np.asarray(lr)))
    assert settings_key(Counted().value_and_grad) == settings_key(Counted().value_and_grad)
    assert settings_key(Counted().value_and_grad) != settings_key(
        Counted((1.0, 3.0 + 1e-12)).value_and_grad)
    assert settings_key(0.05) != settings_key(np.float32(0.05))  # the type traces differently


def test_changed_per_run_array_never_reuses_a_wrong_entry() -> None:
    """A per-run ``lr`` of other contents compiles anew and equals the run after a clear (the
    checks off: with them on, a per-run array under ``run(compile=True)`` is refused, as on
    main, since the tracer reports no device)."""

    def opt(lr: Any) -> Any:
        return physopt_ref.heavy_ball(lr=jnp.asarray(lr), momentum=0.5)

    with jax.enable_x64(True), physopt_ref.debug_checks(False):
        base = run(opt([0.05, 0.04, 0.03, 0.02]), Counted(), _x0(), 30, compile=True, **_KW)
        other = run(opt([0.02, 0.03, 0.04, 0.05]), Counted(), _x0(), 30, compile=True, **_KW)
        assert _compiled.compile_cache_info()["misses"] == 2
        _compiled.clear_compile_cache()
        fresh = run(opt([0.02, 0.03, 0.04, 0.05]), Counted(), _x0(), 30, compile=True, **_KW)
    _same(other, fresh)
    assert not np.array_equal(base.losses, other.losses)


def test_changed_closure_of_a_function_objective() -> None:
    """A plain function objective is keyed by its code and the values it closes over."""

    def make(scale: float) -> Any:
        def fun(x: Any) -> Any:
            return 0.5 * scale * jnp.sum(x * x, axis=-1) + 0.5, scale * x

        return fun

    opt = physopt_ref.heavy_ball(lr=0.05, momentum=0.5)
    with jax.enable_x64(True):
        a = run(opt, make(1.0), _x0(), 20, batch_ndim=1, compile=True)
        a2 = run(opt, make(1.0), _x0(), 20, batch_ndim=1, compile=True)
        b = run(opt, make(2.0), _x0(), 20, batch_ndim=1, compile=True)
        _compiled.clear_compile_cache()
        b_fresh = run(opt, make(2.0), _x0(), 20, batch_ndim=1, compile=True)
    assert _compiled.compile_cache_info()["misses"] == 1
    _same(a, a2)
    _same(b, b_fresh)
    assert not np.array_equal(a.losses, b.losses)


def test_the_cache_is_bounded_and_keeps_no_run_objects() -> None:
    opt = physopt_ref.sgd(lr=0.05)
    problem = Counted()
    ref = weakref.ref(problem)
    for i in range(_compiled.CACHE_SIZE + 3):
        run(opt, problem, _x0(), 3, compile=True, target=0.5 + 1e-3 * (i + 1))
        assert _compiled.compile_cache_info()["size"] == min(i + 1, _compiled.CACHE_SIZE)
    # the oldest entry was dropped: its settings compile again
    run(opt, problem, _x0(), 3, compile=True, target=0.5 + 1e-3)
    assert _compiled.compile_cache_info()["hits"] == 0
    del problem
    gc.collect()
    assert ref() is None  # neither the key nor the compiled step holds the problem


def test_what_cannot_be_keyed_compiles_its_own_step() -> None:
    import functools

    def fun(x: Any, scale: float) -> Any:
        return 0.5 * scale * jnp.sum(x * x, axis=-1) + 0.5, scale * x

    with pytest.raises(Uncacheable):
        settings_key(functools.partial(fun, scale=2.0))  # its arguments live outside __dict__
    opt = physopt_ref.sgd(lr=0.05)
    for scale in (1.0, 2.0):
        tr = run(opt, functools.partial(fun, scale=scale), _x0(), 3, batch_ndim=1,
                 compile=True)
        expected = run(opt, functools.partial(fun, scale=scale), _x0(), 3, batch_ndim=1)
        np.testing.assert_allclose(tr.losses, expected.losses, rtol=1e-6)
    info = _compiled.compile_cache_info()
    assert (info["uncacheable"], info["size"]) == (2, 0)


def test_debug_switch_is_part_of_the_key() -> None:
    opt = physopt_ref.sgd(lr=0.05)
    run(opt, Counted(), _x0(), 3, compile=True)
    with physopt_ref.debug_checks(not physopt_ref.checks_enabled()):
        run(opt, Counted(), _x0(), 3, compile=True)
    assert _compiled.compile_cache_info()["misses"] == 2
