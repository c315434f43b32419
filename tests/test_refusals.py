"""Nothing silent (issue 24): every example of the issue is refused clearly, or now works.

Checkpoints (crafted files), ``run()`` (objective answers, flags, Ctrl-C), ``run_chunked``
(executors, ``completed=``, ``progress=``), the transforms, the command line, the SciPy adapter
and the size of large runs. docs/refusals.md lists what is refused and what stays silent by
design.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import physopt_ref as po
from physopt_ref.cli import main
from physopt_ref.runner.checkpoint import CheckpointError, load_state, save_state

# ---------------------------------------------------------------------------------------------
# Helpers


def quad(x: Any) -> tuple[Any, Any]:
    return 0.5 * np.sum(x * x, axis=-1) + 0.5, x


def read_raw(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A checkpoint's meta and arrays, read plainly (the test's own reader)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "meta.json"}
        meta = json.loads(str(data["meta.json"][()]))
    return meta, arrays


def write_raw(path: Path, meta: Any, arrays: dict[str, np.ndarray], *,
              layout: bool = True) -> Path:
    """Write a (crafted) checkpoint: ``meta`` as given, the layout of ``arrays`` recorded."""
    if layout and isinstance(meta, dict):
        meta = {**meta, "members": {
            k: {"shape": list(a.shape), "dtype": np.lib.format.dtype_to_descr(a.dtype)}
            for k, a in arrays.items()}}
    np.savez(path, **{"meta.json": np.asarray(meta if isinstance(meta, str)
                                              else json.dumps(meta))}, **arrays)
    return path


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, dict[str, Any], dict[str, np.ndarray]]:
    opt = po.heavy_ball(lr=po.exponential_decay(0.1, 0.5, 100), momentum=0.9)
    x = np.ones((2, 3))
    path = tmp_path / "state.npz"
    save_state(path, opt, opt.init(x, batch_ndim=1))
    meta, arrays = read_raw(path)
    return path, meta, arrays


# ---------------------------------------------------------------------------------------------
# Checkpoints


@pytest.mark.parametrize("key", ["optimizer", "state"])
def test_meta_without_optimizer_or_state(saved, tmp_path, key):
    _, meta, arrays = saved
    del meta[key]
    with pytest.raises(CheckpointError, match=f"lacks '{key}'"):
        load_state(write_raw(tmp_path / "c.npz", meta, arrays))


def test_unknown_schedule_or_missing_arguments(saved, tmp_path):
    _, meta, arrays = saved
    lr = meta["optimizer"]["spec"]["hyperparameters"]["lr"]
    meta["optimizer"]["spec"]["hyperparameters"]["lr"] = {**lr, "schedule": "warp_speed"}
    with pytest.raises(CheckpointError, match="unknown schedule 'warp_speed'"):
        load_state(write_raw(tmp_path / "a.npz", meta, arrays))
    del lr["arguments"]["rate"]
    meta["optimizer"]["spec"]["hyperparameters"]["lr"] = lr
    with pytest.raises(CheckpointError, match=r"takes the arguments \['init', 'rate', 'steps'\]"):
        load_state(write_raw(tmp_path / "b.npz", meta, arrays))


def test_deeply_nested_json_is_no_recursion_error(saved, tmp_path):
    _, meta, arrays = saved
    deep = json.dumps(meta)[:-1] + ', "junk": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(CheckpointError, match="nests deeper than"):
        load_state(write_raw(tmp_path / "c.npz", deep, arrays, layout=False))


def _replace_member_header(path: Path, member: str, shape: tuple[int, ...]) -> Path:
    """Rewrite ``member``'s .npy header to claim ``shape`` (the data left as it was)."""
    out = path.with_name("crafted.npz")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == member + ".npy":
                stream = io.BytesIO(data)
                np.lib.format.read_magic(stream)
                _, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
                body = data[stream.tell():]
                head = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    head, {"descr": np.lib.format.dtype_to_descr(dtype),
                           "fortran_order": fortran, "shape": shape})
                data = head.getvalue() + body
            dst.writestr(info.filename, data)
    return out


def test_npy_header_claiming_2_to_the_37_elements(saved, tmp_path):
    path, meta, arrays = saved
    crafted = _replace_member_header(path, "state/previous/0", (2**37,))
    with pytest.raises(CheckpointError, match=r"shape \(137438953472,\).*layout recorded"):
        load_state(crafted)
    # the layout in meta claims it too: the archive cannot hold that many bytes
    meta["members"]["state/previous/0"]["shape"] = [2**37]
    np.savez(tmp_path / "both.npz", **{"meta.json": np.asarray(json.dumps(meta))}, **arrays)
    crafted = _replace_member_header(tmp_path / "both.npz", "state/previous/0", (2**37,))
    with pytest.raises(CheckpointError, match="claims 1099511627776 bytes"):
        load_state(crafted)


def test_a_deflated_bomb_member_is_not_read(saved, tmp_path):
    path, _, _ = saved
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bomb, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        buf = io.BytesIO()
        np.save(buf, np.zeros(32 << 17))  # 32 MiB of zeros, deflated to ~32 KB
        dst.writestr("extra.npy", buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 200_000
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"members its layout does not name.*extra"):
        load_state(bomb)
    assert time.perf_counter() - t0 < 2.0  # refused, not inflated
    # a bomb in place of a layout member: its header must match the layout, so it is refused
    # after reading only the header
    crafted = tmp_path / "bomb2.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(crafted, "w") as dst:
        for info in src.infolist():
            data = buf.getvalue() if info.filename == "state/previous/0.npy" else src.read(info)
            dst.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED)
    with pytest.raises(CheckpointError, match="layout recorded in meta"):
        load_state(crafted)


def test_wrong_shape_momentum_is_refused_at_load(saved, tmp_path):
    _, meta, arrays = saved
    # the layout recorded with it (consistent), without the ensemble axis of the count
    arrays["state/previous/0"] = np.zeros(3)
    with pytest.raises(CheckpointError, match=r"do not all start with the count's ensemble"):
        load_state(write_raw(tmp_path / "a.npz", meta, arrays))
    # shaped for other parameters: refused against the parameters it is loaded for
    arrays["state/previous/0"] = np.zeros((2, 1))
    path = write_raw(tmp_path / "b.npz", meta, arrays)
    with pytest.raises(CheckpointError, match=r"does not fit.*previous: \[\(\(2, 1\)"):
        load_state(path, params=np.ones((2, 3)))
    assert load_state(path).state.previous[0].shape == (2, 1)  # self-consistent: documented


@pytest.mark.parametrize("dtype", [np.int8, np.float64, np.int64])
def test_count_must_be_int32(saved, tmp_path, dtype):
    _, meta, arrays = saved
    arrays["state/count"] = arrays["state/count"].astype(dtype)
    with pytest.raises(CheckpointError, match=r"count.*int32"):
        load_state(write_raw(tmp_path / "c.npz", meta, arrays))


def test_a_format_1_file_is_refused_with_the_reason(saved, tmp_path):
    _, meta, arrays = saved
    meta = {k: v for k, v in meta.items() if k != "members"}
    meta["format_version"] = 1
    with pytest.raises(CheckpointError, match="format 1, which records no layout"):
        load_state(write_raw(tmp_path / "c.npz", meta, arrays, layout=False))


def test_the_file_loads_exactly_when_nothing_is_wrong(saved):
    path, _, arrays = saved
    _, state = load_state(path)
    np.testing.assert_array_equal(state.previous[0], arrays["state/previous/0"])
    assert state.count.dtype == np.int32


def test_resume_refuses_another_problem_of_the_same_size(tmp_path):
    path = tmp_path / "run.npz"
    opt = po.heavy_ball(lr=0.01, momentum=0.9)
    x0 = np.full((3, 2), 1.5)
    po.run(opt, po.problems.ackley(2), x0, 5, checkpoint=path)
    with pytest.raises(CheckpointError, match=r"another problem \(name: 'ackley'.*'zakharov'"):
        po.run(opt, po.problems.zakharov(2), x0, 10, resume=path)
    with pytest.raises(CheckpointError, match=r"another problem \(name: 'ackley' .*b0.02"):
        po.run(opt, po.problems.ackley(2, b=0.02), x0, 10, resume=path)
    info = po.checkpoint_info(path)["run"]["problem"]
    assert info["name"] == "ackley" and info["dim"] == 2
    po.run(opt, po.problems.ackley(2), x0, 10, resume=path)  # the same problem: fine


# ---------------------------------------------------------------------------------------------
# run()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda x: ("1.0", x), "its value is str"),
        (lambda x: (np.sum(x) + 1j, x), "value has the dtype complex128, not a real one"),
        (lambda x: np.sum(x * x), "it returned float64"),  # a missing gradient
        (lambda x: (np.sum(x * x), None), "its gradient is NoneType"),
        (lambda x: (np.sum(x * x), [x, x]), "2 leaves of another structure"),
        (lambda x: (np.sum(x * x), x[:1]), r"gradient leaf 0 .*shape \(1,\)"),
        (lambda x: (np.sum(x * x), x, 0), "it returned a 3-tuple"),
        (lambda x: None, "it returned NoneType"),
    ],
)
def test_the_objectives_first_answer_is_validated(answer, message):
    with pytest.raises(TypeError, match="must return \\(value, grad\\)") as info:
        po.run(po.sgd(lr=0.1), answer, np.ones(3), 5)
    assert info.match(message)


def test_callback_and_flags_are_checked_before_the_start():
    calls = []

    def fun(x):
        calls.append(1)
        return quad(x)

    with pytest.raises(TypeError, match="callback must be a callable"):
        po.run(po.sgd(lr=0.1), fun, np.ones(3), 5, callback=3)
    with pytest.raises(TypeError, match="compile must be True or False"):
        po.run(po.sgd(lr=0.1), fun, np.ones(3), 5, compile="no")
    with pytest.raises(TypeError, match="record_x must be True or False"):
        po.run(po.sgd(lr=0.1), fun, np.ones(3), 5, record_x="yes")
    with pytest.raises(TypeError, match="target must be a real number"):
        po.run(po.sgd(lr=0.1), fun, np.ones(3), 5, target="0")
    assert calls == []


def test_ctrl_c_keeps_the_partial_trace_and_writes_the_checkpoint(tmp_path):
    path = tmp_path / "run.npz"
    opt = po.heavy_ball(lr=0.05, momentum=0.9)
    x0 = np.array([[1.0, -2.0], [0.5, 3.0]])

    def interrupt(info):
        if info.step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as err:
        po.run(opt, quad, x0, 20, batch_ndim=1, callback=interrupt, checkpoint=path,
               record_every=2)
    assert err.value.trace.steps == 6
    assert "checkpoint" in " ".join(err.value.__notes__)
    resumed = po.run(opt, quad, x0, 20, batch_ndim=1, resume=path, record_every=2)
    whole = po.run(opt, quad, x0, 20, batch_ndim=1, record_every=2)
    np.testing.assert_array_equal(resumed.losses, whole.losses)
    np.testing.assert_array_equal(resumed.recorded_steps, whole.recorded_steps)


# ---------------------------------------------------------------------------------------------
# run_chunked

X8 = np.random.default_rng(3).uniform(-2.0, 2.0, (8, 2))
ACKLEY = po.problems.ackley(2)


@pytest.mark.parametrize(
    ("executor", "missing"),
    [
        (lambda fn, tasks: None, [0, 1, 2, 3]),
        (lambda fn, tasks: [fn(t) for t in list(tasks)[:2]], [2, 3]),
        (lambda fn, tasks: ["junk", 42, None], [0, 1, 2, 3]),
        (lambda fn, tasks: [(t.index, "not a trace", None) for t in tasks], [0, 1, 2, 3]),
    ],
)
def test_executor_results_are_validated(executor, missing):
    with pytest.raises(po.ChunkedRunError) as info:
        po.run_chunked(po.sgd(lr=0.01), ACKLEY, X8, 5, chunk_size=2, executor=executor)
    err = info.value
    assert sorted(err.errors) == missing
    assert sorted(err.traces) == sorted(set(range(4)) - set(missing))
    for i in missing:
        assert f"chunk {i}" in str(err)


def _partial_run(**kwargs: Any) -> dict[int, po.Trace]:
    """The completed chunks 0 and 1 of a run whose chunks 2 and 3 failed."""
    def fail_late(fn, tasks):
        return [fn(t) if t.index < 2 else (t.index, None, RuntimeError("lost")) for t in tasks]

    args = {"optimizer": po.sgd(lr=0.01), "problem": ACKLEY, "x0": X8, "steps": 5, **kwargs}
    with pytest.raises(po.ChunkedRunError) as info:
        po.run_chunked(args["optimizer"], args["problem"], args["x0"], args["steps"],
                       chunk_size=2, executor=fail_late)
    return info.value.traces


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"optimizer": po.sgd(lr=0.02)}, "another optimizer"),
        ({"problem": po.problems.zakharov(2)}, "another problem"),
        ({"steps": 6}, "another steps"),
        ({"x0": X8 + 1.0}, "another start"),
    ],
)
def test_completed_is_checked_against_the_plan(change, what):
    done = _partial_run()
    args = {"optimizer": po.sgd(lr=0.01), "problem": ACKLEY, "x0": X8, "steps": 5, **change}
    with pytest.raises(ValueError, match=f"completed chunk 0 was run with {what}"):
        po.run_chunked(args["optimizer"], args["problem"], args["x0"], args["steps"],
                       chunk_size=2, completed=done)
    merged = po.run_chunked(po.sgd(lr=0.01), ACKLEY, X8, 5, chunk_size=2, completed=done)
    np.testing.assert_array_equal(merged.losses, po.run(po.sgd(lr=0.01), ACKLEY, X8, 5).losses)


def test_completed_list_and_progress_int_are_refused_up_front():
    with pytest.raises(TypeError, match="completed must map chunk indices"):
        po.run_chunked(po.sgd(lr=0.01), ACKLEY, X8, 5, chunk_size=2, completed=[1, 2])
    ran = []

    def executor(fn, tasks):
        ran.append(1)
        return map(fn, tasks)

    with pytest.raises(TypeError, match="progress must be a callable"):
        po.run_chunked(po.sgd(lr=0.01), ACKLEY, X8, 5, chunk_size=2, progress=3,
                       executor=executor)
    assert ran == []


# ---------------------------------------------------------------------------------------------
# Transforms


@pytest.mark.parametrize("mask", [None, "w", 3, {"w": 1}])
def test_masked_refuses_a_mask_that_is_not_a_tree_of_bools(mask):
    with pytest.raises(TypeError, match="mask must be a tree of Python bools"):
        po.masked(po.clip_by_global_norm(1.0), mask)


def test_chain_refuses_a_last_part_that_is_no_optimizer():
    with pytest.raises(TypeError, match="one Optimizer as its last argument; the last is "
                                        "NoneType"):
        po.chain(po.non_finite_guard(), None)


@pytest.mark.parametrize("w", [True, False])
def test_a_guard_under_a_mask_works(w):
    opt = po.chain(po.masked(po.non_finite_guard(), {"w": w, "b": False}), po.sgd(lr=0.1))
    params = {"w": np.ones(3), "b": np.ones(2)}
    state = opt.init(params)  # the guard's field exists also when the mask selects nothing
    assert int(state.skipped) == 0
    bad = {"w": np.array([np.nan, 1.0, 1.0]), "b": np.ones(2)}
    if w:  # the guard sees the NaN of the leaf it guards: the step is skipped
        new, state = opt.step(params, bad, state, loss=np.float64(1.0))
        assert int(state.skipped) == 1 and int(state.count) == 0
        np.testing.assert_array_equal(new["b"], params["b"])
    else:  # an unguarded NaN is refused by the debug checks; a finite step is taken
        with pytest.raises(FloatingPointError, match="gradient leaf"):
            opt.step(params, bad, state, loss=np.float64(1.0))
        new, state = opt.step(params, params, state, loss=np.float64(1.0))
        assert int(state.skipped) == 0
        np.testing.assert_array_equal(new["b"], 0.9 * params["b"])
    new, state = opt.step(params, {"w": np.ones(3), "b": np.ones(2)}, state,
                          loss=np.float64(1.0))
    np.testing.assert_array_equal(new["w"], 0.9 * params["w"])


# ---------------------------------------------------------------------------------------------
# The command line: one line on stderr, exit status 2, before any run


def _usage_error(argv: list[str], capsys, match: str) -> None:
    t0 = time.perf_counter()
    assert main(argv) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("physopt-ref: error: ")
    assert match in err, err
    return time.perf_counter() - t0


RUN = ["run", "heavy_ball", "quadratic", "--no-progress"]


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--hp", "lr=0.1", "--hp", "lr=0.2"], "--hp lr is given twice"),
        (["--problem-arg", "dim=3", "--problem-arg", "dim=4"], "--problem-arg dim is given twice"),
        (["--problem-arg", "dim=100000000"], "quadratic would need about"),
        (["--plot", "/proc/sys/x.png"], "cannot write into the folder"),
        (["--ensemble", "4", "--scheduler", "inproc://x"], "protocol 'inproc' cannot reach"),
        (["--ensemble", "4", "--scheduler", "tcp://host"], "--scheduler 'tcp://host'"),
        (["--connect-timeout", "0"], "expected a finite number > 0"),
    ],
)
def test_run_usage_errors(extra, match, capsys):
    if "--scheduler" in extra:
        pytest.importorskip("distributed")
    _usage_error([*RUN, *extra], capsys, match)


def test_problem_size_with_the_ensemble(capsys):
    _usage_error(["run", "sgd", "ackley", "--problem-arg", "dim=100000000", "--ensemble", "100"],
                 capsys, "100 runs of dimension 100000000")


def test_tune_names_given_twice(capsys):
    tune = ["tune", "heavy_ball", "quadratic", "--no-progress"]
    _usage_error([*tune, "--grid", "lr=0.1,0.2", "--grid", "lr=0.3"], capsys,
                 "--grid lr is given twice")
    _usage_error([*tune, "--grid", "lr=0.1,0.2", "--hp", "lr=0.3"], capsys,
                 "lr given both in --grid and in --hp")


def test_a_dead_scheduler_fails_within_the_connect_timeout(capsys):
    pytest.importorskip("distributed")
    from physopt_ref.cli.parser import build_parser

    args = build_parser().parse_args([*RUN, "--ensemble", "4"])
    assert args.connect_timeout == 5.0
    elapsed = _usage_error([*RUN, "--ensemble", "4", "--scheduler", "tcp://127.0.0.1:9",
                            "--connect-timeout", "0.5"], capsys, "cannot reach the scheduler")
    assert elapsed < 20.0  # the timeout and dask's start; 31 s before


def test_jax_float64_runs_in_float64_for_the_command_only():
    """In a fresh process (the tests turn x64 on globally): the run is float64, the JSON says
    so, and JAX's global flag is off again after the command."""
    pytest.importorskip("jax")
    code = (
        "import json, io, contextlib, jax\n"
        "from physopt_ref.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    rc = main(['run', 'heavy_ball', 'quadratic', '--no-progress', '--backend', 'jax',"
        " '--dtype', 'float64', '--steps', '3', '--json'])\n"
        "doc = json.loads(out.getvalue())\n"
        "print(rc, doc['dtype'], type(doc['best_value']).__name__,"
        " bool(jax.config.jax_enable_x64))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.stdout.split() == ["0", "float64", "float", "False"], done.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# The SciPy adapter


def test_scipy_returns_the_best_point_and_names_the_criterion():
    minimize = pytest.importorskip("scipy.optimize").minimize

    def well(x):  # a well of depth 1; far away the gradient vanishes (an evaporated cluster)
        e = np.exp(-np.sum(x * x))
        return -e, 2.0 * x * e

    res = minimize(well, np.array([0.3]), jac=True,
                   method=po.scipy_method("sgd", lr=40.0), options={"gtol": 1e-6})
    assert res.success and "max|grad f|" in res.message and "gtol" in res.message
    assert res.fun < -0.5 and res.fun == pytest.approx(well(res.x)[0])
    assert "best point seen" in res.message


def test_scipy_counts_the_real_calls_with_jac_true():
    minimize = pytest.importorskip("scipy.optimize").minimize
    calls = []

    def both(x):
        calls.append(1)
        return 0.5 * float(x @ x) + 0.5, x.copy()

    res = minimize(both, np.array([1.0, -0.5]), jac=True,
                   method=po.scipy_method("bbi", lr=0.05, t0=3, t1=1, n_fixed_bounces=1),
                   options={"maxiter": 200})
    assert res.nfev == len(calls) and res.njev == len(calls)


# ---------------------------------------------------------------------------------------------
# Large runs stay bounded


def test_the_default_record_interval_bounds_the_records():
    from physopt_ref.cli.limits import RECORD_BUDGET_VALUES, default_record_every

    assert default_record_every(1000, 1) == 1
    for steps, runs in ((1000, 20_000), (100_000, 20_000), (10**6, 7)):
        every = default_record_every(steps, runs)
        assert (steps // every + 2) * runs <= RECORD_BUDGET_VALUES + 2 * runs


def test_large_ensembles_are_summarised_and_json_is_streamed(capsys):
    argv = ["run", "sgd", "ackley", "--hp", "lr=0.01", "--ensemble", "50", "--steps", "30",
            "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "run 49:" not in out and "50 runs: the summary above" in out
    assert out.count("  run ") == 5  # the best runs
    assert main([*argv, "--per-run"]) == 0
    assert capsys.readouterr().out.count("  run ") == 50
    assert main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["losses"]) == 31 and len(doc["trace"]["history"]["loss"]) == 31 * 50


def test_the_streamed_json_equals_plain_json():
    from physopt_ref.cli.output import jsonable
    from physopt_ref.cli.run_report import write_json_stream

    doc = {"a": np.arange(20_000, dtype=float).reshape(2, -1), "b": np.array([np.nan, 1.0]),
           "c": {"d": np.arange(9000), "e": [1, "x", None]}, "f": {}}
    out = io.StringIO()
    write_json_stream(doc, out)
    assert json.loads(out.getvalue()) == jsonable(doc)


def test_a_state_whose_optimizer_needs_the_parameters_tree(tmp_path):
    """A dict mask: without params= only the count and ensemble axes are checked (documented);
    with them, the state is checked in full."""
    opt = po.chain(po.masked(po.coupled_weight_decay(0.01), {"w": True, "b": False}),
                   po.heavy_ball(lr=0.1))
    params = {"w": np.ones((2, 3)), "b": np.ones((2, 1))}
    path = tmp_path / "c.npz"
    save_state(path, opt, opt.init(params, batch_ndim=1))
    assert load_state(path).state.previous[1].shape == (2, 3)
    assert load_state(path, params=params).state.count.shape == (2,)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_state(path, params={"w": np.ones((2, 4)), "b": np.ones((2, 1))})


def test_fuzz_findings_a_count_with_leaves_and_an_unknown_zip_version(saved, tmp_path):
    """Found by the checkpoint fuzz soak: a layout that makes the count a tuple, and a zip
    entry claiming a version zipfile does not implement."""
    path, meta, arrays = saved
    meta["state"]["fields"][0]["leaves"] = 0
    with pytest.raises(CheckpointError, match="count is not an array"):
        load_state(write_raw(tmp_path / "a.npz", meta, arrays))
    data = bytearray(path.read_bytes())
    # the central directory record of the member: "version needed to extract" at offset 6
    at = data.index(b"PK\x01\x02")
    while data[at + 46:at + 46 + len(b"state/count.npy")] != b"state/count.npy":
        at = data.index(b"PK\x01\x02", at + 4)
    data[at + 6] = 109  # 10.9
    (tmp_path / "b.npz").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="zip file version"):
        load_state(tmp_path / "b.npz")


def test_verify_refuses_a_hyperparameter_given_twice(capsys):
    """``verify --hp lr=0.1 --hp lr=0.2`` is a usage error (the last one no longer wins)."""
    from physopt_ref.cli import main

    status = main(["verify", "physopt_ref:heavy_ball", "--hp", "lr=0.1", "--hp", "lr=0.2"])
    err = capsys.readouterr().err
    assert status == 2
    assert "lr" in err and "twice" in err and err.count("\n") == 1, err
