"""The Dyna paper's Table 1 in small (logistic regression on scikit-learn's digits).

Skipped cleanly when scikit-learn is absent. The fast test trains 2 epochs; the slow one the
paper's 50 (measured: Adam lr 1e-3 reaches about 0.95 test accuracy on the digits).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from physopt_ref.cli import main

pytest.importorskip("sklearn")

from physopt_ref.cli.digits import N_BATCHES, _dyna_settings, load_digits_split, run_digits


def test_split_shapes_and_scaling():
    x_tr, y_tr, x_va, _, x_te, _ = load_digits_split(0)
    assert x_tr.shape[1] == 64 and len(x_va) == 300 and len(x_te) == 300
    assert len(x_tr) + 600 == 1797
    assert x_tr.min() >= 0.0 and x_tr.max() <= 1.0
    assert set(np.unique(y_tr)) == set(range(10))


def test_dyna_rows_follow_sec_5():
    """ζ = 1, ζ = 0.5, and the library's Eq. 22 ramp over T = 10 epochs of 96 minibatches."""
    rows = _dyna_settings()
    assert [r[0] for r in rows] == ["Dyna"] * 3
    assert [r[2]["zeta"] for r in rows[:2]] == [1.0, 0.5]
    for _, _, hp in rows:
        assert hp["gamma"] == 1.0 and hp["fan_in"] == 64 and hp["beta"] == 0.9
    ramp = rows[2][2]["zeta"]
    T = 10 * N_BATCHES
    assert float(ramp(0)) == pytest.approx(0.5, abs=1e-5)  # Algorithm 1's t = count + 1 = 1
    assert float(ramp(T - 1)) == pytest.approx(1.0) and float(ramp(5000)) == pytest.approx(1.0)
    t = T // 2  # (t/T)² = 1/4: 1/(2ζ) = 1 − 0.125
    assert 1.0 / (2.0 * float(ramp(t - 1))) == pytest.approx(0.875)


def test_fast_table(capsys):
    rows = run_digits(epochs=2)
    labels = [r.label for r in rows]
    assert labels == ["Dyna", "Dyna", "Dyna", "Adam"]
    for r in rows:
        assert 0.5 < r.train_accuracy <= 1.0  # two epochs already learn the digits
        assert 0.0 <= r.test_accuracy <= 1.0


def test_cli_digits_json(capsys):
    assert main(["digits", "--epochs", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["epochs"] == 1 and len(doc["paper_table_1"]) == 4
    assert doc["rows"][-1]["label"] == "Adam"


@pytest.mark.slow
def test_paper_sized_table():
    rows = run_digits(epochs=50)
    for r in rows:
        assert r.test_accuracy > 0.9
