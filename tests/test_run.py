"""Tests of :func:`physopt_ref.run`: ensembles, per-run stopping, traces, backends.

Uses inline problems (no dependence on the problem library) and the registry. Measured: the
whole file takes about 5 s on 2 cores with the four CPU backends.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from physopt_ref.backends import to_numpy
from physopt_ref.problems import KnownMinimum, Problem

import physopt_ref
from physopt_ref import REGISTRY, registered_names, run

C = np.array([1.0, 4.0, 10.0])


class Quad(Problem):
    """f = ½ Σ c x² + 0.5 (positive, as energy-based optimizers need)."""

    name = "quad"
    dim = 3
    x0 = np.array([1.0, -1.0, 0.5])
    minima = (KnownMinimum(np.zeros(3), 0.5, "exact"),)

    def _value_and_grad(self, xp: Any, x: Any) -> tuple[Any, Any]:
        c = xp.asarray(C, dtype=x.dtype)
        return 0.5 * xp.sum(c * x * x, axis=-1) + 0.5, c * x


class Blowup(Problem):
    """f = exp(x²)-like growth that overflows for an unstable step (to test divergence)."""

    name = "blowup"
    dim = 1
    x0 = np.array([1.0])

    def _value_and_grad(self, xp: Any, x: Any) -> tuple[Any, Any]:
        return xp.sum(x**4, axis=-1), 4.0 * x**3


def starts(k: int) -> np.ndarray:
    return Quad.x0 * (1.0 + 0.5 * np.arange(k, dtype=np.float64))[:, None]


def test_ensemble_equals_singles_with_per_run_stopping(xp):
    """K runs in one array give what K separate runs give, although they stop at different steps."""
    opt = physopt_ref.heavy_ball(lr=0.05, momentum=0.5)
    x0 = starts(4)
    target = 0.5 + 1e-6
    ens = run(opt, Quad(), xp.asarray(x0), 400, target=target, check_every=7)
    assert ens.batch_shape == (4,)
    assert np.all(ens.reached_target)
    assert len(set(ens.steps_to_target.tolist())) > 1  # they really stop at different steps
    for k in range(4):
        one = run(opt, Quad(), xp.asarray(x0[k]), 400, target=target)
        assert one.steps_to_target == ens.steps_to_target[k]
        np.testing.assert_allclose(to_numpy(ens.x)[k], to_numpy(one.x), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(ens.best_value[k], one.best_value, rtol=1e-12)


def test_finished_runs_stop_changing(xp):
    """After reaching its target a run is frozen: its loss stays constant in the record."""
    opt = physopt_ref.sgd(lr=0.1)
    tr = run(opt, Quad(), xp.asarray(starts(3)), 300, target=0.5 + 1e-4, stop_when_done=False)
    assert tr.steps == 300
    for k in range(3):
        s = tr.steps_to_target[k]
        assert 0 < s < 300
        after = tr.losses[tr.recorded_steps >= s, k]
        assert np.all(after == after[0])
        assert tr.steps_taken[k] == s
    assert np.all(tr.status == 1)


def test_trace_contents_and_record_every():
    xp = physopt_ref.backends.get_namespace("numpy")
    opt = physopt_ref.adam(lr=0.05)
    tr = run(opt, Quad(), xp.asarray(starts(2)), 50, record_every=10)
    np.testing.assert_array_equal(tr.recorded_steps, [0, 10, 20, 30, 40, 50])
    assert tr.losses.shape == (6, 2)
    np.testing.assert_allclose(tr.losses[0], Quad().value(starts(2)))
    assert tr.evaluations == 51
    assert np.all(tr.status == 0) and np.all(tr.steps_to_target == -1)
    assert np.isnan(tr.success_rate)
    assert np.all(tr.best_value <= tr.losses.min(axis=0) + 1e-15)
    np.testing.assert_allclose(Quad().value(np.asarray(tr.best_x)), tr.best_value)
    assert tr.wall_time > 0
    assert "adam" in tr.summary()


def test_gtol_and_default_start():
    opt = physopt_ref.sgd(lr=0.1)
    tr = run(opt, Quad(), None, 1000, gtol=1e-6)
    assert tr.batch_shape == ()
    assert int(tr.status) == 2
    g = Quad().grad(np.asarray(tr.x))
    assert np.max(np.abs(g)) <= 1e-6
    assert 0 < int(tr.steps_taken) < 1000


def test_callback_stop_and_info():
    seen = []

    def cb(info):
        seen.append(info.step)
        if info.step >= 20:
            raise StopIteration

    tr = run(physopt_ref.sgd(lr=0.01), Quad(), None, 1000, callback=cb, record_every=5)
    assert seen == [0, 5, 10, 15, 20]
    assert tr.steps == 20 and int(tr.status) == 3


def test_divergence_is_frozen_and_reported():
    x0 = np.array([[0.1], [3.0]])  # the second start makes sgd blow up
    tr = run(physopt_ref.sgd(lr=0.1), Blowup(), x0, 200)
    assert tr.status.tolist() == [0, 4]
    assert np.all(np.isfinite(to_numpy(tr.x)))
    assert np.isfinite(tr.best_value).all()


def test_state_history_records_per_run_fields():
    """Per-run floating state fields (energies etc.) are recorded; checked on every registered
    optimizer that has such a field."""
    checked = 0
    for name in registered_names():
        opt = REGISTRY[name].factory(**REGISTRY[name].test_hyperparameters)
        tr = run(opt, Quad(), starts(2), 6)
        for v in tr.state_history.values():
            assert v.shape == (6, 2)
            checked += 1
    assert checked > 0  # BBI and ECDSep keep per-run energies


def test_grad_noise_follows_the_ensemble_rule():
    """Member k of a noisy ensemble with seed s equals a single run with seed s and member
    index k; another seed shares no run's noise."""
    opt = physopt_ref.heavy_ball(lr=0.05, momentum=0.9)
    ens = run(opt, Quad(), starts(3), 30, grad_noise=0.3, noise_seed=5)
    for k in range(3):
        one = run(opt, Quad(), starts(3)[k], 30, grad_noise=0.3, noise_seed=5, noise_member=k)
        np.testing.assert_allclose(np.asarray(ens.x)[k], np.asarray(one.x), rtol=1e-13)
    other = run(opt, Quad(), starts(3), 30, grad_noise=0.3, noise_seed=6)
    for j in range(3):
        for k in range(3):
            assert not np.allclose(np.asarray(other.x)[j], np.asarray(ens.x)[k])
    quiet = run(opt, Quad(), starts(3), 30)
    assert not np.allclose(np.asarray(quiet.x), np.asarray(ens.x))


@pytest.mark.parametrize("name", registered_names())
def test_every_registered_optimizer_runs_on_an_ensemble(name):
    opt = REGISTRY[name].factory(**REGISTRY[name].test_hyperparameters)
    tr = run(opt, Quad(), starts(3), 20)
    assert tr.losses.shape == (21, 3)
    assert np.all(np.isfinite(tr.best_value))
    assert np.all(tr.best_value <= tr.losses[0] + 1e-12)


def test_float32_stays_float32(xp):
    x0 = xp.asarray(starts(2), dtype=xp.float32)
    tr = run(physopt_ref.nesterov(lr=0.05), Quad(), x0, 10)
    assert tr.x.dtype == xp.float32
    assert tr.best_x.dtype == xp.float32


def test_tree_parameters_with_a_callable_objective():
    def fun(p):
        w, b = p["w"], p["b"]
        return 0.5 * np.sum(w * w) + 0.5 * np.sum(b * b), {"w": w, "b": b}

    p0 = {"w": np.ones(3), "b": np.full((2, 2), -1.0)}
    tr = run(physopt_ref.sgd(lr=0.5), fun, p0, 200, target=1e-12)
    assert int(tr.status) == 1
    assert set(tr.best_x) == {"w", "b"}


def test_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        run(physopt_ref.sgd(), Quad(), None, -1)
    with pytest.raises(ValueError, match="record_every"):
        run(physopt_ref.sgd(), Quad(), None, 5, record_every=0)
    with pytest.raises(TypeError, match="problem"):
        run(physopt_ref.sgd(), 3.0, np.zeros(3), 5)


def _two_of_three() -> physopt_ref.Trace:
    """Three runs of heavy ball: two reach the target, one (a far start) not in 60 steps."""
    x0 = np.array([[1.0, -1.0, 0.5], [0.5, 0.5, 0.5], [100.0, 100.0, 100.0]])
    opt = physopt_ref.heavy_ball(lr=0.05, momentum=0.5)
    return run(opt, Quad(), x0, 60, target=0.5 + 1e-4, record_every=20)


def test_trace_counts_evaluations_per_run():
    tr = run(physopt_ref.sgd(lr=0.1), Quad(), starts(3), 300, target=0.5 + 1e-4)
    assert np.all(tr.reached_target)
    np.testing.assert_array_equal(tr.evaluations_to_target, tr.steps_to_target + 1)
    np.testing.assert_array_equal(tr.run_evaluations, tr.steps_taken + 1)
    assert tr.evaluations == tr.steps + 1
    none = run(physopt_ref.sgd(lr=1e-4), Quad(), starts(2), 5, target=0.0)
    np.testing.assert_array_equal(none.evaluations_to_target, [-1, -1])


def test_trace_repr_is_short():
    tr = run(physopt_ref.adam(lr=0.05), Quad(), starts(64), 200, target=0.5 + 1e-6,
             record_x=True)
    text = repr(tr)
    assert len(text) < 200 and "\n" not in text
    assert text.startswith("Trace(adam(") and "runs=64" in text and "steps=" in text
    assert f"success={tr.successes}/64" in text
    assert str(tr) == text


def test_trace_summary_quantiles_and_wilson_interval():
    tr = _two_of_three()
    assert tr.successes == 2 and tr.n_runs == 3
    text = tr.summary()
    low, high = physopt_ref.wilson_interval(2, 3)
    assert tr.success_interval == (low, high)
    assert f"2/3 runs (67%; 95% Wilson interval {low:.0%} to {high:.0%})" in text
    q = np.quantile(tr.best_value, [0, 0.25, 0.5, 0.75, 1.0])
    assert "best value      " + " / ".join(format(v, ".6g") for v in q) in text
    hit = tr.evaluations_to_target[tr.reached_target]
    assert f"evals to target {min(hit)} / " in text
    assert "reached the target value 2" in text and "step budget used up 1" in text
    no_target = run(physopt_ref.sgd(lr=0.1), Quad(), None, 5)
    assert "Wilson" not in no_target.summary() and no_target.success_interval is None


def test_trace_to_dict_is_plain_and_tabular(tmp_path):
    tr = _two_of_three()
    d = tr.to_dict()
    text = json.dumps(d, allow_nan=False)  # plain data only, no NaN
    assert json.loads(text) == d
    runs, history = d["runs"], d["history"]
    assert len({len(v) for v in runs.values()}) == 1 and len(runs["run"]) == 3
    assert len({len(v) for v in history.values()}) == 1
    assert len(history["loss"]) == tr.recorded_steps.size * 3
    assert runs["best_value"] == tr.best_value.tolist()
    assert runs["evaluations_to_target"] == tr.evaluations_to_target.tolist()
    assert runs["status_message"][2] == "step budget used up"
    # long form: the loss of run k at record i
    i, k = 2, 1
    row = i * 3 + k
    assert (history["step"][row], history["run"][row]) == (tr.recorded_steps[i], k)
    assert history["loss"][row] == tr.losses[i, k]
    assert d["success"] == {"successes": 2, "runs": 3, "rate": 2 / 3,
                            "wilson95": list(physopt_ref.wilson_interval(2, 3))}
    assert np.allclose(d["best_x"], to_numpy(tr.best_x))
    path = tmp_path / "trace.json"
    assert json.loads(tr.to_json(path)) == d
    assert json.loads(path.read_text()) == d
    assert "best_x" not in tr.to_dict(points=False)


def test_trace_to_dict_energies_and_pandas():
    opt = REGISTRY["bbi"].factory(**REGISTRY["bbi"].test_hyperparameters)
    tr = run(opt, Quad(), starts(2), 6, target=0.5)
    d = tr.to_dict()
    fields = set(tr.state_history)
    assert fields and fields <= set(d["history"])
    for name in fields:
        assert d["history"][name][:2] == [None, None]  # not recorded at the start
        assert d["history"][name][2:] == tr.state_history[name].reshape(-1).tolist()
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(d["runs"])
    assert frame.shape[0] == 2 and "evaluations_to_target" in frame
    assert pd.DataFrame(d["history"]).shape[0] == 2 * tr.recorded_steps.size


@pytest.mark.parametrize("compiled", [False, True])
def test_records_are_the_values_at_each_record(compiled: bool) -> None:
    """The trace's losses and state history are, bit for bit, the values the loop held at each
    record (seen by the callback, which runs at every record): the host buffers that the
    records are copied into one record late (``runner/records.py``) change no value, also for
    a run whose last step is no multiple of ``record_every`` and for ``record_x``."""
    from physopt_ref.runner.advance import _per_run_fields

    if compiled:
        jnp = pytest.importorskip("jax.numpy")
        x0: Any = jnp.asarray(starts(5))
    else:
        x0 = starts(5)
    opt = REGISTRY["bbi"].factory(**REGISTRY["bbi"].test_hyperparameters)
    seen: list[tuple[Any, ...]] = []

    def callback(info: Any) -> None:
        fields = _per_run_fields(info.state.energy.__array_namespace__(), info.state, (5,))
        seen.append((info.step, np.array(to_numpy(info.loss)), np.array(to_numpy(info.x)),
                     {k: np.array(to_numpy(v)) for k, v in fields.items()}))

    tr = run(opt, Quad(), x0, 23, record_every=4, callback=callback, record_x=True,
             compile=compiled)
    assert tr.recorded_steps.tolist() == [s for s, *_ in seen] == [0, 4, 8, 12, 16, 20, 23]
    np.testing.assert_array_equal(tr.losses, np.stack([f for _, f, _, _ in seen]))
    np.testing.assert_array_equal(tr.xs, np.stack([x for _, _, x, _ in seen]))
    assert tr.losses.dtype == np.float64 and tr.xs.dtype == np.asarray(to_numpy(x0)).dtype
    assert set(tr.state_history) == {"energy", "p2", "potential", "floor", "best_potential"}
    for name, values in tr.state_history.items():
        assert values.dtype == np.float64
        np.testing.assert_array_equal(values, np.stack([h[name] for *_, h in seen[1:]]))


def test_record_rows_copy_one_record_late_and_grow() -> None:
    """A record's backend array is released once the next record arrives (the loop no longer
    keeps every record on the backend), and the rows grow past the planned count."""
    import gc
    import weakref

    from physopt_ref.runner.records import _Rows, max_records

    assert max_records(300, 5) == 61 and max_records(23, 4) == 7 and max_records(1, 1) == 2
    rows = _Rows(2, np.float64)
    values = [np.full(3, float(i), dtype=np.float32) for i in range(5)]
    refs = [weakref.ref(v) for v in values]
    for v in values:
        rows.append(v)
    del values, v
    gc.collect()
    assert [r() is None for r in refs] == [True] * 4 + [False]  # the last one waits
    assert len(rows) == 5
    got = rows.array()
    assert got.dtype == np.float64 and refs[4]() is None
    np.testing.assert_array_equal(got, np.repeat(np.arange(5.0)[:, None], 3, axis=1))
