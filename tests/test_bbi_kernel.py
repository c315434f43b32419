"""BBI's full-size work in a torch graph (:mod:`physopt_ref.optimizers.bbi_kernel`, issue 25).

Under ``torch.compile`` the whole full-size part of a BBI call sits in one ``torch.cond``; a
donated step writes the new parameters and momentum inside the branches. Before, the common
step computed the gradient norm of the initial momentum on every call (outside the branch and
again inside it), returned the new momentum as a fresh branch output, and then read it again for
the drift and copied it into the donated buffer: 12 full-size passes where 5 suffice.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import pytest

import physopt_ref
from physopt_ref.testing.compile import TORCH_COMPILE_WARNINGS

#: Floor tuning (runs start on different calls), fixed and progress bounces within 8 calls:
#: the registry's test settings. Second: isotropic bounces without the energy rescale. Third:
#: backtracking (``safety``), which reads the input parameters after the update.
SETTINGS = [
    dict(physopt_ref.REGISTRY["bbi"].test_hyperparameters),
    {"lr": 0.1, "t0": 2, "t1": None, "seed": 5, "bounce_direction": "isotropic",
     "rescale": False},
    {"lr": 0.9, "t0": 3, "t1": None, "seed": 1, "safety": "backtrack"},
]


def _problem(torch: Any, x: Any) -> tuple[Any, Any]:
    """F = Σ x² + ½ sin-perturbed, per run (batch axis 0), and a gradient-like field."""
    return 2.0 * x + 0.3 * torch.sin(5.0 * x), (x * x).sum(dim=1) + 1.0


def _run(torch: Any, step: Any, opt: Any, calls: int, alias: bool) -> list[tuple[Any, ...]]:
    x = torch.linspace(-1.0, 2.0, 21, dtype=torch.float64).reshape(3, 7)
    state = opt.init(x, batch_ndim=1)
    out = []
    for _ in range(calls):
        g, loss = _problem(torch, x)
        x, state = step(x, x if alias else g, state, loss)
        out.append((x.clone(), state.event.clone(),
                    *[v.clone() if not isinstance(v, tuple) else v[0].clone() for v in state]))
    return out


@pytest.mark.parametrize("hp", SETTINGS, ids=["tuning", "isotropic", "backtrack"])
@pytest.mark.parametrize("donate", [True, False], ids=["donated", "pure"])
@pytest.mark.parametrize("alias", [False, True], ids=["grads", "grads-are-params"])
def test_torch_graph_step_equals_eager_bit_for_bit(hp: dict, donate: bool, alias: bool) -> None:
    """The traced step (AOT autograd's functionalisation, run op by op: ``aot_eager``) gives the
    eager step's bits in every field over 8 calls with starts and bounces; the donated one
    returns the caller's buffers. One graph, one ``cond``."""
    torch = pytest.importorskip("torch")
    from torch._dynamo.utils import counters

    opt = physopt_ref.bbi(**hp)
    torch._dynamo.reset()
    counters.clear()
    graphs: list[Any] = []

    def record(gm: Any, example_inputs: Any) -> Any:
        graphs.append(gm)
        from torch._dynamo.backends.debugging import aot_eager

        return aot_eager(gm, example_inputs)

    def traced(p: Any, g: Any, s: Any, loss: Any) -> Any:
        return opt.step(p, g, s, loss=loss, donate=donate)

    compiled = torch.compile(traced, backend=record, fullgraph=True, dynamic=False)
    ids: list[tuple[int, int]] = []

    def step(p: Any, g: Any, s: Any, loss: Any) -> Any:
        new_p, new_s = compiled(p, g, s, loss)
        ids.append((new_p is p, new_s.momentum[0] is s.momentum[0]))
        return new_p, new_s

    with warnings.catch_warnings():
        for message in TORCH_COMPILE_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        got = _run(torch, step, opt, 8, alias)
    want = _run(torch, lambda p, g, s, loss: opt.step(p, g, s, loss=loss), opt, 8, alias)
    events = [int(e) for row in got for e in row[1].reshape(-1)]
    assert {1, 2} <= set(events), "the run must update and bounce"
    for t, (a, b) in enumerate(zip(got, want, strict=True)):
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            assert torch.equal(u, v), f"call {t + 1}, field {i}"
    assert len(graphs) == 1
    conds = [n for n in graphs[0].graph.nodes if n.target is torch.ops.higher_order.cond]
    assert len(conds) == 1
    assert all(ids) if donate else not any(a or b for a, b in ids)


@pytest.mark.slow
def test_compiled_donated_common_step_is_one_pass() -> None:
    """``physopt_ref.compile`` (inductor): the common branch reads (θ, π, g) and writes (θ', π')
    in one loop with the |π'|² reduction, and no full-size array leaves the ``cond``.

    Before: two loops over g outside the branch (the initial momentum's norm on every call),
    three inside, and a full-size branch output read twice more and copied into the buffer.
    """
    torch = pytest.importorskip("torch")
    from torch._inductor.utils import run_and_get_code

    n = 1237
    opt = physopt_ref.bbi(lr=0.01)
    x = torch.linspace(-1.0, 1.0, n, dtype=torch.float32)
    g, loss = 0.5 * x, torch.tensor(1.5)
    state = opt.init(x)
    step = physopt_ref.compile(opt)
    torch._dynamo.reset()
    with warnings.catch_warnings():
        for message in TORCH_COMPILE_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        (x, state), codes = run_and_get_code(step, x, g, state, loss=loss)
    code = "\n".join(codes)
    assert f"({n}, ), (1, ), 'torch.ops.cond'" not in code  # no full-size branch output
    false_branch = code[code.index("def false_graph"):]
    kernel = re.search(r"(cpp_fused\w*)\(false_graph", false_branch).group(1)
    source = code[code.index(f"{kernel} = "):]
    source = source[: source.index("''')")]
    loops = re.findall(rf"x0<static_cast<int64_t>\({n}L\)", source)
    assert len(loops) == 1, f"{len(loops)} loops over the parameters in the common branch"
    start = torch.linspace(-1.0, 1.0, n, dtype=torch.float32)
    want, _ = opt.step(start, g, opt.init(start), loss=loss)
    np.testing.assert_allclose(x.numpy(), want.numpy(), rtol=1e-6, atol=0)


@pytest.mark.parametrize(("hp", "conds"), [
    ({"lr": 0.01}, 2),
    ({"lr": 0.01, "t0": 3, "t1": 2, "bounce_direction": "isotropic"}, 2),
    ({"lr": 0.01, "t0": None, "t1": None}, 1),
], ids=["default", "isotropic", "no-bounces"])
def test_jax_jit_common_step_has_no_full_size_cond_output(hp: dict, conds: int) -> None:
    """``physopt_ref.compile`` on JAX (``jax.jit`` with donation): the ``lax.cond`` of the
    initial momentum and of the bounce return, in the common branch, their operand unchanged;
    the kick, the drift and |π'|² are computed after them, written into the donated buffers.

    Before: the bounce ``cond``'s common branch computed the kicked momentum, a fresh
    full-size branch output, which the drift and the reduction read again and XLA then copied
    into the donated momentum buffer (a ``copy`` of the whole array on every call: 9 passes
    over the arrays where 7 remain). The results stay those of the eager step.
    """
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    n = 4099
    opt = physopt_ref.bbi(**hp)
    base = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    x, g, loss = jnp.asarray(base), jnp.asarray(0.5 * base), jnp.float32(1.5)
    state = opt.init(x)
    step = physopt_ref.compile(opt).for_array(x)
    hlo = step.lower(x, g, state, loss).compile().as_text()
    full = f"f32[{n}]"
    copies = [line for line in hlo.splitlines() if " copy(" in line and f"= {full}" in line]
    assert not copies, f"full-size copies: {copies}"
    branches = re.findall(r"conditional\(.*?branch_computations=\{%([\w.]+), %([\w.]+)\}", hlo)
    assert len(branches) == conds  # the start's, and the bounce's where bounces are on
    for common, _ in branches:  # lax.cond: branch 0 runs when no run starts or bounces
        body = hlo[hlo.index(f"%{common} ("):]
        body = body[: body.index("\n}")]
        assert "fusion(" not in body and re.search(r"ROOT %[\w.]+ = .* parameter\(0\)", body)
    header = hlo.splitlines()[0]
    assert "{0}: (0, {}, may-alias)" in header  # θ' written into the donated parameters
    # The result equals the eager NumPy step's over 6 calls (starts and bounces included).
    xs, state_np = base.copy(), opt.init(base.copy())
    for _ in range(6):
        x, state = step(x, g, state, loss)
        xs, state_np = opt.step(xs, 0.5 * base, state_np, loss=np.float32(1.5))
    np.testing.assert_allclose(np.asarray(x), xs, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(state.event), state_np.event)
