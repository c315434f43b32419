"""Donated steps (``step(..., donate=True)``): the pure step's bits, in the caller's arrays.

For every registered optimizer on every backend that can write in place (NumPy,
array-api-strict, torch, CuPy with a GPU), on the contract quadratic of ``test_contract``, one
run and an ensemble of two: each donated step equals the pure step bit for bit, parameters and
state, and returns the very arrays it was given. The chunk size is made tiny so that the
element-wise rules run over many chunks (leaves cut in pieces, small leaves grouped). Then the
refusals (JAX, read-only arrays, NumPy scalars, shared buffers) and the corner cases (a
gradient that is the parameter array, a non-contiguous leaf, Dyna's per-leaf fan-in, torch
parameters that require grad).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from physopt_ref.backends import to_numpy

import physopt_ref
from physopt_ref import registered_names, tree_leaves
from physopt_ref.core import donate as _donate

from .test_contract import build, loss_and_grads, start

NAMES = registered_names()
ELEMENTWISE = {"sgd", "heavy_ball", "nesterov", "adam", "coolmomentum", "dyna", "dyna_prototype",
               "dynamic_relaxation"}


def _bits(x: Any) -> np.ndarray:
    return np.asarray(to_numpy(x))


def _state_leaves(state: Any) -> list[Any]:
    return tree_leaves(list(state))


def _assert_same_bits(a: Any, b: Any, what: str) -> None:
    a, b = _bits(a), _bits(b)
    assert a.dtype == b.dtype and a.shape == b.shape, what
    np.testing.assert_array_equal(a, b, err_msg=what)


def _donated_objects(state: Any, params: dict[str, Any]) -> list[int]:
    """ids of the arrays a donated step must hand back: leaves and leaf-shaped state arrays."""
    leaves = tree_leaves(params)
    out = [id(p) for p in leaves]
    for value in list(state)[1:]:
        if isinstance(value, tuple):
            out += [id(a) for a, p in zip(value, leaves, strict=True) if a.shape == p.shape]
    return out


def _compare(xp: Any, name: str, batch_ndim: int, steps: int = 8) -> None:
    batch = (2,) if batch_ndim else ()
    opt = build(name)
    pure = {k: xp.asarray(v) for k, v in start(batch).items()}
    donated = {k: xp.asarray(np.array(v, copy=True)) for k, v in start(batch).items()}
    s_pure = opt.init(pure, batch_ndim=batch_ndim)
    s_don = opt.init(donated, batch_ndim=batch_ndim)
    for t in range(steps):
        loss, grads = loss_and_grads(xp, pure, batch_ndim)
        pure, s_pure = opt.step(pure, grads, s_pure, loss=loss)
        loss, grads = loss_and_grads(xp, donated, batch_ndim)
        before = _donated_objects(s_don, donated)
        donated, s_don = opt.step(donated, grads, s_don, loss=loss, donate=True)
        assert _donated_objects(s_don, donated) == before, f"{name}: new arrays at step {t + 1}"
        for key in pure:
            _assert_same_bits(donated[key], pure[key], f"{name} step {t + 1} leaf {key}")
        for i, (a, b) in enumerate(zip(_state_leaves(s_don), _state_leaves(s_pure), strict=True)):
            _assert_same_bits(a, b, f"{name} step {t + 1} state leaf {i}")


@pytest.mark.parametrize("chunk", [2, _donate.CHUNK_ELEMENTS], ids=["tiny-chunks", "default"])
@pytest.mark.parametrize("batch_ndim", [0, 1], ids=["single", "ensemble"])
@pytest.mark.parametrize("name", NAMES)
def test_donated_step_equals_pure_step_bit_for_bit(
    xp: Any, name: str, batch_ndim: int, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if xp.__name__.startswith("jax"):
        opt = build(name)
        params = {k: xp.asarray(v) for k, v in start().items()}
        loss, grads = loss_and_grads(xp, params, 0)
        with pytest.raises(TypeError, match=r"immutable.*physopt_ref\.compile"):
            opt.step(params, grads, opt.init(params), loss=loss, donate=True)
        return
    monkeypatch.setattr(_donate, "CHUNK_ELEMENTS", chunk)
    _compare(xp, name, batch_ndim)


def test_elementwise_flags() -> None:
    """The rules that chunk are exactly those without reductions over the parameters."""
    flagged = {name for name in NAMES if build(name).elementwise}
    assert flagged == ELEMENTWISE & set(NAMES)


def test_chunk_plan_cuts_large_leaves_and_groups_small_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_donate, "CHUNK_ELEMENTS", 10)
    leaves = [np.zeros(25), np.zeros(3), np.zeros((2, 2)), np.zeros(4), np.zeros(9)]
    plan = _donate._chunk_plan(leaves, 0)
    assert plan == [[(0, 0, 10)], [(0, 10, 20)], [(0, 20, 25)], [(1, 0, 3), (2, 0, 4)],
                    [(3, 0, 4)], [(4, 0, 9)]]
    assert _donate._chunk_plan([np.zeros(5), np.zeros(5)], 0) is None  # one round: no chunks
    assert _donate._chunk_plan([np.zeros((4, 30))], 1) == [[(0, 0, 2)]] + [
        [(0, a, a + 2)] for a in range(2, 30, 2)
    ]
    assert _donate._chunk_plan([np.zeros((4,)), np.zeros((4, 30))], 1) is None  # no event axis


def _side_by_side(
    opt: physopt_ref.Optimizer, pure: Any, donated: Any, steps: int, grad: Any
) -> tuple[Any, Any, Any, Any]:
    """``steps`` pure and donated steps from the same values (``grad(x)`` gives the gradient
    tree, the loss is 1.5 + |x|²); the donated step must return the arrays it was given."""

    def loss(x: Any) -> float:
        return 1.5 + sum(float(np.sum(np.asarray(a) ** 2)) for a in tree_leaves(x))

    s_pure, s_don = opt.init(pure), opt.init(donated)
    for _ in range(steps):
        pure, s_pure = opt.step(pure, grad(pure), s_pure, loss=loss(pure))
        before = [id(a) for a in tree_leaves(donated)]
        donated, s_don = opt.step(donated, grad(donated), s_don, loss=loss(donated), donate=True)
        assert [id(a) for a in tree_leaves(donated)] == before
    for a, b in zip(tree_leaves(donated), tree_leaves(pure), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_state_leaves(s_don), _state_leaves(s_pure), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return pure, s_pure, donated, s_don


def test_large_leaves_with_the_default_chunk() -> None:
    """Several default-sized chunks and a remainder, float32, bits equal."""
    n = 3 * _donate.CHUNK_ELEMENTS + 17
    x0 = np.random.default_rng(1).normal(size=n).astype(np.float32)
    for name in ("adam", "heavy_ball", "dyna"):
        _side_by_side(build(name), x0.copy(), x0.copy(), 3, lambda x: 0.5 * x)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_that_is_the_parameter_array(name: str) -> None:
    """``grads`` is only read, and may be the very array being overwritten."""
    x = np.linspace(-1.0, 1.0, 11)
    _side_by_side(build(name), x.copy(), x.copy(), 4, lambda x: x)


def test_non_contiguous_leaves_are_written_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_donate, "CHUNK_ELEMENTS", 4)
    base = np.arange(24.0).reshape(4, 6) / 24.0
    donated = np.array(base, copy=True).T  # a transposed view: no flat view, whole-array writes
    opt = physopt_ref.heavy_ball(lr=0.1, momentum=0.5)
    _side_by_side(opt, base.T.copy(), donated, 3, lambda x: 2.0 * x)


def test_dyna_per_leaf_fan_in_under_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each chunk uses the fan-in of its whole leaf (a tree of ints, and the default)."""
    monkeypatch.setattr(_donate, "CHUNK_ELEMENTS", 3)
    params = {"a": np.linspace(0.1, 1.0, 10), "b": np.linspace(-1.0, 0.5, 6).reshape(2, 3),
              "c": np.array([0.3, -0.2])}
    for fan_in in (None, {"a": 7, "b": 2, "c": 5}):
        pure = {k: v.copy() for k, v in params.items()}
        donated = {k: v.copy() for k, v in params.items()}
        _side_by_side(physopt_ref.dyna(fan_in=fan_in), pure, donated, 4,
                      lambda x: {k: 2.0 * v for k, v in x.items()})


# ---------------------------------------------------------------------------------------------
# Refusals


def test_jax_refuses_eager_donation() -> None:
    jnp = pytest.importorskip("jax.numpy")
    opt = physopt_ref.heavy_ball(lr=0.1)
    x = jnp.ones(3)
    state = opt.init(x)
    with pytest.raises(TypeError, match=r"immutable.*physopt_ref\.compile"):
        opt.step(x, x, state, donate=True)


def test_read_only_arrays_are_refused_untouched() -> None:
    opt = physopt_ref.heavy_ball(lr=0.1)
    x = np.ones(5)
    state = opt.init(x)
    frozen = x.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=r"params leaf 0 is read-only"):
        opt.step(frozen, frozen, state, donate=True)
    state.previous[0].flags.writeable = False
    with pytest.raises(ValueError, match=r"state\.previous\[0\] is read-only"):
        opt.step(x, x, state, donate=True)
    np.testing.assert_array_equal(x, np.ones(5))
    np.testing.assert_array_equal(state.previous[0], np.zeros(5))


def test_numpy_scalars_are_refused() -> None:
    opt = physopt_ref.sgd(lr=0.1)
    x = np.float64(2.0)  # what a pure NumPy step returns for a 0-d leaf
    state = opt.init(np.asarray(x))
    with pytest.raises(TypeError, match="immutable NumPy scalar"):
        opt.step(x, x, state, donate=True)


def test_shared_buffers_are_refused() -> None:
    opt = physopt_ref.heavy_ball(lr=0.1)
    x = np.ones(4)
    state = opt.init(x)
    shared = state._replace(previous=(x,))
    with pytest.raises(ValueError, match="distinct buffers"):
        opt.step(x, x, shared, donate=True)


def test_other_namespaces_are_refused() -> None:
    class FakeNamespace:
        __name__ = "dask.array"

    with pytest.raises(TypeError, match="cannot: use the pure step"):
        _donate.check_donatable(FakeNamespace(), [np.ones(2)], [])


def test_torch_parameters_that_require_grad() -> None:
    torch = pytest.importorskip("torch")
    opt = physopt_ref.adam(lr=0.1)
    w = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 7))
    pure = w.detach().clone()
    s_pure, s_don = opt.init(pure), opt.init(w.detach())
    for _ in range(3):
        pure, s_pure = opt.step(pure, 2.0 * pure, s_pure)
        out, s_don = opt.step(w, 2.0 * w.detach(), s_don, donate=True)
        assert out is w and w.requires_grad and w.grad_fn is None
    assert torch.equal(w.detach(), pure)


def test_torch_expanded_tensors_are_refused() -> None:
    torch = pytest.importorskip("torch")
    opt = physopt_ref.sgd(lr=0.1)
    x = torch.ones(1).expand(4)
    with pytest.raises(ValueError, match="expanded tensor"):
        opt.step(x, x, opt.init(x), donate=True)


def test_pure_step_is_the_default_and_untouched(xp: Any) -> None:
    """``donate`` defaults to False: the inputs keep their values (see also test_contract)."""
    opt = build("adam")
    params = {k: xp.asarray(v) for k, v in start().items()}
    before = {k: _bits(v).copy() for k, v in params.items()}
    state = opt.init(params)
    loss, grads = loss_and_grads(xp, params, 0)
    new, _ = opt.step(params, grads, state, loss=loss)
    for key in params:
        np.testing.assert_array_equal(_bits(params[key]), before[key])
        assert new[key] is not params[key]



# ---------------------------------------------------------------------------------------------
# Chains (physopt_ref.chain): the chained rule donates like any rule


def _chains() -> dict[str, physopt_ref.Optimizer]:
    po = physopt_ref
    return {
        # element-wise transforms in front of element-wise rules: chunked
        "clip-decay-heavy-ball": po.chain(po.clip_by_value(0.7), po.decoupled_weight_decay(0.01),
                                          po.heavy_ball(lr=0.1, momentum=0.8)),
        "coupled-adam": po.chain(po.coupled_weight_decay(1e-3), po.adam(lr=0.05)),
        # reductions and per-leaf masks: whole arrays; the guard returns its own count
        "guard-norm-adam": po.chain(po.non_finite_guard(), po.clip_by_global_norm(0.5),
                                    po.adam(lr=0.05)),
        "masked-dyna": po.chain(po.masked(po.coupled_weight_decay(0.1), {"a": True, "b": False}),
                                po.dyna()),
        "coupled-ecdsep": po.chain(po.coupled_weight_decay(0.01),
                                   po.ecdsep(lr=0.05, eta=1.5, nu=0.1)),
    }


def test_chain_elementwise_flags() -> None:
    """A chain chunks only when its rule and every transform are element-wise and the loss is
    not read (coupled weight decay adds a tree norm to the loss of the energy-conserving)."""
    flags = {name: opt.elementwise for name, opt in _chains().items()}
    assert flags == {"clip-decay-heavy-ball": True, "coupled-adam": True,
                     "guard-norm-adam": False, "masked-dyna": False, "coupled-ecdsep": False}


@pytest.mark.parametrize("name", list(_chains()))
def test_chains_donate_bit_for_bit(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ensemble of three on a tree, tiny chunks; the guard's run 1 sees a NaN gradient at
    step 2 and is skipped (its count and skipped fields come back from the rule)."""
    monkeypatch.setattr(_donate, "CHUNK_ELEMENTS", 4)
    opt = _chains()[name]
    rng = np.random.default_rng(3)
    x0 = {"a": rng.normal(size=(3, 5)), "b": rng.normal(size=(3, 2, 3))}
    pure = {k: v.copy() for k, v in x0.items()}
    donated = {k: v.copy() for k, v in x0.items()}
    s_pure, s_don = opt.init(pure, batch_ndim=1), opt.init(donated, batch_ndim=1)

    def grads(x: Any, t: int) -> dict[str, Any]:
        g = {k: 2.0 * v + 0.1 for k, v in x.items()}
        if t == 2:
            g["a"][1, 0] = np.nan
        return g

    def loss(x: Any) -> np.ndarray:
        return 1.5 + sum(np.sum(v.reshape(3, -1) ** 2, axis=1) for v in x.values())

    for t in range(5):
        if t == 2 and "guard" not in name:
            continue
        pure, s_pure = opt.step(pure, grads(pure, t), s_pure, loss=loss(pure))
        ids = _donated_objects(s_don, donated)
        donated, s_don = opt.step(donated, grads(donated, t), s_don, loss=loss(donated),
                                  donate=True)
        assert _donated_objects(s_don, donated) == ids
        for k in pure:
            _assert_same_bits(donated[k], pure[k], f"{name} step {t} leaf {k}")
        for i, (a, b) in enumerate(zip(_state_leaves(s_don), _state_leaves(s_pure), strict=True)):
            _assert_same_bits(a, b, f"{name} step {t} state leaf {i}")
    if "guard" in name:
        assert s_don.skipped.tolist() == [0, 1, 0] and s_don.count.tolist() == [5, 4, 5]
