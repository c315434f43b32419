"""The torch adapter's compiled step called past Dynamo (``physopt_ref.core.torch_direct``) and
its constants (``PhysicsOptimizer._baked``): the same results as the eager step, and every case
Dynamo's guards caught still caught (issue 21, the adapter's speed)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import physopt_ref as po  # noqa: E402
import physopt_ref.torch as pot  # noqa: E402
from physopt_ref.core.compile import CompiledStep  # noqa: E402

from .test_torch_adapter import _data  # noqa: E402
from .test_torch_adapter import _model as _linear  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)


def _model() -> Any:
    torch.manual_seed(5)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))


def _closure(opt: Any, model: Any, x: Any, y: Any) -> Any:
    def closure() -> Any:
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss.reshape(())  # a new tensor after backward (as Dynamo resumes there)
    return closure


def _direct(opt: Any) -> Any:
    """The tree's DirectStep (the adapter's compiled step)."""
    tree = opt._trees_state[0]
    assert tree.compiled is not None
    return tree.runs[None]._fn


def _pair(make: Any) -> list[tuple[Any, Any]]:
    """(model, optimizer) compiled and eager, from the same start."""
    out = []
    for compiled in (True, False):
        model = _model()
        out.append((model, make(model.parameters(), compiled)))
    return out


def _close(a: Any, b: Any) -> None:
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_the_compiled_step_runs_past_dynamo_and_equals_the_eager_step() -> None:
    """After its first call the step calls inductor's function directly (Dynamo's compiled
    function is not called again), with the same results as the eager step; the state's
    per-parameter tensors are written in place and the count is the step's."""
    x, y = _data()
    (cm, copt), (em, eopt) = _pair(lambda p, c: pot.Adam(p, lr=0.05, compiled=c))
    for _ in range(2):
        copt.step(_closure(copt, cm, x, y))
        eopt.step(_closure(eopt, em, x, y))
    direct = _direct(copt)
    assert direct._plan is not None and direct.direct
    calls = [0]
    through_dynamo = direct._compiled

    def counted(*args: Any) -> Any:
        calls[0] += 1
        return through_dynamo(*args)

    direct._compiled = counted
    mu = [copt.state[p]["mu"] for p in cm.parameters()]
    for _ in range(4):
        copt.step(_closure(copt, cm, x, y))
        eopt.step(_closure(eopt, em, x, y))
    assert calls[0] == 0
    _close(cm, em)
    for p, q, m in zip(cm.parameters(), em.parameters(), mu, strict=True):
        assert copt.state[p]["mu"] is m  # written in place
        torch.testing.assert_close(copt.state[p]["rms"], eopt.state[q]["rms"])
    first = next(iter(cm.parameters()))
    assert int(copt.state[first]["count"]) == 6
    assert all(p.is_leaf and p.requires_grad and p.grad_fn is None for p in cm.parameters())


def test_a_gradient_of_other_strides_goes_through_dynamo() -> None:
    """inductor's code checks sizes and strides before any kernel runs: a gradient laid out
    otherwise (transposed memory) makes the step compile anew through Dynamo, same values."""
    x, y = _data()
    (cm, copt), (em, eopt) = _pair(lambda p, c: pot.HeavyBall(p, lr=0.1, momentum=0.8,
                                                              compiled=c))
    for _ in range(2):
        copt.step(_closure(copt, cm, x, y))
        eopt.step(_closure(eopt, em, x, y))
    assert _direct(copt)._plan is not None
    for model, opt in ((cm, copt), (em, eopt)):
        _closure(opt, model, x, y)()
        weight = model[0].weight
        weight.grad = weight.grad.t().contiguous().t()  # the same values, column-major
        assert weight.grad.stride() != weight.stride()
        opt.step()
    assert not _direct(copt).direct
    _close(cm, em)
    copt.step(_closure(copt, cm, x, y))
    eopt.step(_closure(eopt, em, x, y))
    _close(cm, em)


def test_another_dtype_is_not_run_with_the_first_graph() -> None:
    """``fixed_layout``: a dtype other than the first call's goes through Dynamo (which
    compiles for it) rather than into kernels built for float32."""
    opt = po.heavy_ball(lr=0.1, momentum=0.5)
    step = CompiledStep(opt, fixed_layout=True)
    for dtype in (torch.float32, torch.float32, torch.float64):
        p = [torch.linspace(-1, 1, 5, dtype=dtype)]
        g = [torch.linspace(2, 3, 5, dtype=dtype)]
        want, _ = opt.step([p[0].clone()], g, opt.init(p))
        got, state = step(p, g, opt.init(p))
        assert got[0].dtype == dtype and state.previous[0].dtype == dtype
        torch.testing.assert_close(got[0], want[0])
    assert not step.for_array(p[0])._fn.direct


def test_scheduled_values_are_constants_until_they_change() -> None:
    """lr, b1 and b2 that never change are constants in the compiled kernels; lr, once a
    scheduler changes it, is read from its tensor (one more compile, then none): the same
    parameters as the eager step (whose values are float32 tensors throughout)."""
    x, y = _data()
    (cm, copt), (em, eopt) = _pair(lambda p, c: pot.Adam(p, lr=0.05, compiled=c))
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1.0 if t < 3 else 0.5 ** (t - 2))
              for o in (copt, eopt)]
    builds = []
    for t in range(8):
        copt.step(_closure(copt, cm, x, y))
        eopt.step(_closure(eopt, em, x, y))
        for s in scheds:
            s.step()
        builds.append(id(copt._trees_state[0].compiled))
        if t == 2:
            assert copt._trees_state[0].varying == set()
            baked = copt._trees_state[0].compiled.optimizer.hyperparameters
            assert all(type(baked[k]) is float for k in ("lr", "b1", "b2"))
            # rounded to the float32 the eager step reads
            assert baked["b2"] == float(torch.tensor(0.999, dtype=torch.float32))
    assert copt._trees_state[0].varying == {"lr"}
    assert len(set(builds)) == 2  # built once with lr constant, once with lr a tensor
    assert isinstance(copt._trees_state[0].compiled.optimizer.hyperparameters["lr"],
                      torch.Tensor)
    _close(cm, em)


def test_a_tensor_lr_changed_in_place_and_lr_zero_are_followed() -> None:
    """A tensor lr is read at every step (its in-place changes are seen), and lr = 0 leaves
    the parameters where they are, on the compiled path too."""
    x, y = _data()
    (cm, copt), (em, eopt) = _pair(
        lambda p, c: pot.HeavyBall(p, lr=torch.tensor(0.1), momentum=0.0, compiled=c))
    for value in (0.1, 0.05, 0.2):
        for opt in (copt, eopt):
            opt.param_groups[0]["lr"].fill_(value)
        copt.step(_closure(copt, cm, x, y))
        eopt.step(_closure(eopt, em, x, y))
    _close(cm, em)
    assert "lr" in copt._trees_state[0].varying
    for opt in (copt, eopt):
        opt.param_groups[0]["lr"].fill_(0.0)
    before = [p.detach().clone() for p in cm.parameters()]
    copt.step(_closure(copt, cm, x, y))
    for p, q in zip(cm.parameters(), before, strict=True):
        assert torch.equal(p.detach(), q)


def test_a_parameter_without_grad_is_skipped_on_the_compiled_path() -> None:
    """With one gradient None the step runs for the others (not moving that parameter, its
    state untouched); with all gradients back, the compiled step again, same as eager."""
    x, y = _data()
    (cm, copt), (em, eopt) = _pair(lambda p, c: pot.Adam(p, lr=0.05, compiled=c))
    for _ in range(2):
        copt.step(_closure(copt, cm, x, y))
        eopt.step(_closure(eopt, em, x, y))
    for model, opt in ((cm, copt), (em, eopt)):
        _closure(opt, model, x, y)()
        bias = model[2].bias
        bias.grad = None
        kept = bias.detach().clone(), opt.state[bias]["mu"].clone()
        opt.step()
        assert torch.equal(bias.detach(), kept[0])
        assert torch.equal(opt.state[bias]["mu"], kept[1])
    for _ in range(2):
        copt.step(_closure(copt, cm, x, y))
        eopt.step(_closure(eopt, em, x, y))
    assert _direct(copt).direct
    _close(cm, em)


def test_a_compiled_opt_step_traces_the_pure_step_not_the_adapters_compiled_one() -> None:
    """Under ``torch.compile(opt.step)`` (here with Dynamo's ``eager`` backend) an optimizer
    made with ``compiled=True`` traces the functional step on detached parameters and builds
    no compiled step of its own; the values are the eager adapter's."""
    x, y = _data()
    cm, em = _linear(), _linear()
    copt = pot.HeavyBall(cm.parameters(), lr=0.1, momentum=0.8, compiled=True)
    eopt = pot.HeavyBall(em.parameters(), lr=0.1, momentum=0.8, compiled=True)
    step = torch.compile(copt.step, backend="eager")
    for _ in range(3):
        # Dynamo, resuming the closure after backward(), reads the loss's .grad and warns
        # (torch's own; the existing compiled-step tests record warnings the same way)
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            step(_closure(copt, cm, x, y))
        eopt.step(_closure(eopt, em, x, y))
    assert copt._trees_state[0].compiled is None
    _close(cm, em)
    assert all(p.is_leaf and p.requires_grad and p.grad_fn is None for p in cm.parameters())
