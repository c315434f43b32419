"""Chunked runs on a real Dask ``LocalCluster`` of worker processes: exact merges, a worker killed
mid-run, a failing chunk, and the command line's ``--workers`` / ``--scheduler``.

Every cluster here is started by the tests (2 worker processes, one thread each) and the
workloads are small; the whole file takes about 30 s on 2 cores.
"""

from __future__ import annotations

import io
import json
import os
import signal
from typing import Any

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import dask  # noqa: E402
from physopt_ref.problems import Problem, ackley  # noqa: E402

import physopt_ref as po  # noqa: E402
from physopt_ref import ChunkedRunError, run, run_chunked  # noqa: E402
from physopt_ref.cli import main  # noqa: E402
from physopt_ref.cli.cluster import local_cluster, worker_environ  # noqa: E402

from .trace_checks import assert_same_trace  # noqa: E402

ACKLEY = ackley(dim=2, b=0.02)


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(2) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as c:
        yield c


def _bbi() -> po.Optimizer:
    # the compare settings of Ackley (BBI notebook): bounces from step 20, 4 fixed bounces
    return po.bbi(lr=0.009649484068918336, delta_e=2.0, t0=20, n_fixed_bounces=4, t1=100,
                  v0=1e-4, seed=5)


def _starts(n: int) -> np.ndarray:
    return np.random.default_rng(12).uniform(-4.0, 4.0, (n, 2))


def test_worker_processes(client):
    pids = client.run(os.getpid)
    assert len(pids) == 2 and os.getpid() not in pids.values()
    assert len(set(pids.values())) == 2
    environs = client.run(lambda: dict(os.environ))
    for environ in environs.values():  # Dask's thread limits, not its malloc setting
        assert environ["OMP_NUM_THREADS"] == "1" and "MALLOC_TRIM_THRESHOLD_" not in environ
    assert "MALLOC_TRIM_THRESHOLD_" not in worker_environ()


@pytest.mark.parametrize("name", ["bbi", "ecdsep", "gravity", "heavy_ball"])
def test_cluster_result_equals_unsplit_run(client, name):
    opt = {"bbi": _bbi(), "ecdsep": po.ecdsep(lr=0.05, eta=1.0, nu=0.5, seed=2),
           "gravity": po.gravity(lr=0.05, alpha=0.05, seed=3),
           "heavy_ball": po.heavy_ball(lr=0.1993, momentum=0.5634)}[name]
    x0 = _starts(40)
    kw = {"grad_noise": 0.02, "noise_seed": 9, "target": 0.5, "check_every": 5,
          "record_every": 10}
    merged = run_chunked(opt, ACKLEY, x0, 200, executor=client, chunk_size=6, **kw)
    assert_same_trace(merged, run(opt, ACKLEY, x0, 200, **kw))


def test_default_plan_uses_every_worker(client):
    seen = []
    opt = po.heavy_ball(lr=0.1993, momentum=0.5634)
    merged = run_chunked(opt, ACKLEY, _starts(10), 20, executor=client,
                         progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]  # all fit one chunk's budget: one chunk per worker
    assert_same_trace(merged, run(opt, ACKLEY, _starts(10), 20))


def test_a_killed_worker_loses_nothing():
    """SIGKILL a worker process that holds chunks while the others run: dask re-runs them, and
    the merged result equals the undisturbed run."""
    opt = _bbi()
    x0 = _starts(64)
    kw = {"grad_noise": 0.02, "noise_seed": 4, "record_every": 25}
    expected = run(opt, ACKLEY, x0, 150, **kw)
    killed: dict[str, Any] = {}
    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)

        def kill_a_busy_worker(done: int, total: int) -> None:
            if killed:
                return
            busy = [w for w, keys in client.processing().items() if keys and w in pids]
            worker = busy[0]
            os.kill(pids[worker], signal.SIGKILL)
            killed.update(pid=pids[worker], done=done, total=total,
                          held=len(client.processing()[worker]))

        merged = run_chunked(opt, ACKLEY, x0, 150, executor=client, chunk_size=8,
                             progress=kill_a_busy_worker, **kw)
        after = client.run(os.getpid)
    assert killed["done"] == 1 and killed["total"] == 8  # killed with 7 chunks to go
    assert killed["held"] >= 1  # it was running (or holding) a chunk
    assert killed["pid"] not in after.values()  # the process is gone (the nanny started another)
    assert_same_trace(merged, expected)


class Poisoned(Problem):
    """Ackley that raises for a start with x[0] == 3.5 (pickled to the workers by reference)."""

    name = "poisoned"
    dim = 2

    def _value_and_grad(self, xp: Any, x: Any) -> tuple[Any, Any]:
        if bool(xp.any(x[..., 0] == 3.5)):
            raise FloatingPointError("poisoned start")
        return ACKLEY.value_and_grad(x)


def test_a_failing_chunk_on_the_cluster(client):
    x0 = _starts(12)
    x0[10, 0] = 3.5  # chunk 3 (rows 9:12)
    opt = po.gravity(lr=0.05, alpha=0.05, seed=3)
    with pytest.raises(ChunkedRunError) as info:
        run_chunked(opt, Poisoned(), x0, 20, executor=client, chunk_size=3)
    err = info.value
    assert list(err.errors) == [3] and isinstance(err.errors[3], FloatingPointError)
    assert sorted(err.traces) == [0, 1, 2]
    expected = run(opt, ACKLEY, x0[:9], 20)
    np.testing.assert_array_equal(np.concatenate([err.traces[i].best_value for i in range(3)]),
                                  expected.best_value)


# ---------------------------------------------------------------------------------------------
# The command line


def _json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _without_times(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _without_times(v) for k, v in doc.items()
                if k not in ("wall_time_s", "time_s")}
    if isinstance(doc, list):
        return [_without_times(v) for v in doc]
    return doc


def test_cli_run_on_a_local_cluster(capsys):
    argv = ["run", "bbi", "ackley_b0.02", "--ensemble", "8", "--steps", "60", "--noise", "0.01",
            "--json"]
    local = _json(argv, capsys)
    on_cluster = _json([*argv, "--workers", "2"], capsys)
    assert _without_times(on_cluster) == _without_times(local)


def test_cli_run_and_compare_on_a_running_cluster(cluster, capsys):
    argv = ["run", "gravity", "ackley_b0.02", "--ensemble", "6", "--steps", "40", "--json"]
    assert _without_times(_json([*argv, "--scheduler", cluster.scheduler_address], capsys)) == \
        _without_times(_json(argv, capsys))
    argv = ["compare", "--problems", "quadratic", "--optimizers", "heavy_ball,bbi",
            "--ensemble", "4", "--evals", "41", "--json"]
    local = _json(argv, capsys)
    on_cluster = _json([*argv, "--scheduler", cluster.scheduler_address], capsys)
    assert [h["title"] for h in on_cluster["headlines"]] == [h["title"] for h in
                                                              local["headlines"]]
    assert _without_times(on_cluster) == _without_times(local)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_progress_bar_counts_chunks(cluster, monkeypatch, capsys):
    err = _Terminal()
    monkeypatch.setattr("sys.stderr", err)
    assert main(["run", "heavy_ball", "ackley_b0.02", "--ensemble", "6", "--steps", "20",
                 "--scheduler", cluster.scheduler_address]) == 0
    text = err.getvalue()
    assert "] 1/2" in text and "] 2/2" in text and "chunks of heavy_ball on ackley_b0.02" in text
    assert "runs" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "0"], "--workers must be an integer >= 1, got '0'"),
        (["--workers", "two"], "--workers must be an integer >= 1, got 'two'"),
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "not both"),
        (["--scheduler", "tcp://127.0.0.1"], "missing port number"),
        (["--scheduler", "bogus://host:1"], "unknown protocol 'bogus'"),
        (["--scheduler", "tcp://host:70000"], "port 70000 is not in 1..65535"),
    ],
)
@pytest.mark.parametrize("command", [["run", "sgd", "quadratic", "--ensemble", "4"],
                                     ["compare", "--problems", "quadratic"]])
def test_cli_bad_cluster_options_exit_2_with_one_line(command, extra, message, capsys):
    assert main([*command, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_single_start_cannot_be_split(capsys):
    assert main(["run", "sgd", "quadratic", "--workers", "2"]) == 2
    assert "--ensemble N with N >= 2" in capsys.readouterr().err


def test_cli_unreachable_scheduler_exit_2(capsys):
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main(["run", "sgd", "quadratic", "--ensemble", "4", "--scheduler",
                     "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the scheduler at tcp://127.0.0.1:9" in err and err.count("\n") == 1
