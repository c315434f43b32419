"""Composition: gradient transforms in front of any optimizer (``physopt_ref.chain``).

Two composed optimizers go through every generic check of ``test_contract`` and ``test_compile``
(purity, dtype, ensembles, parity, devices, state structure, pickling, jit / scan /
torch.compile): they are registered for the duration of each test only (the library's registry,
the command line and ``compare`` do not list them). ``coolmomentum`` and ``ecdsep``, whose
``weight_decay`` keyword is the coupled-weight-decay transform, are covered there as registered
optimizers. Then each transform against its formula, the guard's per-run skips, and the errors.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from physopt_ref.backends import get_namespace, to_numpy

import physopt_ref as po
from physopt_ref import REGISTRY, RegistryEntry
from physopt_ref.transforms.chain import optimizer_parts

from . import test_compile as compile_checks
from . import test_contract as contract
from .test_contract import X0, C, loss_and_grads, start

NP = get_namespace("numpy")


def _wide(params: Any) -> Any:
    """Mask: the leaves whose last axis has more than two entries (``w`` of the contract tree)."""
    return po.tree_map(lambda p: p.shape[-1] > 2, params)


def chained_heavy_ball(
    lr: Any = 0.1, momentum: Any = 0.8, max_norm: Any = 1.5, limit: Any = 0.9,
    weight_decay: Any = 0.05, rate: Any = 0.01,
) -> po.Optimizer:
    """Every transform in front of heavy ball (the contract quadratic clips early on)."""
    return po.chain(
        po.non_finite_guard(),
        po.clip_by_global_norm(max_norm),
        po.clip_by_value(limit),
        po.masked(po.coupled_weight_decay(weight_decay), _wide),
        po.decoupled_weight_decay(rate),
        po.heavy_ball(lr=lr, momentum=momentum),
    )


def chained_bbi(max_norm: Any = 2.0, weight_decay: Any = 0.02, **bbi: Any) -> po.Optimizer:
    """BBI on the coupled-L2 potential, behind the guard and global-norm clipping."""
    return po.chain(
        po.non_finite_guard(),
        po.clip_by_global_norm(max_norm),
        po.coupled_weight_decay(weight_decay),
        po.bbi(**bbi),
    )


COMPOSED = {
    "chained_heavy_ball": RegistryEntry(
        name="chained_heavy_ball",
        factory=chained_heavy_ball,
        test_hyperparameters={"lr": 0.1, "momentum": 0.8, "max_norm": 1.5, "limit": 0.9,
                              "weight_decay": 0.05, "rate": 0.01},
        family="classic",
        sweep={"max_norm": (0.5, 1.5, 3.0), "weight_decay": (0.0, 0.05, 0.2),
               "rate": (0.0, 0.01, 0.05), "lr": (0.05, 0.1, 0.2)},
    ),
    "chained_bbi": RegistryEntry(
        name="chained_bbi",
        factory=chained_bbi,
        test_hyperparameters={**REGISTRY["bbi"].test_hyperparameters, "max_norm": 2.0,
                              "weight_decay": 0.02},
        family="ecd",
        stochastic=True,
        smooth=False,
        sweep={"weight_decay": (0.0, 0.02, 0.1), "max_norm": (1.0, 2.0, 4.0)},
        long_run=dict(REGISTRY["bbi"].long_run),
    ),
}
NAMES = sorted(COMPOSED)
SWEEPS = [(n, hp) for n in NAMES for hp in COMPOSED[n].sweep]


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A composed optimizer, in the registry for this test only."""
    monkeypatch.setitem(REGISTRY, request.param, COMPOSED[request.param])
    return request.param


@pytest.fixture(params=SWEEPS, ids=[f"{n}-{h}" for n, h in SWEEPS])
def swept(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    n, hp = request.param
    monkeypatch.setitem(REGISTRY, n, COMPOSED[n])
    return n, hp


# ---------------------------------------------------------------------------------------------
# The generic checks, on the composed optimizers


def test_builds_an_optimizer(name: str) -> None:
    opt = contract.build(name)
    assert isinstance(opt, po.Chain) and isinstance(opt, po.Optimizer)
    assert opt.state_type._fields[-1] == "skipped"  # the guard's field, after the optimizer's


def test_purity_with_readonly_inputs(name: str) -> None:
    contract.test_purity_with_readonly_inputs(name)


def test_float32_stays_float32(name: str, xp: Any) -> None:
    contract.test_float32_stays_float32(name, xp)


def test_same_seed_same_run(name: str) -> None:
    contract.test_same_seed_same_run(name)


@pytest.mark.parametrize("batch_shape", [(3,), (2, 2)])
def test_ensemble_equals_single_runs(name: str, batch_shape: tuple[int, ...]) -> None:
    contract.test_ensemble_equals_single_runs(name, batch_shape)


def test_backend_matches_numpy_float64(name: str, xp: Any) -> None:
    contract.test_backend_matches_numpy_float64(name, xp)


def test_zero_gradient_is_finite(name: str) -> None:
    contract.test_zero_gradient_is_finite(name)


def test_invalid_hyperparameters_are_refused(name: str) -> None:
    contract.test_invalid_hyperparameters_are_refused(name)


def test_mismatched_inputs_are_refused(name: str) -> None:
    contract.test_mismatched_inputs_are_refused(name)


def test_single_array_and_list_trees(name: str) -> None:
    contract.test_single_array_and_list_trees(name)


def test_device_is_kept(name: str) -> None:
    contract.test_device_is_kept(name)


def test_state_is_arrays_with_a_fixed_structure(name: str, xp: Any) -> None:
    contract.test_state_is_arrays_with_a_fixed_structure(name, xp)


def test_count_saturates(name: str) -> None:
    contract.test_count_saturates(name)


def test_per_run_hyperparameter_equals_separate_runs(swept: tuple[str, str], xp: Any) -> None:
    contract.test_per_run_hyperparameter_equals_separate_runs(*swept, xp)


def test_per_run_hyperparameter_arrays_are_checked(name: str) -> None:
    contract.test_per_run_hyperparameter_arrays_are_checked(name)


def test_optimizers_pickle(name: str) -> None:
    contract.test_optimizers_pickle(name)


@pytest.mark.parametrize(("dtype", "x64"), compile_checks.PRECISIONS)
def test_jax_jit_step_equals_eager_numpy(name: str, dtype: Any, x64: bool) -> None:
    compile_checks.test_jax_jit_step_equals_eager_numpy(name, dtype, x64)


@pytest.mark.parametrize(("dtype", "x64"), compile_checks.PRECISIONS)
def test_jax_scan_200_steps_equals_eager_numpy(name: str, dtype: Any, x64: bool) -> None:
    compile_checks.test_jax_scan_200_steps_equals_eager_numpy(name, dtype, x64)


@pytest.mark.filterwarnings(
    "ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning",
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
)
def test_torch_compile_compiles_once(name: str) -> None:
    compile_checks.test_torch_compile_compiles_once(name)


# ---------------------------------------------------------------------------------------------
# Each transform against its formula


def _one_step(opt: po.Optimizer, params: Any, grads: Any, loss: Any = None, bn: int = 0) -> Any:
    state = opt.init(params, batch_ndim=bn)
    return opt.step(params, grads, state, loss=loss)


def test_clip_by_global_norm_per_run(xp: Any) -> None:
    """Run 0 (norm 5) is clipped to norm 1, run 1 (norm 0.5) is left alone; the norm is taken
    over the whole tree."""
    params = [xp.zeros((2, 2), dtype=xp.float64), xp.zeros((2, 1), dtype=xp.float64)]
    grads = [xp.asarray([[3.0, 0.0], [0.3, 0.0]], dtype=xp.float64),
             xp.asarray([[4.0], [0.4]], dtype=xp.float64)]
    new, _ = _one_step(po.chain(po.clip_by_global_norm(1.0), po.sgd(lr=1.0)), params, grads, bn=1)
    np.testing.assert_allclose(to_numpy(new[0]), [[-0.6, 0.0], [-0.3, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(to_numpy(new[1]), [[-0.8], [-0.4]], rtol=1e-15)


def test_clip_by_value_per_element_and_per_run(xp: Any) -> None:
    params = xp.zeros((2, 3), dtype=xp.float64)
    grads = xp.asarray([[-2.0, 0.5, 3.0], [-2.0, 0.5, 3.0]], dtype=xp.float64)
    limits = xp.asarray([1.0, 2.5], dtype=xp.float64)
    new, _ = _one_step(po.chain(po.clip_by_value(limits), po.sgd(lr=1.0)), params, grads, bn=1)
    np.testing.assert_array_equal(to_numpy(new), [[1.0, -0.5, -1.0], [2.0, -0.5, -2.5]])


def test_coupled_weight_decay_changes_loss_and_gradient_together(xp: Any) -> None:
    """chain(coupled_weight_decay(λ), bbi) is BBI on F + λ/2|θ|² with gradient g + λθ."""
    lam = 0.3
    params = {k: xp.asarray(v, dtype=xp.float64) for k, v in X0.items()}
    loss, grads = loss_and_grads(xp, params, 0)
    chained, state = _one_step(po.chain(po.coupled_weight_decay(lam), po.bbi(lr=0.1)),
                               params, grads, loss)
    sq = sum(xp.sum(v * v) for v in params.values())
    by_hand, by_hand_state = _one_step(
        po.bbi(lr=0.1), params, {k: grads[k] + lam * params[k] for k in grads},
        loss + 0.5 * lam * sq,
    )
    for key in params:
        np.testing.assert_allclose(to_numpy(chained[key]), to_numpy(by_hand[key]), rtol=1e-14)
    # The energy is that of the regularised potential (E = V0 + δE with V0 = F + λ/2|θ|²).
    np.testing.assert_allclose(to_numpy(state.energy), to_numpy(loss + 0.5 * lam * sq),
                               rtol=1e-14)
    np.testing.assert_allclose(to_numpy(state.energy), to_numpy(by_hand_state.energy), rtol=1e-15)


def test_decoupled_weight_decay_shrinks_before_the_step(xp: Any) -> None:
    params = xp.asarray([1.0, -2.0], dtype=xp.float64)
    grads = xp.asarray([0.5, 0.5], dtype=xp.float64)
    new, _ = _one_step(po.chain(po.decoupled_weight_decay(0.1), po.sgd(lr=0.2)), params, grads)
    np.testing.assert_allclose(to_numpy(new), [0.9 - 0.1, -1.8 - 0.1], rtol=1e-15)


def test_masked_transforms_only_the_selected_leaves() -> None:
    params = {"w": np.ones(3), "b": np.ones(2)}
    grads = {"w": np.zeros(3), "b": np.zeros(2)}
    opt = po.chain(po.masked(po.coupled_weight_decay(0.5), {"w": True, "b": False}),
                   po.sgd(lr=1.0))
    new, _ = _one_step(opt, params, grads)
    np.testing.assert_array_equal(new["w"], 0.5 * np.ones(3))
    np.testing.assert_array_equal(new["b"], np.ones(2))
    with pytest.raises(ValueError, match="structure of the parameters"):
        opt.init({"w": np.ones(3)})
    with pytest.raises(TypeError, match="bools"):
        po.masked(po.coupled_weight_decay(0.5), {"w": 1.0})


def test_masked_global_norm_is_over_the_selected_leaves() -> None:
    params = {"w": np.zeros(2), "b": np.zeros(1)}
    grads = {"w": np.array([3.0, 4.0]), "b": np.array([100.0])}
    opt = po.chain(po.masked(po.clip_by_global_norm(1.0), {"w": True, "b": False}),
                   po.sgd(lr=1.0))
    new, _ = _one_step(opt, params, grads)
    np.testing.assert_allclose(new["w"], [-0.6, -0.8], rtol=1e-15)
    np.testing.assert_array_equal(new["b"], [-100.0])


# ---------------------------------------------------------------------------------------------
# The non-finite guard


def _guarded_runs(xp: Any, optimizer: po.Optimizer, bad: dict[int, tuple[int, str]], steps: int):
    """Three runs; at step t run k gets a NaN / inf gradient or loss (``bad[t] = (k, what)``).
    Returns the parameters and states after each step."""
    params = {k: xp.asarray(v, dtype=xp.float64) for k, v in start((3,)).items()}
    state = optimizer.init(params, batch_ndim=1)
    out = []
    for t in range(steps):
        loss, grads = loss_and_grads(xp, params, 1)
        if t in bad:
            k, what = bad[t]
            value = float("nan") if what.endswith("nan") else float("inf")
            hit = xp.asarray(np.arange(3) == k)
            if what.startswith("loss"):
                loss = xp.where(hit, value, loss)
            else:
                grads["w"] = xp.where(hit[:, None], value, grads["w"])
        params, state = optimizer.step(params, grads, state, loss=loss)
        out.append((params, state))
    return out


@pytest.mark.parametrize("base", ["heavy_ball", "bbi", "ecdsep", "gravity"])
def test_guard_skips_per_run_and_counts(xp: Any, base: str) -> None:
    """A skipped run keeps its parameters and whole state (count included), the others step
    as if nothing happened; ``skipped`` counts per run. No NaN, no warning (warnings are
    errors in the tests)."""
    make = lambda: contract.build(base)  # noqa: E731
    bad = {1: (0, "grad_nan"), 2: (2, "loss_inf"), 3: (0, "grad_inf"), 5: (1, "loss_nan")}
    if not make().needs_loss:
        bad[2] = (2, "grad_inf")  # the loss is still tested when given: keep the schedule simple
    guarded = _guarded_runs(xp, po.chain(po.non_finite_guard(), make()), bad, 7)
    clean = _guarded_runs(xp, make(), {}, 7)
    skips = np.zeros(3, dtype=int)
    for t in range(7):
        params, state = guarded[t]
        if t in bad:
            k = bad[t][0]
            skips[k] += 1
            before_p, before_s = guarded[t - 1]
            for key in params:
                np.testing.assert_array_equal(to_numpy(params[key])[k],
                                              to_numpy(before_p[key])[k])
            for field, new, old in zip(state._fields, state, before_s, strict=True):
                for a, b in zip(*((v if isinstance(v, tuple) else (v,)) for v in (new, old)),
                                strict=True):
                    if field != "skipped":
                        np.testing.assert_array_equal(to_numpy(a)[k], to_numpy(b)[k], field)
        np.testing.assert_array_equal(to_numpy(state.skipped), skips)
        np.testing.assert_array_equal(to_numpy(state.count), t + 1 - skips)
        for key in params:
            assert np.all(np.isfinite(to_numpy(params[key])))
    # Run 1 was skipped only at step 5: until then it equals the unguarded run.
    for t in range(5):
        for key in X0:
            np.testing.assert_array_equal(to_numpy(guarded[t][0][key])[1],
                                          to_numpy(clean[t][0][key])[1])


@pytest.mark.filterwarnings(
    "ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning",
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
)
def test_guard_under_jit_and_torch_compile() -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    opt = po.chain(po.non_finite_guard(), po.heavy_ball(lr=0.1, momentum=0.5))
    x = jnp.asarray([[1.0, 2.0], [3.0, 4.0]])
    state = opt.init(x, batch_ndim=1)
    g = jnp.asarray([[0.5, jnp.nan], [0.5, 0.5]])
    new_x, new_state = jax.jit(opt.step)(x, g, state)
    np.testing.assert_array_equal(np.asarray(new_x[0]), [1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(new_state.skipped), [1, 0])
    np.testing.assert_array_equal(np.asarray(new_state.count), [0, 1])
    torch = pytest.importorskip("torch")
    torch._dynamo.reset()
    step = torch.compile(opt.step, fullgraph=True)
    tx = torch.asarray(np.array(x))
    t_state = opt.init(tx, batch_ndim=1)
    t_new, t_state = step(tx, torch.asarray(np.array(g)), t_state)
    np.testing.assert_array_equal(t_new.numpy(), np.asarray(new_x))
    np.testing.assert_array_equal(t_state.skipped.numpy(), [1, 0])


# ---------------------------------------------------------------------------------------------
# The weight-decay keywords are the transform


@pytest.mark.parametrize(("factory", "hp"), [
    (po.coolmomentum, {"lr": 0.05, "rho0": 0.9, "cool_steps": 8}),
    (po.ecdsep, {"lr": 0.1, "eta": 2.5, "nu": 0.2, "delta_e": 1.0, "f0": 0.1, "seed": 9}),
])
def test_weight_decay_keyword_is_the_coupled_transform(factory: Any, hp: dict) -> None:
    keyword = factory(**hp, weight_decay=0.05)
    chained = po.chain(po.coupled_weight_decay(0.05), factory(**hp))
    core, transforms = optimizer_parts(keyword)
    assert [t.name for t in transforms] == ["coupled_weight_decay"]
    assert core._update_rule is factory(**hp)._update_rule  # the rule of the family, as is
    assert keyword.hyperparameters["weight_decay"] == 0.05
    assert repr(keyword).startswith(f"{factory.__name__}(") and "weight_decay=0.05" in repr(keyword)
    assert keyword.state_type is core.state_type  # a stateless transform adds no field
    a = contract.trajectory(keyword, NP, start(), 6)
    b = contract.trajectory(chained, NP, start(), 6)
    for x, y in zip(a, b, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    plain = factory(**hp)
    assert optimizer_parts(plain)[1] == () and plain.hyperparameters["weight_decay"] == 0.0
    copy = pickle.loads(pickle.dumps(keyword))
    assert repr(copy) == repr(keyword)


# ---------------------------------------------------------------------------------------------
# Structure and errors


def test_nested_chains_flatten_and_read_as_one() -> None:
    inner = po.chain(po.clip_by_value(1.0), po.sgd(lr=0.1))
    outer = po.chain(po.non_finite_guard(), inner)
    assert [t.name for t in outer.transforms] == ["non_finite_guard", "clip_by_value"]
    assert outer.optimizer.name == "sgd" and outer.name == "sgd"
    assert outer.hyperparameters["lr"] == 0.1
    assert repr(outer) == "chain(non_finite_guard(), clip_by_value(limit=1.0), sgd(lr=0.1))"
    state = outer.init(np.ones(2))
    assert type(state).__name__ == "ChainedSGDState" and state._fields == ("count", "skipped")
    assert pickle.loads(pickle.dumps(state)) == state


def test_chain_errors() -> None:
    with pytest.raises(TypeError, match="optimizer"):
        po.chain()
    with pytest.raises(TypeError, match="Optimizer"):
        po.chain(po.clip_by_value(1.0))
    with pytest.raises(TypeError, match="gradient transforms"):
        po.chain(po.sgd(lr=0.1), po.sgd(lr=0.1))
    with pytest.raises(ValueError, match="skipped"):
        po.chain(po.non_finite_guard(), po.non_finite_guard(), po.sgd(lr=0.1))
    for bad in (lambda: po.clip_by_global_norm(0.0), lambda: po.clip_by_value(-1.0),
                lambda: po.coupled_weight_decay(-0.1), lambda: po.decoupled_weight_decay(1.0)):
        with pytest.raises(ValueError):
            bad()


def test_transform_arrays_are_checked_against_the_ensemble() -> None:
    opt = po.chain(po.clip_by_value(np.array([1.0, 2.0])), po.sgd(lr=0.1))
    with pytest.raises(ValueError, match="clip_by_value"):
        opt.init(np.ones((3, 2)), batch_ndim=1)


def test_guard_checks_a_given_loss_for_an_optimizer_without_one() -> None:
    opt = po.chain(po.non_finite_guard(), po.sgd(lr=0.1))
    x = np.ones((2, 2))
    new, state = opt.step(x, np.ones((2, 2)), opt.init(x, batch_ndim=1),
                          loss=np.array([np.nan, 1.0]))
    np.testing.assert_array_equal(new, [[1.0, 1.0], [0.9, 0.9]])
    np.testing.assert_array_equal(state.skipped, [1, 0])
    assert C  # the contract coefficients are shared with this module's workloads
