"""The COCO/BBOB harness (issue 27): a small suite through the CLI and the API; skips without
cocoex."""

from __future__ import annotations

import json

import numpy as np
import pytest

import physopt_ref as po
from physopt_ref.cli import main

cocoex = pytest.importorskip("cocoex")


def test_cli_runs_a_small_suite_and_writes_cocopp_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status = main(["bbob", "--optimizers", "heavy_ball", "--dims", "2", "--instances", "1",
                   "--functions", "1,2", "--budget", "300", "--peers", "lbfgsb",
                   "--output", "ci"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "runtime ECDF" in out and "heavy_ball" in out and "lbfgsb" in out
    for method in ("heavy_ball", "lbfgsb"):
        folder = tmp_path / "exdata" / "ci" / method
        assert folder.is_dir(), out
        assert any(p.suffix == ".info" for p in folder.rglob("*")), list(folder.rglob("*"))


def test_budget_is_respected_and_targets_are_consistent():
    from physopt_ref.bbob import TARGET_EXPONENTS, bbob

    result = bbob({"hb": po.heavy_ball(lr=0.01, momentum=0.9)}, dimensions=(2,),
                  instances=(1,), functions=(1, 6), budget_per_dim=250, peers=("lbfgsb",))
    assert result.methods == ("hb", "lbfgsb")
    assert result.reached.shape == (2, 2, len(TARGET_EXPONENTS))
    assert np.all(result.evaluations <= 250 * 2)
    # a target is reached exactly when the best delta is within it; easier targets first
    for m in range(2):
        for p in range(2):
            np.testing.assert_array_equal(result.reached[m, p],
                                          result.best_delta[m, p] <= 10.0 ** TARGET_EXPONENTS)
    assert 0.0 <= result.ecdf()[0] <= 1.0
    # L-BFGS-B solves the sphere (f1) to every target with 500 evaluations in 2-D
    assert result.reached[1, 0].all()
    table = result.table()
    assert "separable" in table and "pooled" in table


def test_json_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status = main(["bbob", "--optimizers", "sgd", "--dims", "2", "--instances", "1",
                   "--functions", "1", "--budget", "100", "--peers", "", "--json"])
    assert status == 0
    data = json.loads(capsys.readouterr().out)
    assert data["methods"] == ["sgd"] and 0.0 <= data["ecdf"]["sgd"] <= 1.0


@pytest.mark.parametrize(("argv", "match"), [
    (["--dims", "7"], "dimensions"),
    (["--functions", "25"], "functions"),
    (["--peers", "nelder"], "unknown peers"),
    (["--optimizers", "nope"], "unknown optimizer"),
    (["--hp", "lr=0.1"], "OPTIMIZER.NAME"),
])
def test_bad_invocations_are_one_line_and_status_2(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = main(["bbob", "--instances", "1", "--functions", "1", "--budget", "50", *argv])
    err = capsys.readouterr().err
    assert status == 2
    assert match in err and err.count("\n") == 1, err
