"""``physopt_ref.torch``: every registered optimizer as a ``torch.optim.Optimizer``.

* each one trains a small MLP on scikit-learn's digits (3 epochs of minibatches of 128, about
  a second each on 2 cores) and lowers the training loss below 60 % of its start (measured
  ratios 0.05-0.41 with the settings below; every one starts at 2.327);
* its steps equal the functional steps bit for bit (built, as the adapter keeps them, with lr,
  momentum and betas as 0-d tensors), with param groups, and ``state_dict()`` /
  ``load_state_dict()`` continue a run exactly (energies, floors, counters, bounce state with
  their dtypes);
* the step needs no data on the host (it runs on torch's ``meta`` device, which has none), works
  under ``no_grad`` and leaves the parameters without autograd history.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import physopt_ref as po  # noqa: E402
from physopt_ref import REGISTRY  # noqa: E402
from physopt_ref.torch import (  # noqa: E402
    BBI,
    ECDSep,
    HeavyBall,
    PhysicsOptimizer,
    optimizer_class,
)

NAMES = po.registered_names()

#: Settings for the digits MLP (hand-picked: each lowers the loss within 3 epochs).
MLP_SETTINGS = {
    "sgd": dict(lr=0.5), "heavy_ball": dict(lr=0.1, momentum=0.9),
    "nesterov": dict(lr=0.1, momentum=0.9), "adam": dict(lr=0.01), "dyna": dict(gamma=1.0),
    "dyna_prototype": dict(lr=0.01), "dynamic_relaxation": dict(h=1.0, mass=1.0, stiffness=1.0),
    "coolmomentum": dict(lr=0.2, rho0=0.9, cool_steps=30, weight_decay=1e-4),
    "bbi": dict(lr=0.3, delta_e=0.5), "ecdsep": dict(lr=0.3, eta=1.0, nu=1e-3),
    "gravity": dict(lr=1.0),
}


@pytest.fixture(scope="module")
def digits() -> tuple[Any, Any]:
    pytest.importorskip("sklearn")
    from physopt_ref.cli.digits import load_digits_split

    x_tr, y_tr, *_ = load_digits_split(0)
    return torch.asarray(x_tr, dtype=torch.float32), torch.asarray(y_tr)


def mlp() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))


def test_every_registered_optimizer_has_a_class() -> None:
    assert set(MLP_SETTINGS) == set(NAMES)
    for name in NAMES:
        cls = optimizer_class(name)
        assert issubclass(cls, torch.optim.Optimizer) and issubclass(cls, PhysicsOptimizer)
        assert getattr(po.torch, cls.__name__) is cls
    assert BBI.__name__ == "BBI" and ECDSep.__name__ == "ECDSep"


@pytest.mark.parametrize("name", NAMES)
def test_trains_a_small_mlp_on_digits(name: str, digits: tuple[Any, Any]) -> None:
    x, y = digits
    model = mlp()
    opt = optimizer_class(name)(model.parameters(), **MLP_SETTINGS[name])
    loss_fn = torch.nn.CrossEntropyLoss()
    with torch.no_grad():
        start = float(loss_fn(model(x), y))
    order = torch.Generator().manual_seed(1)
    for _ in range(3):
        perm = torch.randperm(len(y), generator=order)
        for i in range(0, len(y), 128):
            idx = perm[i:i + 128]

            def closure(idx: Any = idx) -> Any:
                opt.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                return loss

            opt.step(closure)
    with torch.no_grad():
        end = float(loss_fn(model(x), y))
    assert np.isfinite(end) and end < 0.6 * start, f"{name}: loss {start:.3f} -> {end:.3f}"


# ---------------------------------------------------------------------------------------------
# Equal to the functional steps


def _data() -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(16, 3, generator=g), torch.randn(16, 2, generator=g)


def _model() -> Any:
    torch.manual_seed(5)
    return torch.nn.Linear(3, 2)


def _loss(model: Any, x: Any, y: Any) -> Any:
    return ((model(x) - y) ** 2).mean() + 0.5  # positive, for the energy-conserving family


def _closure(opt: Any, model: Any, x: Any, y: Any) -> Any:
    def closure() -> Any:
        opt.zero_grad()
        loss = _loss(model, x, y)
        loss.backward()
        return loss
    return closure


def as_tensors(hp: dict[str, Any], dtype: Any) -> dict[str, Any]:
    """The hyperparameters a torch scheduler may change (lr, momentum, betas; Dyna's γ,
    dynamic relaxation's h) as the adapter keeps them: 0-d tensors of the compute dtype."""
    return {k: torch.tensor(v, dtype=dtype)
            if k in ("lr", "gamma", "h", "momentum", "b1", "b2")
            and isinstance(v, int | float) and not isinstance(v, bool) else v
            for k, v in hp.items()}


def _functional_run(opt: po.Optimizer, params: list[Any], x: Any, y: Any, steps: int) -> list:
    """The same model, stepped with the functional optimizer (autograd for the gradients)."""
    w, b = (p.detach().clone().requires_grad_(True) for p in params)
    state = opt.init([w.detach(), b.detach()])
    for _ in range(steps):
        loss = (((x @ w.T + b) - y) ** 2).mean() + 0.5
        gw, gb = torch.autograd.grad(loss, [w, b])
        with torch.no_grad():
            (nw, nb), state = opt.step([w.detach(), b.detach()], [gw, gb], state,
                                       loss=loss.detach())
            w.copy_(nw)
            b.copy_(nb)
    return [w.detach(), b.detach()]


@pytest.mark.parametrize("name", NAMES)
def test_steps_equal_the_functional_steps(name: str) -> None:
    x, y = _data()
    model = _model()
    start = [p.detach().clone() for p in model.parameters()]
    hp = REGISTRY[name].test_hyperparameters
    opt = PhysicsOptimizer(model.parameters(), name, **hp)
    for _ in range(8):
        opt.step(_closure(opt, model, x, y))
    want = _functional_run(po.get_optimizer(name, **as_tensors(
        dict(po.get_optimizer(name, **hp).hyperparameters), torch.float32)), start, x, y, 8)
    for got, ref in zip(model.parameters(), want, strict=True):
        assert torch.equal(got.detach(), ref), name
        assert got.is_leaf and got.grad_fn is None and got.requires_grad


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_is_exact(name: str) -> None:
    x, y = _data()
    model = _model()
    hp = REGISTRY[name].test_hyperparameters
    opt = PhysicsOptimizer(model.parameters(), name, **hp)
    for _ in range(5):
        opt.step(_closure(opt, model, x, y))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # plain tensors and data: no pickled code
    clone = _model()
    clone.load_state_dict(saved["model"])
    again = PhysicsOptimizer(clone.parameters(), name, **hp)
    again.load_state_dict(saved["opt"])
    for p, q in zip(model.parameters(), clone.parameters(), strict=True):
        assert opt.state[p].keys() == again.state[q].keys()
        for key, value in opt.state[p].items():
            other = again.state[q][key]
            assert value.dtype == other.dtype and torch.equal(value, other), (name, key)
    for _ in range(5):
        opt.step(_closure(opt, model, x, y))
        again.step(_closure(again, clone, x, y))
    for p, q in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_param_groups_are_separate_trees_with_their_settings() -> None:
    x, y = _data()
    model = _model()
    w0, b0 = (p.detach().clone() for p in model.parameters())
    opt = HeavyBall([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.05}],
                    lr=0.2, momentum=0.5)
    ref_w = po.heavy_ball(lr=0.2, momentum=0.5)
    ref_b = po.heavy_ball(lr=0.05, momentum=0.5)
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    sw, sb = ref_w.init(w.detach()), ref_b.init(b.detach())
    for _ in range(4):
        opt.step(_closure(opt, model, x, y))
        gw, gb = torch.autograd.grad((((x @ w.T + b) - y) ** 2).mean() + 0.5, [w, b])
        with torch.no_grad():
            nw, sw = ref_w.step(w.detach(), gw, sw)
            nb, sb = ref_b.step(b.detach(), gb, sb)
            w.copy_(nw)
            b.copy_(nb)
    assert torch.equal(model.weight.detach(), w.detach())
    assert torch.equal(model.bias.detach(), b.detach())
    assert int(opt.state[model.weight]["count"]) == 4  # each group keeps its own state
    assert int(opt.state[model.bias]["count"]) == 4


def test_energy_conserving_family_is_one_tree() -> None:
    model = _model()
    opt = BBI([{"params": [model.weight]}, {"params": [model.bias]}], lr=0.1)
    x, y = _data()
    opt.step(_closure(opt, model, x, y))
    assert "energy" in opt.state[model.weight] and "energy" not in opt.state[model.bias]
    with pytest.raises(ValueError, match=r"one tree.*same lr"):  # refused when built
        BBI([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.05}], lr=0.1)


def test_lr_scheduler_changes_the_step() -> None:
    x, y = _data()
    model = _model()
    opt = HeavyBall(model.parameters(), lr=0.2, momentum=0.5)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step(_closure(opt, model, x, y))
    scheduler.step()
    assert opt.param_groups[0]["lr"] == 0.1
    before = [p.detach().clone() for p in model.parameters()]
    state = copy.deepcopy([opt.state[p]["previous"] for p in model.parameters()])
    opt.step(_closure(opt, model, x, y))
    ref = po.heavy_ball(lr=0.1, momentum=0.5)
    grads = [p.grad for p in model.parameters()]
    count = opt.state[model.weight]["count"] - 1
    want, _ = ref.step(before, grads, po.MomentumState(count, tuple(state)))
    for p, q in zip(model.parameters(), want, strict=True):
        assert torch.equal(p.detach(), q)


def test_loss_is_required_where_needed_and_errors_are_clear() -> None:
    model = _model()
    opt = ECDSep(model.parameters(), lr=0.1, eta=1.0)
    with pytest.raises(RuntimeError, match=r"needs the loss.*closure"):
        opt.step()
    with pytest.raises(TypeError, match="built optimizer"):
        PhysicsOptimizer(model.parameters(), po.sgd(lr=0.1), lr=0.2)
    with pytest.raises(ValueError, match="unknown optimizer"):
        PhysicsOptimizer(model.parameters(), "not_an_optimizer")
    sgd_state = torch.optim.SGD(model.parameters(), lr=0.1).state_dict()
    with pytest.raises(ValueError, match="not physopt_ref"):
        opt.load_state_dict(sgd_state)
    other = HeavyBall(model.parameters(), lr=0.1).state_dict()
    with pytest.raises(ValueError, match="heavy_ball"):
        opt.load_state_dict(other)


def test_works_under_no_grad_and_with_a_chain() -> None:
    x, y = _data()
    model = _model()
    chained = po.chain(po.non_finite_guard(), po.clip_by_global_norm(0.5),
                       po.bbi(lr=0.1, delta_e=0.2))
    opt = PhysicsOptimizer(model.parameters(), chained)
    with torch.no_grad():
        for _ in range(3):
            opt.step(_closure(opt, model, x, y))  # the closure still gets its gradients
    assert int(opt.state[model.weight]["count"]) == 3
    assert int(opt.state[model.weight]["skipped"]) == 0
    for p in model.parameters():
        assert p.is_leaf and p.grad_fn is None
    for value in opt.state[model.weight].values():
        assert value.grad_fn is None and not value.requires_grad
    sgd = optimizer_class("sgd")(model.parameters(), lr=0.1)
    with torch.no_grad():
        loss = sgd.step()  # no closure needed; gradients from the last backward
    assert loss is None


@pytest.mark.parametrize("name", NAMES)
def test_no_data_read_on_the_host(name: str) -> None:
    """On torch's meta device tensors have shapes but no data: any .item(), bool() or copy to
    the host raises. The whole adapter step runs there."""
    with torch.device("meta"):
        model = _model()
        x, y = _data()
    opt = PhysicsOptimizer(model.parameters(), name, **REGISTRY[name].test_hyperparameters)
    with po.debug_checks(False):  # the debug checks read values on purpose
        for _ in range(3):
            opt.step(_closure(opt, model, x, y))
    assert model.weight.device.type == "meta"


def test_state_dict_with_schedules_loads_with_weights_only() -> None:
    """A library schedule is stored as data; a user's function by name, taken from the loading
    optimizer (torch.load's default weights_only=True reads both)."""
    x, y = _data()
    decay = lambda t: 0.1 / (1.0 + t)  # noqa: E731

    def build_opt(model: Any, lr_bias: Any) -> Any:
        return HeavyBall([{"params": [model.weight]}, {"params": [model.bias], "lr": lr_bias}],
                         lr=decay, momentum=0.5)

    model = _model()
    opt = build_opt(model, po.exponential_decay(0.2, 0.5, 10))
    opt.step(_closure(opt, model, x, y))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    clone = _model()
    clone.load_state_dict(model.state_dict())
    again = build_opt(clone, 0.3)
    again.load_state_dict(saved)
    assert again.param_groups[0]["lr"].fn is decay  # the bound schedule of the lambda
    assert repr(again.param_groups[1]["lr"]) == repr(po.exponential_decay(0.2, 0.5, 10))
    opt.step(_closure(opt, model, x, y))
    again.step(_closure(again, clone, x, y))
    for p, q in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_group_without_weight_decay() -> None:
    """The common torch pattern: decay the weights, not the biases (a group override)."""
    x, y = _data()
    model = _model()
    b0 = model.bias.detach().clone()
    opt = optimizer_class("coolmomentum")(
        [{"params": [model.weight]}, {"params": [model.bias], "weight_decay": 0.0}],
        lr=0.1, cool_steps=10, weight_decay=0.5)
    opt.step(_closure(opt, model, x, y))
    plain = po.coolmomentum(lr=0.1, cool_steps=10)
    want, _ = plain.step(b0, model.bias.grad, plain.init(b0))
    assert torch.equal(model.bias.detach(), want)
    decayed = po.coolmomentum(lr=0.1, cool_steps=10, weight_decay=0.5)
    assert not torch.equal(want, decayed.step(b0, model.bias.grad, decayed.init(b0))[0])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", ["adam", "heavy_ball"])
def test_half_precision_parameters_step_with_float32_hyperparameters(
        name: str, dtype: str) -> None:
    """The scheduled values live in float32 tensors on half-precision parameters: in
    bfloat16 β₂ = 0.999 rounds to 1, which the factory refuses (Adam on bfloat16 parameters
    failed at its first step). The steps equal the functional steps with float32 tensors."""
    kind = getattr(torch, dtype)
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(7, dtype=kind))
    start = p.detach().clone()
    hp = REGISTRY[name].test_hyperparameters
    opt = PhysicsOptimizer([p], name, **hp)
    fn = po.get_optimizer(name, **as_tensors(
        dict(po.get_optimizer(name, **hp).hyperparameters), torch.float32))
    want, state = [start.clone()], fn.init([start])
    for t in range(3):
        g = torch.linspace(-1.0, 1.0 + t, 7, dtype=kind)
        p.grad = g.clone()
        opt.step()
        want, state = fn.step(want, [g], state)
    assert opt._trees_state[0].tensors["lr"].dtype == torch.float32
    assert p.dtype == kind and not torch.equal(p.detach(), start)
    assert torch.equal(p.detach(), want[0])
