"""The soak (issue 12): every optimizer for 10⁶ steps on the 10-D quadratic, float32 and
float64, as one compiled ``jax.lax.scan`` loop per chunk of 10⁵ steps (an ensemble of 4 runs at
the registry's test settings, with :data:`SOAK_OVERRIDES`). No NaN or inf may appear; the end
state (stops, hovers, limit cycle) is classified from the last 1000 steps and printed
(``-s``), and written as JSON lines to ``$PHYSOPT_SOAK_REPORT`` when set. The table in
docs/reliability.md holds the figures.

Run: ``python -m pytest -m slow tests/test_soak.py -s`` (needs jax).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

import physopt_ref as po
from physopt_ref import REGISTRY

STEPS, CHUNK, TAIL = 1_000_000, 100_000, 1000
EIGS = np.arange(1.0, 11.0)
#: Where the registry's test settings are unstable on this problem by design. Dynamic
#: relaxation is stable iff h < 2/ω_max (its docstring, Eq. 6): with m = 0.5 and λ_max = 10,
#: ω_max = 4.47 and h must be < 0.447; the test settings' h = 0.6 diverges (as documented),
#: so the soak uses h = 0.3.
SOAK_OVERRIDES = {"dynamic_relaxation": {"h": 0.3}}


def _classify(f_tail: np.ndarray, moved: np.ndarray) -> str:
    """The end state from the losses of the last TAIL steps (per run) and whether x moved."""
    if not np.any(moved):
        return "stops"
    spread = np.max(f_tail, axis=0) - np.min(f_tail, axis=0)
    if np.all(spread <= 1e-3 * np.maximum(np.max(f_tail, axis=0), 1e-300)):
        return "hovers"
    return "limit cycle"


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_soak(name: str, dtype: str) -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    dt = getattr(jnp, dtype)
    opt = po.get_optimizer(name, **{**REGISTRY[name].test_hyperparameters,
                                    **SOAK_OVERRIDES.get(name, {})})
    lam = jnp.asarray(EIGS, dtype=dt)
    x = jnp.asarray(np.linspace(0.5, 2.0, 4)[:, None] * np.ones((4, 10)), dtype=dt)
    state = opt.init(x, batch_ndim=1)

    def body(carry, _):
        x, state = carry
        g = lam * x
        f = 0.5 * jnp.sum(g * x, axis=-1)
        x, state = opt.step(x, g, state, loss=f)
        return (x, state), f

    @jax.jit
    def chunk(x, state):
        (x, state), fs = jax.lax.scan(body, (x, state), None, length=CHUNK)
        return x, state, fs[-TAIL:], jnp.all(jnp.isfinite(fs))

    start = time.perf_counter()
    with po.debug_checks(False):
        for _ in range(STEPS // CHUNK):
            before = x
            x, state, f_tail, finite = chunk(x, state)
            assert bool(finite) and bool(jnp.all(jnp.isfinite(x))), f"{name} {dtype}: NaN/inf"
            assert x.dtype == dt
    seconds = time.perf_counter() - start
    f_tail = np.asarray(f_tail, dtype=np.float64)
    moved = np.any(np.asarray(before) != np.asarray(x), axis=-1)
    record = {
        "optimizer": name, "dtype": dtype, "steps": STEPS, "seconds": round(seconds, 1),
        "end_state": _classify(f_tail, moved),
        "final_f_max": float(np.max(f_tail[-1])),
        "tail_f_range": [float(np.min(f_tail)), float(np.max(f_tail))],
    }
    print(json.dumps(record))
    path = os.environ.get("PHYSOPT_SOAK_REPORT")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
