"""BBI and ECDSep with ``safety="backtrack"`` (issue 27): onto the energy shell, off by default.

The ill-conditioned case: F = ½(x₁² + 10⁴ x₂²) from (1, 5e-3), Δt = 0.3. Without the option
BBI's first drift (gradient descent with step Δt², spec ``ecd.md`` §1.3) lands at V ≫ E and the
run diverges to inf; ECDSep leaves its shell (V up to 60 e^E) and keeps going off it.
"""

from __future__ import annotations

import itertools
import pickle
from typing import Any

import numpy as np
import pytest

import physopt_ref as po
from physopt_ref.optimizers.ecd_common import EVENT_BACKTRACK, EVENT_UPDATE
from physopt_ref.optimizers.ecd_safety import MAX_BACKTRACKS, SAFETY_FIELDS

STIFF = np.array([1.0, 1e4])  # the ill-conditioned quadratic's eigenvalues
START = np.array([1.0, 5e-3])  # near the valley floor: the gradient points across the valley
MILD = np.array([1.0, 2.0, 3.0, 4.0])  # a well-conditioned quadratic


def quad(xp: Any, lam: np.ndarray, x: Any) -> tuple[Any, Any]:
    """½ Σ λ x² per run (last axis) and its gradient."""
    lam_x = xp.asarray(lam, dtype=x.dtype)
    return 0.5 * xp.sum(lam_x * x * x, axis=-1), lam_x * x


def build(name: str, safety: str | None = None, **kw: Any) -> po.Optimizer:
    if name == "bbi":
        return po.bbi(**({"lr": 0.3} | kw), safety=safety)
    return po.ecdsep(**({"lr": 0.3, "eta": 1.0} | kw), safety=safety)


def trajectory(opt: po.Optimizer, x0: np.ndarray, lam: np.ndarray, steps: int,
               dtype: Any = np.float64, donate: bool = False) -> list[tuple[Any, Any, Any]]:
    """``(params, state, loss)`` after each call, NumPy, ensemble axis first when x0 is 2-D;
    cut short where the gradient stops being finite (a diverged run)."""
    x = np.array(x0, dtype=dtype)
    state = opt.init(x, batch_ndim=x.ndim - 1)
    out = []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            loss, grad = quad(np, lam, x)
            if not np.all(np.isfinite(grad)):
                break
            x, state = opt.step(x, grad, state, loss=loss, donate=donate)
            kept = state
            if donate:  # the next call writes into these arrays: keep copies
                kept = type(state)(*[tuple(np.copy(a) for a in v) if isinstance(v, tuple)
                                     else np.copy(v) for v in state])
            out.append((x.copy(), kept, loss))
    return out


def energy_bound(name: str, state: Any) -> Any:
    """The largest V on the shell: E (BBI), e^E / s (ECDSep, s = 1 here)."""
    return state.energy if name == "bbi" else state.exp_energy


# ---------------------------------------------------------------------------------------------
# The option: validation, state layout


@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
@pytest.mark.parametrize("value", ["Backtrack", "first_kick", True, 1, ""])
def test_unknown_safety_values_are_refused(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match="safety must be one of"):
        build(name, safety=value)


def test_ecdsep_refuses_backtracking_with_f0_tuning() -> None:
    with pytest.raises(ValueError, match="f0_tuning"):
        po.ecdsep(lr=0.1, eta=1.0, f0_tuning=True, safety="backtrack")
    po.ecdsep(lr=0.1, eta=1.0, f0_tuning=True)  # the default is unaffected


@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
def test_state_has_the_safety_fields_only_when_on(name: str) -> None:
    x = np.ones((3, 2))
    off = build(name).init(x, batch_ndim=1)
    assert type(off) is (po.BBIState if name == "bbi" else po.ECDSepState)
    assert not set(SAFETY_FIELDS) & set(off._fields)
    opt = build(name, "backtrack")
    on = opt.init(x, batch_ndim=1)
    assert on._fields == (*off._fields, *SAFETY_FIELDS)
    assert opt.hyperparameters["safety"] == "backtrack"
    assert build(name).hyperparameters["safety"] is None
    assert on.anchor[0].shape == x.shape and on.backtracks.shape == (3,)
    _x1, s1 = opt.step(x, x, on, loss=np.full(3, 1.0))
    back = pickle.loads(pickle.dumps(s1))
    assert type(back) is type(s1)
    for a, b in zip(back, s1, strict=True):
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,),
                        strict=True):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
def test_checkpoint_mid_episode_resumes_exactly(name: str, tmp_path: Any) -> None:
    """Saved between two backtracks and loaded (optimizer rebuilt from the file): the resumed
    run equals the uninterrupted one."""
    full = trajectory(build(name, "backtrack"), START, STIFF, 40)
    cut = 3  # calls 1 and 2 backtrack (the first drift left the shell)
    assert int(full[cut - 1][1].event) == EVENT_BACKTRACK
    path = tmp_path / "state.npz"
    po.save_state(path, build(name, "backtrack"), full[cut - 1][1])
    opt, state = po.load_state(path)
    assert opt.hyperparameters["safety"] == "backtrack"
    x = full[cut - 1][0]
    for t in range(cut, 40):
        loss, grad = quad(np, STIFF, x)
        x, state = opt.step(x, grad, state, loss=loss)
        np.testing.assert_array_equal(x, full[t][0], err_msg=f"call {t}")


# ---------------------------------------------------------------------------------------------
# Runs that never leave the shell are unchanged


NEVER_LEAVE = {
    "bbi_bounces": ("bbi", dict(lr=0.05, delta_e=0.5, t0=7, t1=3, n_fixed_bounces=3, seed=4)),
    "bbi_tuning": ("bbi", dict(lr=0.05, v0=0.5, delta_e=0.2, t1=5, seed=2, v0_tuning=True)),
    "ecdsep_jitter_wd": ("ecdsep", dict(lr=0.05, eta=2.0, nu=0.1, weight_decay=0.01, seed=5)),
    "ecdsep_s_half": ("ecdsep", dict(lr=0.1, eta=1.5, s=0.5, nu=0.01, seed=1)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", sorted(NEVER_LEAVE))
def test_runs_that_never_leave_the_shell_are_bit_identical(case: str, dtype: Any) -> None:
    name, kw = NEVER_LEAVE[case]
    x0 = np.array([[1.0, -0.5, 0.3, 0.8], [0.2, 0.1, -1.0, 0.4], [-2.0, 1.0, 0.5, -0.1]])
    off = trajectory(build(name, **kw), x0, MILD, 80, dtype)
    on = trajectory(build(name, "backtrack", **kw), x0, MILD, 80, dtype)
    for t, ((x_off, s_off, _), (x_on, s_on, _)) in enumerate(zip(off, on, strict=True)):
        assert not np.any(s_on.event == EVENT_BACKTRACK), f"{case} left its shell at call {t}"
        np.testing.assert_array_equal(x_on, x_off, err_msg=f"{case} call {t}")
        for field, want in zip(s_off._fields, s_off, strict=True):
            got = getattr(s_on, field)
            for g, w in zip(got if isinstance(got, tuple) else (got,),
                            want if isinstance(want, tuple) else (want,), strict=True):
                np.testing.assert_array_equal(g, w, err_msg=f"{case} call {t} {field}")
        np.testing.assert_array_equal(s_on.step_level, 0)
    assert {int(e) for _, s, _ in off for e in s.event} >= {EVENT_UPDATE}


# ---------------------------------------------------------------------------------------------
# Ill-conditioned: off the shell without, on it with the option


def test_without_the_option_the_ill_conditioned_runs_leave_the_shell() -> None:
    bbi = trajectory(build("bbi"), START, STIFF, 300)
    assert len(bbi) < 300 and bbi[-1][2] > 1e100  # diverged: the gradient overflowed
    assert bbi[1][2] > 100.0 * bbi[0][1].energy  # the first drift lands at V >> E
    ecd = trajectory(build("ecdsep"), START, STIFF, 300)
    worst = max(float(loss / energy_bound("ecdsep", prev))
                for (_, prev, _), (_, _, loss) in itertools.pairwise(ecd))
    assert worst > 10.0


@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
def test_backtracking_keeps_every_update_on_the_shell_and_descends(name: str) -> None:
    run = trajectory(build(name, "backtrack"), START, STIFF, 300)
    f0 = float(quad(np, STIFF, START)[0])
    events = np.array([int(s.event) for _, s, _ in run])
    assert (events == EVENT_BACKTRACK).sum() >= 5
    # Each call sees V at its input: an update happens only at V <= E (exactly, for BBI).
    for (_, prev, _), (_, state, loss) in itertools.pairwise(run):
        bound = float(energy_bound(name, prev))
        if int(state.event) == EVENT_UPDATE:
            assert float(loss) <= bound * (1.0 if name == "bbi" else 1.0 + 1e-12)
        else:
            assert int(state.event) == EVENT_BACKTRACK and float(loss) > bound
    final = float(quad(np, STIFF, run[-1][0])[0])
    assert final < 0.05 * f0, final / f0
    assert int(run[-1][1].step_level) == (events == EVENT_BACKTRACK).sum()


@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
def test_backtrack_moves_half_way_to_the_last_update_point(name: str) -> None:
    opt = build(name, "backtrack")
    x = START.copy()
    state = opt.init(x)
    loss, grad = quad(np, STIFF, x)
    x1, state = opt.step(x, grad, state, loss=loss)  # the first update (from rest)
    loss1, grad1 = quad(np, STIFF, x1)
    assert loss1 > energy_bound(name, state)  # off the shell
    x2, state2 = opt.step(x1, grad1, state, loss=loss1)
    assert int(state2.event) == EVENT_BACKTRACK
    np.testing.assert_array_equal(x2, START + 0.5 * (x1 - START))
    np.testing.assert_array_equal(state2.momentum[0], state.momentum[0])
    assert int(state2.iteration) == int(state.iteration) == 1
    assert int(state2.backtracks) == int(state2.step_level) == 1


def test_a_run_off_the_shell_at_its_anchor_gives_up_after_the_bound() -> None:
    """A loss that stays above E (noise at the anchor): 30 backtracks, then an update with the
    step size of before the episode."""
    opt = build("bbi", "backtrack")
    x = START.copy()
    state = opt.init(x)
    loss, grad = quad(np, STIFF, x)
    x, state = opt.step(x, grad, state, loss=loss)
    high = 2.0 * float(state.energy)
    events = []
    for _ in range(MAX_BACKTRACKS + 1):
        x, state = opt.step(x, quad(np, STIFF, x)[1], state, loss=high)
        events.append(int(state.event))
    assert events == [EVENT_BACKTRACK] * MAX_BACKTRACKS + [EVENT_UPDATE]
    assert int(state.backtracks) == 0 and int(state.step_level) == 0


@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_non_finite_loss_after_the_start_backtracks(name: str, bad: float) -> None:
    """A NaN or inf V is off the shell: the run backtracks, and the call's non-finite gradient
    (unused) leaves no NaN; without the option the call is a no-op that stays put."""
    x = START.copy()
    loss, grad = quad(np, STIFF, x)
    for safety in (None, "backtrack"):
        opt = build(name, safety)
        x1, state = opt.step(x, grad, opt.init(x), loss=loss)
        # The checks refuse a non-finite gradient outright; NumPy warns about inf * 0 in the
        # kick that the call then discards.
        with po.debug_checks(False), np.errstate(invalid="ignore"):
            x2, state2 = opt.step(x1, np.full(2, bad), state, loss=bad)
        if safety is None:
            assert int(state2.event) == 0
            np.testing.assert_array_equal(x2, x1)
        else:
            assert int(state2.event) == EVENT_BACKTRACK
            np.testing.assert_array_equal(x2, START + 0.5 * (x1 - START))
            np.testing.assert_array_equal(state2.momentum[0], state.momentum[0])
            assert np.all(np.isfinite(state2.p2))


def test_ensemble_members_equal_their_single_runs() -> None:
    """One member leaves its shell, one does not: each is its own single run (``member=k``:
    the same random draws)."""
    starts = np.array([START, [0.7, 0.0]])
    for name in ("bbi", "ecdsep"):
        both = trajectory(build(name, "backtrack"), starts, STIFF, 120)
        for k in range(2):
            single = trajectory(build(name, "backtrack", member=k), starts[k], STIFF, 120)
            for t, ((xb, sb, _), (xs, ss, _)) in enumerate(zip(both, single, strict=True)):
                np.testing.assert_allclose(xb[k], xs, rtol=1e-13, atol=0,
                                           err_msg=f"{name} member {k} call {t}")
                assert int(sb.event[k]) == int(ss.event)
        levels = both[-1][1].step_level
        assert levels[0] > 0 and levels[1] != levels[0]


@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
def test_donated_step_equals_the_pure_step(name: str) -> None:
    """The anchor is a fresh array: writing the new parameters in place does not move it."""
    pure = trajectory(build(name, "backtrack"), START, STIFF, 60)
    donated = trajectory(build(name, "backtrack"), START, STIFF, 60, donate=True)
    for (xp_, sp, _), (xd, sd, _) in zip(pure, donated, strict=True):
        np.testing.assert_array_equal(xd, xp_)
        np.testing.assert_array_equal(sd.anchor[0], sp.anchor[0])


# ---------------------------------------------------------------------------------------------
# Compiled steps (JAX, torch): the same backtracks, the same trajectory to rounding


COMPILED_STEPS = 40


def _reference(name: str) -> list[tuple[Any, Any, Any]]:
    return trajectory(build(name, "backtrack"), np.array([START, [0.7, 0.0]]), STIFF,
                      COMPILED_STEPS)


def _compare(name: str, xp: Any, to_np: Any, make: Any) -> None:
    ref = _reference(name)
    opt = build(name, "backtrack")
    step = po.compile(opt)
    x = make(np.array([START, [0.7, 0.0]]))
    state = opt.init(x, batch_ndim=1)
    for t in range(COMPILED_STEPS):
        loss, grad = quad(xp, STIFF, x)
        x, state = step(x, grad, state, loss=loss)
        np.testing.assert_array_equal(to_np(state.event), ref[t][1].event, err_msg=f"call {t}")
        np.testing.assert_allclose(to_np(x), ref[t][0], rtol=1e-9, atol=1e-14,
                                   err_msg=f"{name} call {t}")
    assert int(to_np(state.step_level)[0]) > 0


@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
def test_jax_jit_backtracks_as_numpy(name: str) -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    with jax.enable_x64(True):
        _compare(name, jnp, np.asarray, lambda a: jnp.asarray(a))


@pytest.mark.slow  # torch.compile of these steps takes 30-70 s on a shared 2-core machine
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
def test_torch_compile_backtracks_as_numpy(name: str) -> None:
    torch = pytest.importorskip("torch")
    _compare(name, torch, lambda a: a.detach().numpy(),
             lambda a: torch.asarray(a, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# The command line: --hp OPTIMIZER.NAME=VALUE turns the option on (it used to refuse any dotted
# name: "'bbi.safety' is not a valid name")


def _captured(monkeypatch: Any, module: Any, name: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake(*args: Any, **kwargs: Any) -> Any:
        seen["args"], seen["kwargs"] = args, kwargs
        raise RuntimeError("captured")

    monkeypatch.setattr(module, name, fake)
    return seen


def test_bbob_command_line_turns_the_option_on(monkeypatch: Any) -> None:
    pytest.importorskip("cocoex")
    import physopt_ref.adapters.bbob as harness
    from physopt_ref.cli import main

    seen = _captured(monkeypatch, harness, "bbob")
    with pytest.raises(RuntimeError, match="captured"):
        main(["bbob", "--optimizers", "bbi,ecdsep", "--hp", "bbi.safety=backtrack",
              "--hp", "ecdsep.safety=backtrack", "--hp", "bbi.lr=0.05"])
    methods = seen["args"][0]
    assert methods["bbi"].hyperparameters["safety"] == "backtrack"
    assert methods["bbi"].hyperparameters["lr"] == 0.05
    assert methods["ecdsep"].hyperparameters["safety"] == "backtrack"


def test_search_command_line_turns_the_option_on(monkeypatch: Any) -> None:
    from physopt_ref.cli import main

    seen = _captured(monkeypatch, po, "search")
    with pytest.raises(RuntimeError, match="captured"):
        main(["search", "bbi", "lj13", "--hp", "safety=backtrack", "--hp", "v0=-50.0"])
    opt = seen["args"][0]
    assert opt.hyperparameters["safety"] == "backtrack" and opt.hyperparameters["v0"] == -50.0


@pytest.mark.parametrize("hp", ["safety=backtrack", "bbi.safety", "nope.lr=0.1", "bbi=.x"])
def test_bbob_command_line_refuses_malformed_hyperparameters(hp: str, capsys: Any) -> None:
    pytest.importorskip("cocoex")
    from physopt_ref.cli import main

    assert main(["bbob", "--optimizers", "bbi", "--hp", hp]) == 2
    assert "OPTIMIZER.NAME=VALUE" in capsys.readouterr().err
