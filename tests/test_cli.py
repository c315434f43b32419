"""The ``physopt-ref`` command line (:mod:`physopt_ref.cli`), called in-process through
``main(argv)``.

One subprocess smoke test checks ``python -m physopt_ref --help``. The plot tests check that the
files are written and what the figures contain (panels, curves, colour bar, target line), not
their pixels; the figures were looked at by hand when these tests were written.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from physopt_ref.backends import get_namespace

from physopt_ref import registered_names
from physopt_ref.cli import main
from physopt_ref.cli.compare import compare, ecdf_by_optimizer
from physopt_ref.cli.output import Progress, format_interval, format_table

QUICK = ["--evals", "41", "--ensemble", "2", "--no-headlines"]
INTERVAL = re.compile(r"\b(\d+)/(\d+) \((\d+)-(\d+)%\)")


def test_help_subprocess():
    out = subprocess.run([sys.executable, "-m", "physopt_ref", "--help"], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0
    for command in ("compare", "run", "tune", "digits", "list"):
        assert command in out.stdout


def test_closed_pipe_is_not_an_error():
    """``physopt-ref run ... --json | head -1``: the reader leaves early; exit 0, no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "physopt_ref", "run", "sgd", "quadratic",
                             "--steps", "20000", "--json"],  # far more than a pipe holds
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err


def test_compare_table_with_intervals_and_budgets(capsys):
    assert main(["compare", "--problems", "quadratic", "--optimizers", "sgd,heavy_ball,dyna",
                 *QUICK]) == 0
    out, err = capsys.readouterr()
    for header in ("best f", "success (95% CI)", "evals to target", "tuned (tries)"):
        assert header in out
    lines = [ln for ln in out.splitlines() if ln.startswith("quadratic")]
    assert [ln.split()[1] for ln in lines] == ["sgd", "heavy_ball", "dyna"]
    for ln in lines:
        k, n, low, high = map(int, INTERVAL.search(ln).groups())
        assert n == 2 and 0 <= low <= 100 * k / n <= high <= 100
        assert " yes (" in ln  # every row here is tuned, with its number of tries
    assert "Tuning budget" in out and "dyna 42 in 1 row" in out
    assert err == ""  # no progress bar when stderr is not a terminal


def test_compare_json_rows(capsys):
    assert main(["compare", "--problems", "quadratic", "--json", *QUICK]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {r["optimizer"] for r in doc["rows"]} == set(registered_names())
    for row in doc["rows"]:
        for key in ("best", "successes", "success_rate", "success_ci", "median_evals_to_target",
                    "time_s", "ensemble", "evals", "tuned", "tried", "no_progress"):
            assert key in row
        assert row["evals"] == 41 and row["ensemble"] == 2
        low, high = row["success_ci"]
        assert low <= row["success_rate"] <= high
    assert doc["settings"]["ensemble"] == 2 and doc["settings"]["evals"] == 41
    untuned = {r["optimizer"] for r in doc["rows"] if not r["tuned"]}
    assert untuned == {"dynamic_relaxation"}
    # the numerical fingerprint: NumPy's SIMD dispatch and the BLAS kernels (issue 23)
    fp = doc["fingerprint"]
    assert fp["numpy"] == np.__version__
    assert fp["simd"]["dispatch"]["exp/float64"] and fp["simd"]["dispatch"]["sin/float32"]
    assert fp["blas"] and all(b["internal_api"] and b["version"] for b in fp["blas"])


def test_compare_report_names_the_fingerprint(capsys):
    assert main(["compare", "--problems", "quadratic", "--optimizers", "sgd", *QUICK]) == 0
    out = capsys.readouterr().out
    head = out.splitlines()[1:4]
    assert head[0].startswith("numerical fingerprint: NumPy ") and "dispatch" in head[0]
    assert head[1].startswith("BLAS: ") and "kernel" in head[1]
    assert "docs/reproducibility.md" in out


def test_ratio_verdict_says_when_it_cannot_tell():
    """The quick two-basin headline of the README (29/14) cannot tell the paper's 1.7248 from
    the prediction 1.9259; 2000 counted runs near 2 can (issue 23)."""
    from physopt_ref.cli.headlines import ratio_verdict

    text, conclusive, needed = ratio_verdict(29, 14, 1266 / 734, 1.9259, ("paper's", "prediction"))
    assert not conclusive and text.startswith("inconclusive at this size")
    assert 3000 < needed < 10000 and str(needed) in text
    text, conclusive, _ = ratio_verdict(2000, 1000, 1266 / 734, 1.9259, ("paper's", "prediction"))
    assert conclusive and text == "agrees with the prediction 1.93, not the paper's 1.72"
    text, conclusive, _ = ratio_verdict(1266, 734, 1266 / 734, 1.9259, ("paper's", "prediction"))
    assert conclusive and text.startswith("agrees with the paper's")


def test_median_interval_is_distribution_free():
    from math import comb

    from physopt_ref.cli.headlines import median_interval

    x = np.arange(16.0)[::-1]
    lo, hi = median_interval(x)
    assert (lo, hi) == (3.0, 12.0)  # j = 4: coverage 1 - 2 P(B(16, 1/2) < 4) = 0.979
    assert 1 - 2 * sum(comb(16, i) for i in range(4)) / 2**16 >= 0.95
    assert 1 - 2 * sum(comb(16, i) for i in range(5)) / 2**16 < 0.95
    assert median_interval(np.arange(8.0)) == (0.0, 7.0)


def test_compare_counts_evaluations():
    """A run's budget is its evaluations: the start plus one per step."""
    xp = get_namespace("numpy")
    result = compare(xp=xp, problems=["quadratic"], optimizers=["sgd"], evals=25, ensemble=2)
    trace = result.traces[("quadratic", "sgd")]
    assert trace.steps == 24 and trace.evaluations == 25
    assert np.all(trace.run_evaluations == 25)


def test_compare_headlines_have_intervals(capsys):
    assert main(["compare", "--problems", "quadratic,two_basin", "--optimizers",
                 "heavy_ball,bbi,coolmomentum", "--evals", "31", "--ensemble", "2",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_title = {h["title"].split(" ")[0]: h for h in doc["headlines"]}
    assert set(by_title) == {"Two-basin", "CoolMomentum"}
    two = by_title["Two-basin"]
    low, high = two["ratio_ci95"]
    if two["ratio"] is not None and high is not None:
        assert low <= two["ratio"] <= high
    # quick mode: 2000 runs, an interval of at most ±0.3 (issue 23), and a verdict
    assert two["runs"] == 2000 and (high - low) / 2 <= 0.3
    assert ("inconclusive at this size" in two["measured"]) != two["conclusive"]
    assert "95% CI" in two["measured"] and "95% CI" in two["paper"]
    assert INTERVAL.search(by_title["CoolMomentum"]["measured"])
    assert "evaluations per run" in by_title["CoolMomentum"]["measured"]


def test_ecdf_by_optimizer_is_the_fraction_of_runs():
    xp = get_namespace("numpy")
    result = compare(xp=xp, problems=["quadratic", "two_basin"],
                     optimizers=["heavy_ball", "dynamic_relaxation"], evals=300, ensemble=4)
    curves = ecdf_by_optimizer(result)
    assert set(curves) == {"heavy_ball", "dynamic_relaxation"}
    for name, (x, y) in curves.items():
        rows = [r for r in result.rows if r.optimizer == name]
        rates = [r.successes / r.ensemble for r in rows]
        # the curve ends at the mean success rate over the problems (failures never count)
        assert (y[-1] if y.size else 0.0) == pytest.approx(np.mean(rates))
        reached = np.concatenate([result.traces[(r.problem, name)].evaluations_to_target
                                  for r in rows])
        np.testing.assert_array_equal(x, np.unique(reached[reached >= 0]))
        assert np.all(x >= 1) and np.all(x <= 300)
    hb_x, _ = curves["heavy_ball"]
    assert hb_x.size > 0  # heavy ball reaches the target on both problems


def test_compare_plot_is_an_ecdf(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from physopt_ref.cli.plots import compare_figure

    path = tmp_path / "compare.png"
    assert main(["compare", "--problems", "quadratic,two_basin", "--optimizers",
                 "sgd,heavy_ball", *QUICK, "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plot written" in capsys.readouterr().out
    xp = get_namespace("numpy")
    result = compare(xp=xp, problems=["quadratic", "two_basin"],
                     optimizers=["sgd", "heavy_ball"], evals=41, ensemble=2)
    fig = compare_figure(result)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        "all 2 problems (each weighted equally)", "quadratic", "two_basin"]
    for ax in panels:
        assert ax.get_xscale() == "log"
        assert "evaluations" in ax.get_xlabel()
        labels = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]
        assert labels == ["sgd", "heavy_ball"]
        for line in ax.get_lines():
            assert np.all(np.diff(line.get_ydata()) >= 0)  # an ECDF never decreases


def test_run_with_hyperparameters(capsys):
    assert main(["run", "heavy_ball", "quadratic", "--hp", "lr=0.02", "--hp", "momentum=0.5",
                 "--steps", "30", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["hyperparameters"] == {"lr": 0.02, "momentum": 0.5}
    assert doc["steps"] == 30 and len(doc["losses"]) == 31 and doc["evaluations"] == 31
    assert doc["trace"]["runs"]["evaluations"] == [31]


def test_run_text_ensemble_backend_seed(capsys):
    assert main(["run", "adam", "two_basin", "--ensemble", "3", "--steps", "20",
                 "--backend", "array_api_strict", "--seed", "4", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "run 2:" in out and "array_api_strict" in out
    assert "Wilson" in out and "median" in out


def test_run_plot_2d(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "run.png"
    assert main(["run", "heavy_ball", "two_basin", "--ensemble", "4", "--steps", "200",
                 "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_figure_title_colour_bar_best_so_far_and_target():
    pytest.importorskip("matplotlib")
    from physopt_ref.problems import two_basin

    import physopt_ref
    from physopt_ref.cli.plots import run_figure, run_title

    problem = two_basin()
    x0 = np.broadcast_to(problem.x0, (3, 2)).copy()
    trace = physopt_ref.run(physopt_ref.heavy_ball(lr=0.05, momentum=0.9), problem, x0, 150,
                            target=problem.f_min + 1e-3, record_x=True)
    title = run_title("heavy_ball", {"lr": 0.05, "momentum": 0.9}, "two_basin", trace)
    assert title.startswith("heavy_ball on two_basin (lr=0.05, momentum=0.9)")
    assert format_interval(trace.successes, 3, trace.success_interval) in title
    assert "Optimizer(" not in title and "{" not in title
    fig = run_figure(trace, problem, title)
    conv, land, bar = fig.axes  # convergence, landscape, and the landscape's colour bar
    assert "log10" in bar.get_ylabel()
    labels = [ln.get_label() for ln in conv.get_lines()]
    assert "median best so far" in labels and "target" in labels
    target_line = conv.get_lines()[labels.index("target")]
    assert target_line.get_ydata()[0] == pytest.approx(1e-3)  # target - f* on the f - f* axis
    best = conv.get_lines()[labels.index("median best so far")].get_ydata()
    assert np.all(np.diff(best) <= 0)
    assert "trajectories" in land.get_title()
    assert fig.texts[0].get_text().startswith("heavy_ball on two_basin")


def test_tune_small_grid(capsys):
    assert main(["tune", "sgd", "quadratic", "--grid", "lr=0.001,0.0198", "--evals", "400",
                 "--ensemble", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tried"] == 2 and doc["seed"] == 1000
    assert doc["best"] == {"lr": 0.0198}  # the optimal 2/(L+μ), near 0.0198, wins
    assert doc["recorded"] == {"lr": pytest.approx(2 / 101)} and doc["agrees"] is False
    ranks = [r["successes"] for r in doc["rows"]]
    assert ranks == sorted(ranks, reverse=True)


def test_list(capsys):
    assert main(["list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["optimizers"]) == set(registered_names())
    assert "quadratic" in doc["problems"] and doc["problems"]["quadratic"]["in_compare"]
    assert "ackley_ecd" in doc["problems"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "--ensemble", "0"], "expected an integer >= 1"),
        (["compare", "--no-such-option"], "unrecognized arguments"),
        (["run", "no_such_optimizer", "quadratic"], "unknown optimizer"),
        (["run", "sgd", "no_such_problem"], "unknown problem"),
        (["run", "sgd", "quadratic", "--hp", "lr=-1"], "lr"),
        (["run", "sgd", "quadratic", "--hp", "nonsense=1"], "nonsense, which sgd does not take"),
        (["run", "dyna", "quadratic", "--hp", "lr=0.1"], "lr, which dyna does not take"),
        (["run", "sgd", "quadratic", "--hp", "lr"], "NAME=VALUE"),
        (["run", "sgd", "quadratic", "--problem-arg", "dim=-3"], "problem-arg"),
        (["run", "sgd", "ackley_ecd", "--problem-arg", "dim=3"], "takes no arguments"),
        (["compare", "--problems", "nope"], "unknown problem"),
        (["compare", "--optimizers", "nope"], "unknown optimizer"),
        (["compare", "--backend", "fortran"], "invalid choice"),
        (["tune", "adam", "quadratic"], "no recorded grid"),
        (["tune", "sgd", "quadratic", "--grid", "momentum=0.1,0.2"], "momentum, which sgd"),
        (["tune", "sgd", "quadratic", "--grid", "lr="], "no values"),
        ([], "required"),
    ],
)
def test_usage_errors_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_backend_not_installed_exit_2(monkeypatch, capsys):
    from physopt_ref.backends import BackendNotInstalledError

    import physopt_ref.cli.commands as commands

    def missing(name):
        raise BackendNotInstalledError(f"backend {name!r} is not available here; "
                                       "install it with: pip install x")

    monkeypatch.setattr(commands, "get_namespace", missing)
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


def test_format_interval():
    assert format_interval(22, 24, (0.7415, 0.9768)) == "22/24 (74-98%)"
    assert format_interval(0, 24, (0.0, 0.138)) == "0/24 (0-14%)"


_RUN = ["run", "sgd", "quadratic", "--steps", "3"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "sgd", "quadratic", "--steps", "-5"], "--steps: expected an integer >= 1, got -5"),
        (["run", "sgd", "quadratic", "--steps", "0"], "--steps: expected an integer >= 1, got 0"),
        (["run", "sgd", "quadratic", "--steps", "2.5"], "--steps: expected an integer >= 1"),
        (["run", "sgd", "quadratic", "--ensemble", "-5"], "--ensemble: expected an integer >= 1"),
        (["compare", "--ensemble", "-5"], "--ensemble: expected an integer >= 1, got -5"),
        (["compare", "--evals", "0"], "--evals: expected an integer >= 1"),
        ([*_RUN, "--record-every", "0"], "--record-every: expected an integer >= 1"),
        ([*_RUN, "--seed", "-1"], "--seed: expected an integer >= 0"),
        ([*_RUN, "--gtol", "-1"], "--gtol: expected a finite number >= 0"),
        ([*_RUN, "--gtol", "nan"], "--gtol: expected a finite number >= 0"),
        ([*_RUN, "--noise", "-1"], "--noise: expected a finite number >= 0"),
        ([*_RUN, "--noise", "nan"], "--noise: expected a finite number >= 0"),
        ([*_RUN, "--noise", "inf"], "--noise: expected a finite number >= 0"),
        ([*_RUN, "--target", "nan"], "--target: expected a finite number"),
        ([*_RUN, "--target=-inf"], "--target: expected a finite number"),
        ([*_RUN, "--plot", "/no/such/folder/x.png"], "the folder '/no/such/folder'"),
        ([*_RUN, "--plot", "x.txt"], "expected a file ending in .png, .pdf, .svg"),
        (["compare", "--plot", "figure"], "expected a file ending in .png, .pdf, .svg"),
        ([*_RUN, "--hp", "lr=nan"], "lr (η) must be finite"),
        ([*_RUN, "--hp", "lr=-inf"], "lr (η) must be finite"),
        ([*_RUN, "--hp", "lr=True"], "lr (η) must be a real number"),
        (["run", "bbi", "quadratic", "--hp", "rescale=no"], "rescale must be True or False"),
        (["run", "ecdsep", "quadratic", "--hp", "f0_tuning=1"], "f0_tuning must be True or False"),
        ([*_RUN, "--problem-arg", "dim=1.5"], "dim must be an integer, got 1.5"),
        ([*_RUN, "--problem-arg", "dim=nan"], "dim must be an integer"),
        ([*_RUN, "--dtype", "float16"], "invalid choice: 'float16'"),
        (["compare", "--problems", ""], "--problems: expected comma-separated names"),
        (["compare", "--optimizers", ","], "--optimizers: expected comma-separated names"),
        (["tune", "sgd", "quadratic", "--grid", "lr=a,b"], "--grid lr='a': bad hyperparameter"),
        (["tune", "sgd", "quadratic", "--grid", "lr=0.1,-1"], "--grid lr=-1: bad hyperparameter"),
        (["tune", "sgd", "quadratic", "--grid", "lr=0.1", "--hp", "lr=x"], "bad hyperparameter"),
        (["digits", "--epochs", "0"], "--epochs: expected an integer >= 1"),
        (["verify", "physopt_ref:sgd", "--examples", "0"], "--examples: expected an integer >= 1"),
        (["list", "--bad"], "unrecognized arguments: --bad"),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ],
)
def test_bad_invocations_one_line_exit_2(argv, message, capsys):
    """Every bad option value is refused up front: exit status 2, one line on stderr naming the
    option, no traceback, nothing on stdout (issue 12: tracebacks for --noise -1 and --plot,
    silent acceptance of --gtol -1, --noise nan, --target nan, and ">= 0" then ">= 1")."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("physopt-ref: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
