"""The Dyna paper's Table 1 in small (logistic regression on scikit-learn's digits).

Skipped cleanly when scikit-learn is absent. The fast test trains 2 epochs; the slow one the
paper's 50 (measured: Adam lr 1e-3 reaches about 0.95 test accuracy on the digits).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from physopt_ref import REGISTRY
from physopt_ref.__main__ import main

pytest.importorskip("sklearn")

from physopt_ref._digits import dyna_ramp, load_digits_split, run_digits


def test_split_shapes_and_scaling():
    x_tr, y_tr, x_va, _, x_te, _ = load_digits_split(0)
    assert x_tr.shape[1] == 64 and len(x_va) == 300 and len(x_te) == 300
    assert len(x_tr) + 600 == 1797
    assert x_tr.min() >= 0.0 and x_tr.max() <= 1.0
    assert set(np.unique(y_tr)) == set(range(10))


def test_ramp_matches_eq_22():
    z = dyna_ramp(n_batches=96, epochs=10)
    assert z(0) == pytest.approx(0.5)
    assert z(960) == pytest.approx(1.0) and z(5000) == pytest.approx(1.0)
    t = 480  # (t/T)² = 1/4: 1/(2ζ) = 1 − 0.125
    assert 1.0 / (2.0 * z(t)) == pytest.approx(0.875)


def test_fast_table(capsys):
    rows = run_digits(epochs=2)
    labels = [r.label for r in rows]
    assert labels[-1] == "Adam"
    if "dyna" in REGISTRY:
        assert labels.count("Dyna") == 3
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
