"""Per-run scalars of a compiled step are made once for all leaves; Adam's compiled step keeps
its overflow safety.

Issue 21's speed target: a compiled Adam step of a 6-leaf MLP made 30 one-element buffers
(every ``StepContext.leaf`` call materialised its value again), and divided twice per element
by bias corrections. ``StepContext.share`` makes one buffer per value and dtype, and Adam folds
the corrections into two per-run scalars. The timings are in ``benchmarks/bench_adapters.py``;
these tests check the structure and the numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import physopt_ref as po

pytestmark = pytest.mark.filterwarnings(
    "ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning",
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
)


def _stacks(opt: po.Optimizer, n_leaves: int) -> int:
    """``torch.stack`` calls (one per materialised scalar) in the traced step of ``opt``."""
    torch = pytest.importorskip("torch")
    counted: list[int] = []

    def backend(gm: Any, example_inputs: Any) -> Any:
        counted.append(sum(1 for node in gm.graph.nodes if node.target is torch.stack))
        return gm.forward

    params = [torch.linspace(-1.0, 1.0, 5 + i) for i in range(n_leaves)]
    grads = [p * 0.5 for p in params]
    state = opt.init(params)
    torch._dynamo.reset()
    step = torch.compile(lambda p, g, s: opt.step(p, g, s), backend=backend, fullgraph=True)
    step(params, grads, state)
    return counted[0]


@pytest.mark.parametrize("name", ["adam", "heavy_ball", "sgd", "nesterov"])
def test_compiled_step_materialises_each_scalar_once(name: str) -> None:
    """The number of materialised scalars does not grow with the number of leaves (it was one
    per leaf and value: 30 for Adam on six leaves)."""
    torch = pytest.importorskip("torch")
    hp: dict[str, Any] = {"lr": torch.tensor(1e-3)}
    if name == "adam":
        hp |= {"b1": torch.tensor(0.9), "b2": torch.tensor(0.999)}
    elif name != "sgd":
        hp["momentum"] = torch.tensor(0.9)
    opt = getattr(po, name)(**hp)
    few, many = _stacks(opt, 2), _stacks(opt, 6)
    assert few == many
    assert 0 < many <= 5


@pytest.mark.parametrize("big", [1e30, "max"])
def test_compiled_adam_moves_lr_with_gradients_whose_square_overflows(big: Any) -> None:
    """po.compile(adam) on torch float32: gradients up to finfo.max move each parameter by lr
    per step (to 1e-4: ε moves the 1e-3 gradient's step by 1e-5), the state stays finite, and
    the step equals the eager one."""
    torch = pytest.importorskip("torch")
    value = float(torch.finfo(torch.float32).max) if big == "max" else big
    lr = 0.01
    opt = po.adam(lr=lr)
    step = po.compile(opt)
    x = torch.zeros(4, dtype=torch.float32)
    state = opt.init([x])
    eager_x, eager_state = [x.clone()], opt.init([x.clone()])
    params = [x]
    g = [torch.tensor([value, -value, 1e-3, -0.5], dtype=torch.float32)]
    for k in range(1, 4):
        params, state = step(params, g, state)
        eager_x, eager_state = opt.step(eager_x, g, eager_state)
        got = params[0].numpy()
        np.testing.assert_allclose(got, [-lr * k, lr * k, -lr * k, lr * k], rtol=1e-4)
        np.testing.assert_allclose(got, eager_x[0].numpy(), rtol=2e-6)
        assert np.all(np.isfinite(state.rms[0].numpy()))
        np.testing.assert_allclose(state.rms[0].numpy(), eager_state.rms[0].numpy(), rtol=2e-6)


def test_share_is_a_no_op_outside_torch_compile() -> None:
    """Eager steps do not use the shared buffers: leaf() casts as before."""
    import array_api_compat.numpy as xp

    from physopt_ref.core.context import StepContext

    x = np.zeros(3, dtype=np.float32)
    ctx = StepContext(xp, np.zeros((), dtype=np.int32), x)
    value = np.asarray(0.5, dtype=np.float64)
    ctx.share([value], [x])
    out = ctx.leaf(value, x)
    assert out.dtype == np.float32 and float(out) == 0.5
