"""The small-problem rules (``Optimizer``'s ``small``; issue 25): the general rule's bits.

A one-array NumPy step with constant hyperparameters and the debug checks off runs the
optimizer's small rule (SGD, heavy ball, Nesterov, BBI and ECDSep) instead of its general rule.
Here both paths step side by side from the same state for hundreds of steps, through BBI's
fixed and progress bounces, ΔV and F0 floor moves, ECDSep's jitter, stopped runs and NaN
losses, in float16, float32 and float64: parameters and every state field must be equal bit
for bit, with the same types and dtypes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import physopt_ref as po
from physopt_ref.core.tree import tree_flatten
from physopt_ref.optimizers.ecd_common import EVENT_BOUNCE, EVENT_FLOOR, EVENT_NONE

DTYPES = (np.float16, np.float32, np.float64)

#: (label, factory, the events that the run must go through)
CASES: list[tuple[str, Any, set[int]]] = [
    ("sgd", lambda: po.sgd(lr=0.01), set()),
    ("heavy_ball", lambda: po.heavy_ball(lr=0.01, momentum=0.8), set()),
    ("nesterov", lambda: po.nesterov(lr=0.01), set()),
    ("bbi", lambda: po.bbi(lr=0.01), set()),
    ("bbi bounces", lambda: po.bbi(lr=0.05, t0=5, t1=3, n_fixed_bounces=2), {EVENT_BOUNCE}),
    ("bbi isotropic, no rescale",
     lambda: po.bbi(lr=0.05, t0=6, t1=2, n_fixed_bounces=3, bounce_direction="isotropic",
                    rescale=False),
     {EVENT_BOUNCE}),
    ("bbi fixed bounces only", lambda: po.bbi(lr=0.05, t0=4, t1=None, n_fixed_bounces=3),
     {EVENT_BOUNCE}),
    ("bbi progress bounces only", lambda: po.bbi(lr=0.2, t0=None, t1=1), {EVENT_BOUNCE}),
    ("bbi tuning", lambda: po.bbi(lr=0.05, v0=3.5, delta_e=0.5, t0=3, n_fixed_bounces=2, t1=1,
                                  seed=7, v0_tuning=True), {EVENT_BOUNCE, EVENT_FLOOR}),
    ("bbi state in the parameters' dtype",
     lambda: po.bbi(lr=0.05, t0=5, t1=3, state_dtype="params"), {EVENT_BOUNCE}),
    ("ecdsep", lambda: po.ecdsep(lr=0.01, eta=1.0), set()),
    ("ecdsep state in the parameters' dtype",
     lambda: po.ecdsep(lr=0.05, eta=1.0, nu=0.1, state_dtype="params"), set()),
    ("ecdsep jitter", lambda: po.ecdsep(lr=0.05, eta=1.5, nu=0.1, delta_e=0.5, seed=3), set()),
    ("ecdsep tuning", lambda: po.ecdsep(lr=0.3, eta=1.5, nu=0.1, delta_e=0.5, f0=3.5,
                                        f0_tuning=True, seed=5), {EVENT_FLOOR}),
    ("ecdsep no jitter, no rescale", lambda: po.ecdsep(lr=0.05, eta=2.0, nu=0.0, s=0.5,
                                                       rescale=False), set()),
]


def _same(a: Any, b: Any, where: str) -> None:
    assert type(a) is type(b), where
    assert a.dtype == b.dtype and a.shape == b.shape, where
    assert a.tobytes() == b.tobytes(), f"{where}: {a!r} != {b!r}"


def _side_by_side(opt: Any, dtype: Any, steps: int, shape: tuple[int, ...] = (10,)) -> list:
    """Step the small and the general path from the same state; return the states."""
    scales = np.linspace(1.0, 10.0, int(np.prod(shape))).reshape(shape)
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    state = opt.init(x)
    states = []
    with po.debug_checks(False):
        for k in range(steps):
            wide = x.astype(np.float64)
            g = (scales * wide).astype(dtype)
            loss = 0.5 * float(np.sum(scales * wide * wide))
            if k == 7:
                loss = float("nan")  # a no-op for the energy-conserving rules
            elif k in (0, 1):
                loss = 0.0  # a stopped run (V <= ε₂) before the start
            fast = opt.step(x, g, state, loss=loss)
            general = opt._step(x, g, state, loss, False)
            _same(fast[0], general[0], f"step {k}: params")
            assert fast[0] is not x
            for name, a, b in zip(state._fields, fast[1], general[1], strict=True):
                if isinstance(a, tuple):
                    for i, (u, v) in enumerate(zip(a, b, strict=True)):
                        _same(u, v, f"step {k}: {name}[{i}]")
                        assert all(u is not w for w in tree_flatten(state)[0])
                else:
                    _same(a, b, f"step {k}: {name}")
            x, state = fast
            states.append(state)
    return states


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("label", "factory", "events"), CASES, ids=[c[0] for c in CASES])
def test_small_rule_has_the_bits_of_the_general_rule(
    label: str, factory: Any, events: set[int], dtype: Any
) -> None:
    opt = factory()
    assert opt._small is not None
    states = _side_by_side(opt, dtype, 150)
    if hasattr(states[0], "event"):
        seen = {int(s.event) for s in states}
        assert events <= seen, (label, seen)
        assert EVENT_NONE in seen  # the stopped and the NaN calls


def test_small_rule_takes_any_event_shape() -> None:
    """A parameter of several axes (one run): the reductions flatten the event as the
    general rule's do."""
    for opt in (po.bbi(lr=0.05, t1=2), po.ecdsep(lr=0.05, eta=1.0, nu=0.1)):
        _side_by_side(opt, np.float32, 40, shape=(2, 5))


def _refusing_general_rule(*args: Any) -> Any:
    raise AssertionError("the general rule ran")


@pytest.mark.parametrize(("label", "factory", "events"), CASES, ids=[c[0] for c in CASES])
def test_small_rule_replaces_the_general_rule(label: str, factory: Any, events: Any) -> None:
    """With the checks off, a one-array NumPy step never reaches the general rule."""
    opt = factory()
    opt._update_rule = _refusing_general_rule
    x = np.linspace(-1.0, 1.0, 10)
    state = opt.init(x)
    with po.debug_checks(False):
        for _ in range(3):
            x, state = opt.step(x, 0.5 * x + 0.1, state, loss=1.5)
    with po.debug_checks(True), pytest.raises(AssertionError, match="general rule"):
        opt.step(x, x, state, loss=1.5)


def test_small_rule_only_for_constant_hyperparameters_and_one_run() -> None:
    """Per-run arrays and schedules leave the general rule in charge (``_small`` is None);
    an ensemble, the safety option or a donated step go to it from the small rule."""
    x = np.linspace(-1.0, 1.0, 10)
    assert po.sgd(lr=np.asarray(0.1))._small is None
    assert po.sgd(lr=po.Schedule(lambda t: 0.1 + 0.0 * t))._small is None
    assert po.heavy_ball(lr=0.1, momentum=np.asarray(0.5))._small is None
    assert po.bbi(lr=0.1, v0=np.asarray(0.0))._small is None
    calls = []

    def counting(*args: Any) -> Any:
        calls.append(1)
        return rule(*args)

    for opt, params, kw in (
        (po.bbi(lr=0.1), np.stack([x, x]), {"batch_ndim": 1}),
        (po.ecdsep(lr=0.1, eta=1.0), np.stack([x, x]), {"batch_ndim": 1}),
        (po.bbi(lr=0.1, safety="backtrack"), x, {}),
        (po.ecdsep(lr=0.1, eta=1.0, safety="backtrack"), x, {}),
    ):
        rule = opt._update_rule
        opt._update_rule = counting
        calls.clear()
        state = opt.init(params, **kw)
        with po.debug_checks(False):
            opt.step(params, params, state, loss=1.5)
        assert calls == [1]
    opt = po.heavy_ball(lr=0.1)
    rule = opt._update_rule
    opt._update_rule = counting
    calls.clear()
    with po.debug_checks(False):
        opt.step(x.copy(), x, opt.init(x), donate=True)
    assert calls == [1]


def test_small_rule_state_continues_on_the_general_rule() -> None:
    """Steps on the small rule, then with the checks on (the general rule and its full
    checks), then off again: one trajectory, equal to the general rule's throughout."""
    opt = po.bbi(lr=0.05, t0=5, t1=3, n_fixed_bounces=2)
    x0 = np.linspace(-1.0, 1.0, 10)
    mixed, general = (x0, opt.init(x0)), (x0, opt.init(x0))
    for k in range(30):
        with po.debug_checks(k % 10 >= 5):
            p = mixed[0]
            mixed = opt.step(p, 0.5 * p, mixed[1], loss=1.0 + float(p @ p))
        p = general[0]
        general = opt._step(p, 0.5 * p, general[1], 1.0 + float(p @ p), False)
        for a, b in zip(tree_flatten(mixed)[0], tree_flatten(general)[0], strict=True):
            _same(a, b, f"step {k}")
