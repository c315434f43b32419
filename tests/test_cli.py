"""The ``physopt-ref`` command line, called in-process through ``main(argv)``.

One subprocess smoke test checks ``python -m physopt_ref --help``. The plot test writes a PNG
(looked at by hand when this test was written: convergence curves and, for the 2-D problem,
trajectories over the contour plot).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from physopt_ref import registered_names
from physopt_ref.__main__ import main
from physopt_ref._cli_output import Progress, format_table

QUICK = ["--steps", "40", "--ensemble", "2", "--no-headlines"]


def test_help_subprocess():
    out = subprocess.run([sys.executable, "-m", "physopt_ref", "--help"], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0
    assert "compare" in out.stdout and "run" in out.stdout and "digits" in out.stdout


def test_compare_table(capsys):
    assert main(["compare", "--problems", "quadratic", "--optimizers", "sgd,heavy_ball",
                 *QUICK]) == 0
    out, err = capsys.readouterr()
    assert "best f" in out and "success" in out and "steps to target" in out
    lines = [ln for ln in out.splitlines() if ln.startswith("quadratic")]
    assert [ln.split()[1] for ln in lines] == ["sgd", "heavy_ball"]
    assert err == ""  # no progress bar when stderr is not a terminal


def test_compare_json_covers_every_registered_optimizer(capsys):
    assert main(["compare", "--problems", "quadratic", "--json", *QUICK]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {r["optimizer"] for r in doc["rows"]} == set(registered_names())
    row = doc["rows"][0]
    for key in ("best", "success_rate", "median_steps_to_target", "time_s", "ensemble"):
        assert key in row
    assert doc["settings"]["ensemble"] == 2


def test_compare_headlines_run(capsys):
    """The headline block appears (two-basin ratio / cooling under noise, when installed)."""
    names = [n for n in ("heavy_ball", "bbi", "coolmomentum") if n in registered_names()]
    assert main(["compare", "--problems", "quadratic,two_basin", "--optimizers",
                 ",".join(names), "--steps", "30", "--ensemble", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    titles = " ".join(h["title"] for h in doc["headlines"])
    if "coolmomentum" in names:
        assert "CoolMomentum" in titles
    if "bbi" in names:
        assert "Two-basin" in titles


def test_compare_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "compare.png"
    assert main(["compare", "--problems", "quadratic,two_basin", "--optimizers",
                 "sgd,heavy_ball", *QUICK, "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plot written" in capsys.readouterr().out


def test_run_with_hyperparameters(capsys):
    assert main(["run", "heavy_ball", "quadratic", "--hp", "lr=0.02", "--hp", "momentum=0.5",
                 "--steps", "30", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["hyperparameters"] == {"lr": 0.02, "momentum": 0.5}
    assert doc["steps"] == 30 and len(doc["losses"]) == 31


def test_run_text_ensemble_backend_seed(capsys):
    assert main(["run", "adam", "two_basin", "--ensemble", "3", "--steps", "20",
                 "--backend", "array_api_strict", "--seed", "4", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "run 2:" in out and "array_api_strict" in out


def test_run_plot_2d_trajectories(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "run.png"
    assert main(["run", "heavy_ball", "two_basin", "--ensemble", "4", "--steps", "200",
                 "--plot", str(path)]) == 0
    assert path.stat().st_size > 1000


def test_list(capsys):
    assert main(["list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["optimizers"]) == set(registered_names())
    assert "quadratic" in doc["problems"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "--ensemble", "0"], "expected an integer >= 1"),
        (["compare", "--no-such-option"], "unrecognized arguments"),
        (["run", "no_such_optimizer", "quadratic"], "unknown optimizer"),
        (["run", "sgd", "no_such_problem"], "unknown problem"),
        (["run", "sgd", "quadratic", "--hp", "lr=-1"], "lr"),
        (["run", "sgd", "quadratic", "--hp", "nonsense=1"], "no hyperparameter nonsense"),
        (["run", "sgd", "quadratic", "--hp", "lr"], "NAME=VALUE"),
        (["run", "sgd", "quadratic", "--problem-arg", "dim=-3"], "problem-arg"),
        (["compare", "--problems", "nope"], "unknown problem"),
        (["compare", "--optimizers", "nope"], "unknown optimizer"),
        (["compare", "--backend", "fortran"], "invalid choice"),
        ([], "required"),
    ],
)
def test_usage_errors_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_backend_not_installed_exit_2(monkeypatch, capsys):
    import physopt_ref.backends as backends

    def missing(name):
        raise backends.BackendNotInstalledError(f"backend {name!r} is not available here; "
                                                "install it with: pip install x")

    monkeypatch.setattr(backends, "get_namespace", missing)
    assert main(["compare", "--backend", "jax", *QUICK]) == 2
    assert "not available" in capsys.readouterr().err


def test_plot_without_matplotlib_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["run", "sgd", "quadratic", "--steps", "5", "--plot",
                 str(tmp_path / "x.png")]) == 2
    assert "pip install 'physopt_ref[plot]'" in capsys.readouterr().err


def test_progress_bar_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    quiet = io.StringIO()
    p = Progress(quiet)
    p(1, 2, "x")
    p.close()
    assert quiet.getvalue() == ""
    loud = Tty()
    p = Progress(loud)
    p(1, 2, "sgd on quadratic")
    assert "1/2" in loud.getvalue() and "sgd on quadratic" in loud.getvalue()
    p.close()


def test_format_table_aligns_columns():
    text = format_table(["a", "value"], [["x", 1.5], ["long", 1e-9]])
    lines = text.splitlines()
    assert len({len(ln) for ln in lines}) == 1
    assert "1.000e-09" in text
