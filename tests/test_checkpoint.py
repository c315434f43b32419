"""Checkpoints: ``save_state`` / ``load_state`` and ``run(..., checkpoint=, resume=)``.

For every registered optimizer (and two composed ones) on every backend: a run interrupted at
step k and resumed gives the uninterrupted trace bit for bit (gradient noise on, so the noise
counter matters; the stochastic optimizers' draws are keyed by their count), and a state saved
and loaded continues as the original does. Then the errors: another optimizer, other settings,
a newer format, damaged files, functions that a file cannot hold.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from array_api_compat import array_namespace
from physopt_ref.backends import to_numpy

import physopt_ref as po
from physopt_ref import REGISTRY
from physopt_ref.runner.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    checkpoint_info,
    load_state,
    save_state,
)

from .test_chain import COMPOSED
from .test_contract import NP, build, loss_and_grads, start

C = np.array([0.5, 1.0, 2.0, 4.0])
NAMES = po.registered_names()


def quad(x: Any) -> tuple[Any, Any]:
    """f = ½ Σ c x² + 0.5 per run (positive, as the energy-conserving optimizers need)."""
    xp = array_namespace(x)
    c = xp.asarray(C, dtype=x.dtype)
    return 0.5 * xp.sum(c * x * x, axis=-1) + 0.5, c * x


def x_start(xp: Any) -> Any:
    x0 = np.array([1.0, -2.0, 0.5, 1.5]) * (1.0 + 0.3 * np.arange(3.0))[:, None]
    return xp.asarray(x0, dtype=xp.float64)


SETTINGS = dict(batch_ndim=1, record_every=3, check_every=4, grad_noise=0.05, noise_seed=11,
                target=0.5 + 1e-9, record_x=True)


def assert_same_trace(a: po.Trace, b: po.Trace) -> None:
    """Every field but the wall time, bit for bit."""
    assert a.optimizer == b.optimizer and a.steps == b.steps
    assert a.evaluations == b.evaluations and a.batch_shape == b.batch_shape
    for name in ("recorded_steps", "losses", "best_value", "final_value", "status",
                 "steps_taken", "steps_to_target", "xs"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert sorted(a.state_history) == sorted(b.state_history)
    for name in a.state_history:
        np.testing.assert_array_equal(a.state_history[name], b.state_history[name], name)
    np.testing.assert_array_equal(to_numpy(a.x), to_numpy(b.x))
    np.testing.assert_array_equal(to_numpy(a.best_x), to_numpy(b.best_x))
    for field, x, y in zip(a.state._fields, a.state, b.state, strict=True):
        for u, v in zip(*((w if isinstance(w, tuple) else (w,)) for w in (x, y)), strict=True):
            assert u.dtype == v.dtype, field
            np.testing.assert_array_equal(to_numpy(u), to_numpy(v), err_msg=field)


@pytest.fixture(params=[*NAMES, *sorted(COMPOSED)])
def optimizer_name(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param in COMPOSED:
        monkeypatch.setitem(REGISTRY, request.param, COMPOSED[request.param])
    return request.param


def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(
    optimizer_name: str, xp: Any, tmp_path: Path
) -> None:
    steps, k = 17, 7  # k is not a multiple of record_every: the end record at k is dropped
    path = tmp_path / "run.npz"
    whole = po.run(build(optimizer_name), quad, x_start(xp), steps, **SETTINGS)
    part = po.run(build(optimizer_name), quad, x_start(xp), k, checkpoint=path, **SETTINGS)
    assert part.steps == k and part.recorded_steps[-1] == k
    resumed = po.run(build(optimizer_name), quad, x_start(xp), steps, resume=path, **SETTINGS)
    assert_same_trace(whole, resumed)
    assert np.any(whole.losses[-1] != whole.losses[0])  # the runs moved


def test_resume_after_a_crash_from_the_periodic_checkpoint(tmp_path: Path) -> None:
    """The process dies after step 13: the periodic checkpoint of step 10 (copied away before
    the interruption, which writes its own) and the one written on the way out (step 15, the
    last completed) each continue to the same trace."""
    path = tmp_path / "run.npz"
    at_10 = tmp_path / "at_10.npz"
    opt = po.bbi(**REGISTRY["bbi"].test_hyperparameters)
    whole = po.run(opt, quad, x_start(NP), 30, **SETTINGS)

    def crash(info: po.StepInfo) -> None:
        if info.step == 12:
            at_10.write_bytes(path.read_bytes())
        if info.step >= 13:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        po.run(opt, quad, x_start(NP), 30, checkpoint=path, checkpoint_every=5, callback=crash,
               **SETTINGS)
    assert checkpoint_info(at_10)["run"]["step"] == 10
    assert checkpoint_info(path)["run"]["step"] == 15
    for saved in (at_10, path):
        resumed = po.run(opt, quad, x_start(NP), 30, resume=saved, checkpoint=saved, **SETTINGS)
        assert_same_trace(whole, resumed)
        assert checkpoint_info(saved)["run"]["step"] == whole.steps


def test_resume_of_a_finished_or_callback_stopped_run(tmp_path: Path) -> None:
    opt = po.heavy_ball(lr=0.2, momentum=0.5)
    path = tmp_path / "run.npz"
    exact = {**SETTINGS, "grad_noise": 0.0}
    done = po.run(opt, quad, x_start(NP), 400, checkpoint=path, **exact)
    assert done.steps < 400 and np.all(done.reached_target)
    assert_same_trace(done, po.run(opt, quad, x_start(NP), 400, resume=path, **exact))
    whole = po.run(opt, quad, x_start(NP), 30, **SETTINGS)
    stopped = po.run(opt, quad, x_start(NP), 30, checkpoint=path,
                     callback=lambda info: info.step >= 9, **SETTINGS)
    assert stopped.steps == 9 and np.all(stopped.status == 3)
    assert_same_trace(whole, po.run(opt, quad, x_start(NP), 30, resume=path, **SETTINGS))
    # Resumed to the step where it stopped: the trace of a call of that many steps.
    assert_same_trace(po.run(opt, quad, x_start(NP), 9, **SETTINGS),
                      po.run(opt, quad, x_start(NP), 9, resume=path, **SETTINGS))


def test_resume_refuses_another_optimizer_settings_or_start(tmp_path: Path) -> None:
    path = tmp_path / "run.npz"
    opt = po.heavy_ball(lr=0.1, momentum=0.5)
    po.run(opt, quad, x_start(NP), 5, checkpoint=path, **SETTINGS)
    with pytest.raises(CheckpointError, match=r"another optimizer.*lr: 0.1 vs 0.2"):
        po.run(po.heavy_ball(lr=0.2, momentum=0.5), quad, x_start(NP), 9, resume=path,
               **SETTINGS)
    with pytest.raises(CheckpointError, match=r"another optimizer.*sgd"):
        po.run(po.sgd(lr=0.1), quad, x_start(NP), 9, resume=path, **SETTINGS)
    with pytest.raises(CheckpointError, match="grad_noise"):
        po.run(opt, quad, x_start(NP), 9, resume=path, **{**SETTINGS, "grad_noise": 0.0})
    with pytest.raises(CheckpointError, match="past steps"):
        po.run(opt, quad, x_start(NP), 3, resume=path, **SETTINGS)
    with pytest.raises(CheckpointError, match="dtypes"):
        po.run(opt, quad, NP.astype(x_start(NP), NP.float32), 9, resume=path, **SETTINGS)
    with pytest.raises(CheckpointError, match="ensemble"):
        po.run(opt, quad, x_start(NP)[:2], 9, resume=path, **SETTINGS)
    with pytest.raises(ValueError, match="checkpoint_every"):
        po.run(opt, quad, x_start(NP), 9, checkpoint_every=3, **SETTINGS)


# ---------------------------------------------------------------------------------------------
# save_state / load_state


def _steps(opt: po.Optimizer, xp: Any, params: Any, state: Any, n: int) -> tuple[Any, Any]:
    for _ in range(n):
        loss, grads = loss_and_grads(xp, params, 1)
        params, state = opt.step(params, grads, state, loss=loss)
    return params, state


def test_saved_state_continues_bit_for_bit(optimizer_name: str, xp: Any, tmp_path: Path) -> None:
    """Energies, floors, counters, bounce state, momenta: all come back exactly, and the
    optimizer built from the file continues as the original."""
    opt = build(optimizer_name)
    params = {k: xp.asarray(v, dtype=xp.float64) for k, v in start((2,)).items()}
    params, state = _steps(opt, xp, params, opt.init(params, batch_ndim=1), 4)
    path = tmp_path / "state.npz"
    save_state(path, opt, state)
    # A function in the optimizer (chained_heavy_ball's mask) is recorded by name only.
    holds_code = '"callable"' in json.dumps(checkpoint_info(path))
    assert holds_code == (optimizer_name == "chained_heavy_ball")
    rebuilt, loaded = load_state(path, opt if holds_code else None, like=params["w"])
    assert repr(rebuilt) == repr(opt) and type(loaded) is opt.state_type
    for field, a, b in zip(state._fields, state, loaded, strict=True):
        for u, v in zip(*((w if isinstance(w, tuple) else (w,)) for w in (a, b)), strict=True):
            assert u.dtype == v.dtype and type(u) is type(v), field
            np.testing.assert_array_equal(to_numpy(u), to_numpy(v), err_msg=field)
    want, want_state = _steps(opt, xp, params, state, 4)
    got, got_state = _steps(rebuilt, xp, params, loaded, 4)
    for key in want:
        np.testing.assert_array_equal(to_numpy(got[key]), to_numpy(want[key]))
    np.testing.assert_array_equal(to_numpy(got_state.count), to_numpy(want_state.count))
    _, host_state = load_state(path, opt)  # given the optimizer; NumPy arrays
    assert isinstance(host_state.count, np.ndarray) and host_state.count.dtype == np.int32


def test_the_file_records_name_hyperparameters_and_versions(tmp_path: Path) -> None:
    opt = po.chain(po.clip_by_global_norm(np.array([1.0, 2.0])),
                   po.coolmomentum(lr=po.exponential_decay(0.1, 0.5, 100), weight_decay=0.01))
    params = np.ones((2, 3))
    path = tmp_path / "state.npz"
    save_state(path, opt, opt.init(params, batch_ndim=1))
    info = checkpoint_info(path)
    assert info["format_version"] == FORMAT_VERSION and info["library_version"] == po.__version__
    spec = info["optimizer"]["spec"]
    assert spec["name"] == "coolmomentum"
    assert spec["hyperparameters"]["weight_decay"] == 0.01
    assert spec["hyperparameters"]["lr"] == {
        "schedule": "exponential_decay",
        "arguments": {"init": 0.1, "rate": 0.5, "steps": 100.0}}
    assert spec["transforms"][0]["transform"] == "clip_by_global_norm"
    with np.load(path, allow_pickle=False) as data:  # a plain npz: no pickle anywhere
        assert "state/count" in data.files and "state/displacement/0" in data.files
    rebuilt, _ = load_state(path)
    assert repr(rebuilt) == repr(opt)
    np.testing.assert_array_equal(rebuilt.transforms[0].hyperparameters["max_norm"], [1.0, 2.0])


def test_functions_are_recorded_by_name_only(tmp_path: Path) -> None:
    opt = po.sgd(lr=lambda t: 0.1 / (1.0 + t))
    x = np.ones(3)
    path = tmp_path / "state.npz"
    save_state(path, opt, opt.init(x))
    assert "callable" in checkpoint_info(path)["optimizer"]["spec"]["hyperparameters"]["lr"]
    with pytest.raises(CheckpointError, match=r"hp.lr was a function.*optimizer="):
        load_state(path)
    same, state = load_state(path, opt)
    assert same is opt and int(state.count) == 0
    with pytest.raises(CheckpointError, match="another optimizer"):
        load_state(path, po.sgd(lr=0.1))


def test_load_errors(tmp_path: Path) -> None:
    opt = po.bbi(lr=0.1)
    x = np.ones(4)
    path = tmp_path / "state.npz"
    save_state(path, opt, opt.init(x))
    with pytest.raises(CheckpointError, match=r"another optimizer.*bbi.*heavy_ball"):
        load_state(path, po.heavy_ball(lr=0.1))
    with pytest.raises(CheckpointError, match=r"delta_e: 0\.0 vs 0\.5"):
        load_state(path, po.bbi(lr=0.1, delta_e=0.5))
    with pytest.raises(CheckpointError, match="'run' one"):
        po.run(opt, quad, x_start(NP), 5, resume=path, batch_ndim=1)
    with pytest.raises(TypeError, match="state"):
        save_state(path, po.sgd(lr=0.1), opt.init(x))

    # A newer format.
    newer = tmp_path / "newer.npz"
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta.json"][()]))
    arrays["meta.json"] = np.asarray(json.dumps({**meta, "format_version": FORMAT_VERSION + 1}))
    np.savez(newer, **arrays)
    with pytest.raises(CheckpointError, match=rf"format {FORMAT_VERSION + 1} .*upgrade"):
        load_state(newer)

    # Damaged files: truncated, bytes flipped inside an array, not a zip, an npz without meta.
    data = path.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    with zipfile.ZipFile(path) as z:
        member = z.getinfo("state/momentum/0.npy")
    # The member's data follows its local header (30 bytes, the name, the extra field).
    name_len, extra_len = np.frombuffer(data, "<u2", 2, member.header_offset + 26)
    at = member.header_offset + 30 + int(name_len) + int(extra_len) + member.compress_size - 3
    flipped[at] ^= 0xFF  # a byte of the last value of the array
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    (tmp_path / "garbage.npz").write_bytes(b"this is not a checkpoint" * 10)
    np.savez(tmp_path / "plain.npz", a=np.ones(3))
    for name in ("truncated", "flipped", "garbage", "plain"):
        with pytest.raises(CheckpointError, match="not a readable physopt_ref checkpoint") as e:
            load_state(tmp_path / f"{name}.npz")
        if name == "flipped":
            assert "CRC" in str(e.value)
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "missing.npz")


def test_per_run_hyperparameter_arrays_go_to_the_backend(xp: Any, tmp_path: Path) -> None:
    lrs = xp.asarray([0.1, 0.2], dtype=xp.float64)
    opt = po.heavy_ball(lr=lrs, momentum=0.5)
    params = xp.ones((2, 3), dtype=xp.float64)
    state = opt.init(params, batch_ndim=1)
    path = tmp_path / "state.npz"
    save_state(path, opt, state)
    rebuilt, loaded = load_state(path, like=params)
    assert type(rebuilt.hyperparameters["lr"]) is type(lrs)
    a, _ = opt.step(params, params, state)
    b, _ = rebuilt.step(params, params, loaded)
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_optimizers_and_states_pickle() -> None:
    opt = COMPOSED["chained_bbi"].factory(**COMPOSED["chained_bbi"].test_hyperparameters)
    copy = pickle.loads(pickle.dumps(opt))
    assert repr(copy) == repr(opt) and copy.state_type is opt.state_type
    state = opt.init(start())
    again = pickle.loads(pickle.dumps(state))
    assert type(again) is type(state) and again._fields == state._fields
