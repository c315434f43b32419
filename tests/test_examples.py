"""The verify examples run (as CI runs them) and show the planted bugs caught and the correct
variants passing; ``physopt-ref verify`` passes torch's and optax's own optimizers.

Each example runs in a subprocess with ``--quick`` (2 inputs per property, no compiled steps)
and a timeout; the torch and optax ones skip where those are not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from physopt_ref.cli import main

pytest.importorskip("hypothesis")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _run_example(name: str) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def test_single_array_example_catches_a_host_number_in_the_state() -> None:
    out = _run_example("verify_single_array.py")
    assert "bug caught by: state of arrays; correct version passes: True" in out
    assert "state.t is an int, not an array" in out
    assert "accepted array; list refused" in out  # what was probed
    assert "heavy_ball(lr=0.1, momentum=0.9): 7 passed, 0 failed, 1 skipped" in out


@pytest.mark.parametrize(
    ("example", "needs", "expected"),
    [
        ("verify_torch_optimizer.py", "torch", [
            "HeavyBall: failed nothing, expected nothing",
            "HeavyBallMomentumTwice: failed ['stability bound']",
            "Adam: failed nothing, expected nothing",
            "AdamLateCorrection: failed ['bias correction']",
            "bugs caught and correct versions pass: True"]),
        ("verify_optax_transformation.py", "optax", [
            "ema_momentum: failed nothing, expected nothing",
            "ema_momentum_from_zero: failed ['bias correction']",
            "adam: failed nothing, expected nothing"]),
    ],
    ids=["torch: momentum twice, late bias correction",
         "optax: bias correction counted from zero"],
)
def test_framework_examples_catch_their_planted_bugs(example: str, needs: str,
                                                     expected: list[str]) -> None:
    pytest.importorskip(needs)
    out = _run_example(example)
    for line in expected:
        assert line in out, out


def _rows(out: str) -> dict[str, list[str]]:
    return {line.split("  ")[0].strip(): line.split() for line in out.splitlines()
            if "  " in line}


@pytest.mark.parametrize(
    ("argv", "physics"),
    [
        (["torch.optim:Adam", "--hp", "lr=0.01"], "bias correction"),
        (["torch.optim:SGD", "--hp", "lr=0.1", "--hp", "momentum=0.9"], "stability bound"),
        (["torch.optim:AdamW", "--hp", "lr=0.01"], "bias correction"),  # weight decay set to 0
    ],
)
def test_cli_verify_passes_torch_optimizers(argv: list[str], physics: str, capsys: Any) -> None:
    pytest.importorskip("torch")
    assert main(["verify", *argv, "--examples", "2"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    for prop in ("determinism", "dtype kept", "device kept", "state_dict round trip", physics):
        assert prop in rows and "pass" in rows[prop], out
    assert "no host synchronisation (meta device)" in out
    assert "does not apply: torch steps update in place" in out  # purity, with the reason


def test_cli_verify_passes_optax_adam(capsys: Any) -> None:
    pytest.importorskip("optax")
    assert main(["verify", "optax:adam", "--hp", "learning_rate=0.01", "--examples", "2",
                 "--no-compile"]) == 0
    out = capsys.readouterr().out
    assert "bias correction" in _rows(out) and "physics suggested: hyperparameters b1/b2" in out


def test_cli_verify_catches_the_planted_torch_bug(capsys: Any) -> None:
    pytest.importorskip("torch")
    target = f"{EXAMPLES / 'verify_torch_optimizer.py'}:HeavyBallMomentumTwice"
    assert main(["verify", target, "--hp", "lr=0.1", "--hp", "momentum=0.9",
                 "--examples", "1"]) == 1
    out = capsys.readouterr().out
    assert _rows(out)["stability bound"][2] == "FAIL"
    assert "property 'stability bound' FAILED" in out
