"""The README's Python examples run as written (in order, in one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    # The README shows JAX, optax and PyTorch examples next to the NumPy ones (optional extras;
    # CI installs them): on a minimal install this test skips, naming the missing one.
    for module in ("jax", "optax", "torch"):
        pytest.importorskip(module)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2, "the README should show the NumPy and array-api-strict examples"
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "float32" in out  # the array-api-strict example printed a float32 Array
    x = namespace["x"]
    assert float(abs(x[0])) < 1e-6  # converged on |x|²
    # The run loop's ensemble reached the target in every run.
    assert bool(np.all(namespace["trace"].best_value <= namespace["problem"].f_min + 1e-8))
    # The plug-in examples: BBI through optax reached the minimum, the torch optimizer kept its
    # state. (The guard and checkpoint examples moved to docs/transforms.md and
    # docs/checkpoints.md; tests/test_docs.py runs them with the same assertions.)
    np.testing.assert_allclose(np.asarray(namespace["weights"]["w"]), 1.0, atol=1e-6)
    assert int(namespace["optimizer"].state[namespace["net"][0].weight]["count"]) == 20
    # The kit's example: the ensemble equals the single runs.
    assert namespace["result"].passed
    # The global search's example found LJ13's global minimum within its budget.
    assert namespace["found"].reached_target and namespace["found"].evaluations <= 30_000
    # The chunked run's example: the merged trace is the unsplit run's.
    assert "True True" in out
    np.testing.assert_array_equal(namespace["split"].best_value, namespace["unsplit"].best_value)
