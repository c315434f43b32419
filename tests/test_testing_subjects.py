"""The kit on the optimizers users write: what it probes, the state-of-arrays rule on trees,
the physics it suggests, torch and optax subjects, and ``verify``'s exit statuses."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from array_api_compat import array_namespace

import physopt_ref.testing as kit
from physopt_ref.cli import main
from physopt_ref.testing.frameworks import framework_subject
from physopt_ref.testing.probe import probe
from physopt_ref.testing.suggest import suggest_physics

pytest.importorskip("hypothesis")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


# ---------------------------------------------------------------------------------------------
# Optimizers as users write them


class _Velocity(NamedTuple):
    velocity: Any


class _ArrayHeavyBall:
    """Heavy ball on one array; no batch_ndim, no loss."""

    def __init__(self, lr: float = 0.1, momentum: float = 0.9) -> None:
        self.lr, self.momentum = lr, momentum

    def init(self, x: Any) -> _Velocity:
        return _Velocity(array_namespace(x).zeros_like(x))

    def step(self, x: Any, g: Any, state: _Velocity) -> tuple[Any, _Velocity]:
        v = self.momentum * state.velocity - self.lr * g
        return x + v, _Velocity(v)


class _DictHeavyBall:
    """Heavy ball on dict trees, its velocity a dict of arrays (as optax states hold trees)."""

    def __init__(self, lr: float = 0.1, momentum: float = 0.9, junk: Any = "") -> None:
        self.lr, self.momentum, self.junk = lr, momentum, junk

    def init(self, params: dict, *, batch_ndim: int = 0) -> Any:
        state = _Velocity({k: v * 0 for k, v in params.items()})
        return (state, self.junk) if self.junk != "" else state

    def step(self, params: dict, grads: dict, state: Any, *, loss: Any = None) -> Any:
        inner = state[0] if self.junk != "" else state
        v = {k: self.momentum * inner.velocity[k] - self.lr * grads[k] for k in params}
        new = _Velocity(v)
        return {k: params[k] + v[k] for k in params}, ((new, self.junk) if self.junk != ""
                                                       else new)


def _subject(cls: type, **hp: Any) -> kit.Subject:
    return kit.Subject(cls.__name__, lambda **h: cls(**h), {"lr": 0.1, "momentum": 0.9, **hp})


def test_probe_finds_what_a_single_array_optimizer_accepts() -> None:
    accepts = probe(_subject(_ArrayHeavyBall))
    assert accepts.trees == ("array",)
    assert not accepts.ensembles and not accepts.loss
    assert set(accepts.refused) == {"list", "tuple", "dict"}
    text = accepts.describe()
    assert "accepted array" in text and "init takes no batch_ndim" in text
    assert probe(kit.Subject.registered("sgd")).trees == ("array", "list", "tuple", "dict")
    assert probe(_subject(_DictHeavyBall)).trees == ("dict",)


def test_a_correct_single_array_heavy_ball_passes() -> None:
    """The issue's case: 0 passed and 7 failed before the kit probed what it accepts."""
    report = kit.verify(_subject(_ArrayHeavyBall), compile=False, max_examples=2)
    assert report.passed, report.table()
    assert report["ensemble = single runs"].status == "skip"
    assert sum(r.status == "pass" for r in report.results) >= 6
    assert any("accepted array" in note for note in report.notes)
    assert "accepted array" in report.table()


def test_a_dict_heavy_ball_with_a_dict_velocity_passes() -> None:
    report = kit.verify(_subject(_DictHeavyBall), compile=False, max_examples=2)
    assert report.passed, report.table()
    assert report["state of arrays"].status == "pass"


def test_drawn_workloads_keep_to_the_kinds_accepted() -> None:
    from hypothesis import given, settings

    from physopt_ref.testing import strategies as pst

    seen = []

    @settings(max_examples=15, database=None, derandomize=True)
    @given(pst.workloads(kinds=["dict"]))
    def draw(workload: kit.QuadraticWorkload) -> None:
        seen.append(type(workload.x0))

    draw()
    assert set(seen) == {dict}


@pytest.mark.parametrize(
    ("junk", "message"),
    [
        (1.5, "state[1] is a float, not an array"),
        (None, "state[1] is a NoneType, not an array"),
        (object(), "state[1] is an object, not an array"),
        (np.float64(2.0), "state[1] is a NumPy scalar, not an array"),
        ({"t": 3}, "state[1]['t'] is an int, not an array"),
    ],
)
def test_state_of_arrays_catches_host_objects_anywhere_in_the_tree(junk: Any,
                                                                   message: str) -> None:
    result = kit.check_state_structure(_subject(_DictHeavyBall, junk=junk))
    assert result.failed and message in result.message(), result.message()


def test_state_of_arrays_accepts_nested_trees_of_arrays() -> None:
    nested = {"a": [np.zeros(2)], "b": (np.zeros(()),)}
    result = kit.check_state_structure(_subject(_DictHeavyBall, junk=nested))
    assert result.passed, result.message()
    sig, problems = kit.state_signature((_Velocity({"w": np.zeros(3)}), nested))
    assert not problems
    assert [s[0] for s in sig] == ["state[0].velocity['w']", "state[1]['a'][0]",
                                   "state[1]['b'][0]"]


# ---------------------------------------------------------------------------------------------
# Suggested physics


def _names(props: list[Any]) -> list[str]:
    return [p.name for p in props]


def test_suggestions_from_names_and_first_steps() -> None:
    props, why = suggest_physics(_subject(_ArrayHeavyBall))
    assert _names(props) == ["stability bound"] and "a heavy ball" in why[0]
    gd = kit.Subject("gd", lambda lr=0.1: _ArrayHeavyBall(lr, 0.0), {"lr": 0.1})
    props, why = suggest_physics(gd)
    assert _names(props) == ["stability bound"] and "gradient descent" in why[0]
    example = runpy.run_path(str(EXAMPLES / "verify_my_optimizer.py"))
    ema = kit.Subject("ema", example["ema_heavy_ball"], {"lr": 0.1, "momentum": 0.9})
    props, why = suggest_physics(ema)
    assert _names(props) == ["bias correction"] and "average of the gradients" in why[0]
    adam_like = kit.Subject("adam_like", lambda lr=0.1, b1=0.9, b2=0.99: _ArrayHeavyBall(lr, b1),
                            {})
    props, why = suggest_physics(adam_like)
    assert _names(props) == ["bias correction"] and "b1/b2" in why[0]


def test_a_loss_taking_step_with_a_rescale_switch_gets_the_energy_checks() -> None:
    import physopt_ref as po

    bbi = kit.Subject("my_bbi", po.bbi, {"lr": 0.05, "v0": 0.0, "delta_e": 1.0,
                                         "v0_tuning": False})
    props, why = suggest_physics(bbi)
    assert "energy error O(dt^2)" in _names(props) and "energy=bbi" in why[-1]
    plain = kit.Subject("loss_only", lambda: _NeedsLoss(), {})
    props, why = suggest_physics(plain)
    assert props == [] and "need a 'rescale' switch" in " ".join(why)


def test_an_optimizer_object_gets_only_checks_that_do_not_rebuild_it() -> None:
    import physopt_ref as po

    report = kit.verify(po.heavy_ball(lr=0.1, momentum=0.9), compile=False, max_examples=2)
    assert report.passed, report.table()
    assert any("not a factory" in note for note in report.notes)
    props, _ = suggest_physics(kit.as_subject(po.adam(lr=0.01)))
    assert _names(props) == ["bias correction"]  # from b1/b2; it does not rebuild


class _NeedsLoss:
    needs_loss = True

    def init(self, x: Any, *, batch_ndim: int = 0) -> Any:
        return ()

    def step(self, x: Any, g: Any, state: Any, *, loss: Any = None) -> Any:
        return x - 0.01 * g * loss, state


def test_an_off_by_one_bias_correction_is_caught_without_physics() -> None:
    """The issue's case: caught only with an explicit --physics before."""
    example = runpy.run_path(str(EXAMPLES / "verify_my_optimizer.py"))
    buggy = kit.Subject("buggy", example["buggy_ema_heavy_ball"], {"lr": 0.1, "momentum": 0.9})
    report = kit.verify(buggy, contract=False, max_examples=3)
    assert [r.property for r in report.failures] == ["bias correction"], report.table()
    assert any("physics suggested" in n for n in report.notes)


# ---------------------------------------------------------------------------------------------
# torch and optax subjects


def _torch_optimizer(bug: str) -> type:
    torch = pytest.importorskip("torch")

    class Momentum(torch.optim.Optimizer):
        def __init__(self, params: Any, lr: float = 0.1, momentum: float = 0.9) -> None:
            super().__init__(params, {"lr": lr, "momentum": momentum})
            self.hidden: dict[int, Any] = {}

        @torch.no_grad()
        def step(self, closure: Any = None) -> None:
            for group in self.param_groups:
                for i, p in enumerate(group["params"]):
                    if bug == "hidden state":  # kept outside self.state: lost by state_dict
                        buf = self.hidden.setdefault(i, torch.zeros_like(p))
                    else:
                        buf = self.state[p].setdefault("buf", torch.zeros_like(
                            p, dtype=torch.float64 if bug == "float64" else p.dtype))
                    buf.mul_(group["momentum"]).add_(p.grad)
                    if bug == "host sync" and float(buf.abs().max()) > 1e30:
                        buf.zero_()
                    p.sub_(group["lr"] * buf.to(p.dtype))

    return Momentum


@pytest.mark.parametrize(
    ("bug", "prop"),
    [
        ("host sync", "no host synchronisation (meta device)"),
        ("hidden state", "state_dict round trip"),
        ("float64", "dtype kept"),
    ],
)
def test_torch_checks_catch_their_bugs(bug: str, prop: str) -> None:
    subject = framework_subject("m", _torch_optimizer(bug), {"lr": 0.1})
    report = kit.verify(subject, physics=[], max_examples=2)
    assert prop in [r.property for r in report.failures], report.table()
    clean = kit.verify(framework_subject("m", _torch_optimizer(""), {"lr": 0.1}), physics=[],
                       max_examples=2)
    assert clean.passed, clean.table()


def test_optax_transformation_with_a_host_number_in_its_state_fails() -> None:
    optax = pytest.importorskip("optax")

    def scaled(learning_rate: float = 0.1) -> Any:
        def init(params: Any) -> Any:
            return {"steps": 0}

        def update(grads: Any, state: Any, params: Any = None) -> Any:
            return optax.scale(-learning_rate).update(grads, optax.EmptyState())[0], {
                "steps": state["steps"] + 1}

        return optax.GradientTransformation(init, update)

    report = kit.verify(framework_subject("scaled", scaled, {}), physics=[], compile=False,
                        max_examples=2)
    assert report["state of arrays"].failed, report.table()
    assert "state['steps'] is an int" in report["state of arrays"].message()


# ---------------------------------------------------------------------------------------------
# Exit statuses: 2 with one line for usage, import, syntax and factory errors


def _module(tmp_path: Path, source: str) -> str:
    path = tmp_path / "user_opt.py"
    path.write_text(source)
    return str(path)


GOOD = "from physopt_ref import sgd\n"


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("def f(:\n", "f", "SyntaxError"),
        ("raise RuntimeError('boom at import')\n", "f", "RuntimeError: boom at import"),
        ("import no_such_module_xyz\n", "f", "ModuleNotFoundError"),
        ("import sys\nsys.exit(3)\n", "f", "SystemExit"),
        ("def f(**hp):\n    raise RuntimeError('factory boom')\n", "f",
         "raised when built: RuntimeError: factory boom"),
        ("def f(**hp):\n    return 42\n", "f", "returned a int, not an optimizer"),
        (GOOD + "f = sgd\n", "f", "bad hyperparameter"),  # --hp lr=-1 below
    ],
)
def test_cli_verify_exits_2_with_one_line(tmp_path: Path, source: str, target: str,
                                          message: str, capsys: Any) -> None:
    argv = ["verify", f"{_module(tmp_path, source)}:{target}", "--examples", "1"]
    if "sgd" in source:
        argv += ["--hp", "lr=-1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_cli_verify_usage_errors_of_frameworks(capsys: Any) -> None:
    pytest.importorskip("torch")
    assert main(["verify", "torch.optim:Adam", "--hp", "lr=-1"]) == 2
    assert "bad hyperparameter for Adam" in capsys.readouterr().err
    pytest.importorskip("optax")
    assert main(["verify", "optax:adam"]) == 2  # learning_rate has no default
    assert "learning_rate" in capsys.readouterr().err


def test_cli_verify_nothing_to_check(tmp_path: Path, capsys: Any) -> None:
    source = ("from physopt_ref import sgd\n"
              "def f(step_size=0.1):\n    return sgd(lr=step_size)\n")
    assert main(["verify", f"{_module(tmp_path, source)}:f", "--no-contract"]) == 2
    assert "nothing to check" in capsys.readouterr().err


def test_cli_verify_exit_status_in_a_subprocess(tmp_path: Path) -> None:
    """No traceback reaches the terminal: the status is 2 and stderr one line."""
    path = _module(tmp_path, "raise ValueError('at import')\n")
    target = f"{path}:f"
    proc = subprocess.run([sys.executable, "-m", "physopt_ref", "verify", target],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot import" in proc.stderr and "ValueError: at import" in proc.stderr
