"""Generic tests every registered optimizer must pass (the optimizer contract of DESIGN.md).

They iterate :data:`physopt_ref.REGISTRY`, so a new optimizer is covered by registering it.
The workload is a small quadratic on a two-leaf tree, ``{"w": (3,), "b": (2, 2)}``, with
``loss = ½ Σ c x² + ½`` per run (positive, as the energy-conserving family needs) and
``grads = c x``; each optimizer runs with its registry ``test_hyperparameters``.

The checks themselves live in the installed kit, :mod:`physopt_ref.testing` (users run the same
ones on their own optimizers); a failure reports the property, the measured margin and the input.
The kit's hypothesis-driven versions (random trees, ensembles, backends, hyperparameters) are in
``test_testing.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import physopt_ref
from physopt_ref import REGISTRY, registered_names
from physopt_ref import testing as kit

NAMES = registered_names()
NP = kit.NP

# The contract workload lives in the kit (physopt_ref.testing.CONTRACT_WORKLOAD); these names
# stay for the tests that import them.
C = kit.CONTRACT_WORKLOAD.curvature
X0 = kit.CONTRACT_WORKLOAD.x0
start = kit.CONTRACT_WORKLOAD.start
loss_and_grads = kit.CONTRACT_WORKLOAD.loss_and_grads


def subject(name: str) -> kit.Subject:
    """A registered optimizer with its registry test hyperparameters, for the kit's checks."""
    return kit.Subject.registered(name)


def build(name: str, **overrides: Any) -> physopt_ref.Optimizer:
    return subject(name).build(**overrides)


def trajectory(
    opt: physopt_ref.Optimizer, xp: Any, x0: dict[str, np.ndarray], steps: int, *,
    batch_ndim: int = 0, dtype: Any = None,
) -> list[dict[str, np.ndarray]]:
    """The kit's run on the contract workload, each step's parameters as a dict (NumPy)."""
    keys = sorted(X0)  # the tree-flatten order of a dict
    return [dict(zip(keys, leaves, strict=True))
            for leaves in kit.trajectory(opt, xp, x0, steps, batch_ndim=batch_ndim, dtype=dtype)]


def test_registry_is_populated() -> None:
    assert {"sgd", "heavy_ball", "nesterov", "adam"} <= set(NAMES)
    for name in NAMES:
        entry = REGISTRY[name]
        assert entry.name == name
        assert isinstance(entry.factory(**entry.test_hyperparameters), physopt_ref.Optimizer)
        assert getattr(physopt_ref, name) is entry.factory, "registry name == public factory name"


@pytest.mark.parametrize("name", NAMES)
def test_purity_with_readonly_inputs(name: str) -> None:
    """A step never writes to params, grads or state (read-only NumPy arrays would raise)."""
    kit.check_purity(subject(name)).raise_if_failed()


@pytest.mark.parametrize("name", NAMES)
def test_float32_stays_float32(name: str, xp: Any) -> None:
    kit.check_dtype_kept(subject(name), xp, dtype="float32").raise_if_failed()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_run(name: str) -> None:
    kit.check_determinism(subject(name)).raise_if_failed()


@pytest.mark.parametrize("batch_shape", [(3,), (2, 2)])
@pytest.mark.parametrize("name", NAMES)
def test_ensemble_equals_single_runs(name: str, batch_shape: tuple[int, ...]) -> None:
    """K runs stacked on leading axes == K separate runs (member k: the same seed and member
    index k)."""
    kit.check_ensemble_equals_single_runs(subject(name), batch_shape=batch_shape).raise_if_failed()


@pytest.mark.parametrize("name", NAMES)
def test_backend_matches_numpy_float64(name: str, xp: Any) -> None:
    kit.check_backend_parity(subject(name), xp).raise_if_failed()


@pytest.mark.parametrize("name", NAMES)
def test_zero_gradient_is_finite(name: str) -> None:
    """All-zero gradients (at a flat point) give finite parameters and no warnings."""
    kit.check_zero_gradient_finite(subject(name)).raise_if_failed()


@pytest.mark.parametrize("name", NAMES)
def test_invalid_hyperparameters_are_refused(name: str) -> None:
    kit.check_invalid_hyperparameters_refused(subject(name)).raise_if_failed()


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_inputs_are_refused(name: str) -> None:
    kit.check_mismatched_inputs_refused(subject(name)).raise_if_failed()


@pytest.mark.parametrize("name", NAMES)
def test_single_array_and_list_trees(name: str) -> None:
    """A single array and a list of arrays are accepted as parameter trees."""
    # Element-wise rules do not see how the parameters are split into leaves. (Per-leaf rules --
    # Dyna's fan-in, Gravity's max|G| per tensor, per-leaf random streams -- do.)
    kit.check_tree_kinds(subject(name),
                         elementwise=REGISTRY[name].family == "classic").raise_if_failed()


@pytest.mark.parametrize("name", NAMES)
def test_device_is_kept(name: str) -> None:
    """Parameters on array-api-strict's simulated non-default device stay there, with the state.

    array-api-strict refuses arithmetic across devices, so any array a step creates on the
    default device would raise here.
    """
    kit.check_device_kept(subject(name)).raise_if_failed()


# ---------------------------------------------------------------------------------------------
# Contract v2: state of arrays, fixed structure, saturating count, per-run hyperparameters,
# picklable optimizers, the debug switch.


@pytest.mark.parametrize("name", NAMES)
def test_state_is_arrays_with_a_fixed_structure(name: str, xp: Any) -> None:
    """Only arrays; the count is int32 of the batch shape; nothing changes shape or dtype."""
    kit.check_state_structure(subject(name), xp).raise_if_failed()


@pytest.mark.parametrize("name", NAMES)
def test_count_saturates(name: str) -> None:
    kit.check_count_saturates(subject(name)).raise_if_failed()


SWEEPS = [(n, hp) for n in NAMES for hp in REGISTRY[n].sweep]


@pytest.mark.parametrize(("name", "hp"), SWEEPS, ids=[f"{n}-{h}" for n, h in SWEEPS])
def test_per_run_hyperparameter_equals_separate_runs(name: str, hp: str, xp: Any) -> None:
    """K values of a hyperparameter in one ensemble == K separate runs (a sweep in one array)."""
    kit.check_per_run_hyperparameter(subject(name), hp, REGISTRY[name].sweep[hp],
                                     xp).raise_if_failed()


@pytest.mark.parametrize("name", NAMES)
def test_per_run_hyperparameter_arrays_are_checked(name: str) -> None:
    """Values are range-checked at build time; the shape against the ensemble at init."""
    sweep = REGISTRY[name].sweep
    if not sweep:
        pytest.skip("no per-run hyperparameter")
    hp = next(iter(sweep))
    kit.check_per_run_arrays_checked(subject(name), hp, sweep[hp]).raise_if_failed()


@pytest.mark.parametrize("name", NAMES)
def test_optimizers_pickle(name: str) -> None:
    """An optimizer object pickles (no closures) and the copy takes the same steps."""
    kit.check_pickles(subject(name)).raise_if_failed()


def test_full_checks_run_only_with_the_switch() -> None:
    """Structure, shapes and dtypes are always checked; the state only in debug mode."""
    opt = physopt_ref.heavy_ball(lr=0.1)
    params = start((2,))
    state = opt.init(params, batch_ndim=1)
    foreign = opt.init(start((3,)), batch_ndim=1)  # a state for another ensemble
    _loss, grads = loss_and_grads(NP, params, 1)
    with physopt_ref.debug_checks(True):
        with pytest.raises(ValueError, match="ensemble shape"):
            opt.step(params, grads, foreign)
        opt.step(params, grads, state)
    with physopt_ref.debug_checks(False):
        assert not physopt_ref.checks_enabled()
        with pytest.raises(ValueError, match="structure"):
            opt.step(params, {"w": grads["w"]}, state)
        with pytest.raises(ValueError, match="shape"):
            opt.step(params, {**grads, "w": grads["w"][:, :2]}, state)
    assert physopt_ref.checks_enabled()  # the test session's setting is restored


def test_schedules_trace_and_host_schedules_are_explicit() -> None:
    """A plain callable gets the count as an array; a host schedule gets Python ints."""
    seen: list[Any] = []
    opt = physopt_ref.sgd(lr=lambda t: seen.append(t) or 0.1 / (1.0 + t))
    params = start((2,))
    state = opt.init(params, batch_ndim=1)
    _loss, grads = loss_and_grads(NP, params, 1)
    opt.step(params, grads, state)
    assert isinstance(seen[0], np.ndarray) and seen[0].shape == (2,)
    counts: list[Any] = []
    host = physopt_ref.sgd(lr=physopt_ref.host_schedule(lambda c: counts.append(c) or 0.1))
    params, state = host.step(params, grads, host.init(params, batch_ndim=1))
    assert counts == [0] and all(type(c) is int for c in counts)
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    jparams = {k: jnp.asarray(v) for k, v in start().items()}
    _, jgrads = loss_and_grads(jnp, jparams, 0)
    with pytest.raises(TypeError, match="cannot be traced"):
        jax.jit(host.step)(jparams, jgrads, host.init(jparams))
