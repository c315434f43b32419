"""ECDSep's compiled step in the minimum number of passes (issue 25).

Under ``torch.compile`` the rule fuses into two passes over the data: the three independent
reductions |p_k|², p_k·z, |z|² in one, the writes of q and p with the final |p|² in the other;
the only full-size buffer inductor allocates per step is the jitter draw z (Philox's blocks
are stored once, not recomputed: ``docs/speed.md``, "ECDSep's compiled passes"). Before, the
started momentum (``initial_momentum``'s branch output, or the select inductor stored) and the
kicked momentum (the operand of the overflow branch of ``momentum_norm``) were full-size
buffers too: one per step with ν = 0, three with ν > 0.

Under ``jax.jit`` XLA merges the expressions the rule forms again, and keeps stored the
values it cannot fuse into YNNPACK's reductions: the step writes the kicked momentum besides
its two outputs (and the draw z with ν > 0); it stored the started momentum and, with ν > 0,
the jittered momentum too (``docs/speed.md``, "ECDSep's passes under jax.jit").
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

import physopt_ref as po

N = 1000

pytestmark = pytest.mark.filterwarnings(
    "ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning",
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
)


def _main_call(code: str) -> str:
    """The body of the compiled module's ``call`` (the branch subgraphs are other functions)."""
    body = code[code.index("    def call(self, args):"):]
    return body[: body.index("\nrunner = ")] if "\nrunner = " in body else body


@pytest.mark.parametrize(("nu", "full_size"), [(0.0, 0), (1e-3, 1)])
def test_torch_compiled_ecdsep_stores_no_full_size_temporary(nu: float, full_size: int) -> None:
    """Inductor allocates no full-size buffer per step but the draw's (ν > 0); 96f93c7 stored
    one with ν = 0 (the started momentum) and three with ν > 0 (and the kicked momentum)."""
    torch = pytest.importorskip("torch")
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    opt = po.ecdsep(lr=0.01, eta=1.0, nu=nu)
    x = torch.linspace(-1.0, 1.0, N)
    g, loss = 0.5 * x, torch.tensor(1.5)
    step = po.compile(opt)
    state = opt.init(x)
    (x, state), codes = run_and_get_code(step, x, g, state, loss=loss)
    call = _main_call("\n".join(codes))
    full = re.findall(rf"empty_strided_cpu\(\((?:{N}, |1, {N // 4}, 4)\)", call)
    assert len(full) == full_size, call
    assert bool(torch.all(torch.isfinite(x)))


def test_torch_compiled_ecdsep_overflow_branch_equals_eager() -> None:
    """The scaled-norm branch (|p|² overflowing float32) forms p_k from the step's inputs in
    the graph: the compiled run equals the eager one through the overflowing calls."""
    torch = pytest.importorskip("torch")
    torch._dynamo.reset()
    opt = po.ecdsep(lr=0.1, eta=1.0, nu=1e-3, seed=0)
    runs: list[Any] = []
    for compiled in (False, True):
        x = torch.linspace(0.5, 1.5, 8)
        g = torch.ones(8)
        state = opt.init(x)
        step = po.compile(opt, donate=False) if compiled else opt.step
        trail = []
        for loss in (1.0, 1e-30, 1e-30, 0.5, 0.4):
            x, state = step(x, g, state, loss=torch.tensor(loss))
            trail.append((x.clone().numpy(), float(state.p2)))
        runs.append(trail)
    for (xe, p2e), (xc, p2c) in zip(*runs, strict=True):
        assert np.all(np.isfinite(xc))
        np.testing.assert_allclose(xc, xe, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(p2c, p2e, rtol=1e-5)


@pytest.mark.parametrize(("nu", "stored"), [(0.0, 1), (1e-3, 2)])
def test_jax_compiled_ecdsep_stores_only_kicked_momentum_and_draw(nu: float, stored: int) -> None:
    """XLA writes the two outputs and ``stored`` full-size temporaries per step: the kicked
    momentum (read by the reductions and both writes), and the draw z with ν > 0. Before, also
    the started momentum (ν = 0: 4 arrays written) and the jittered one (ν > 0: 6)."""
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    if jax.default_backend() != "cpu":
        pytest.skip("the fusion counts are those of XLA on the CPU")
    n = 1 << 14  # above 4096 elements, where XLA on the CPU hands reductions to YNNPACK
    opt = po.ecdsep(lr=0.01, eta=1.0, nu=nu)
    x = jnp.linspace(-1.0, 1.0, n, dtype=jnp.float32)
    g, loss, state = 0.5 * x, jnp.float32(1.5), opt.init(x)
    text = po.compile(opt).for_array(x).lower(x, g, state, loss).compile().as_text()
    entry = text[text.index("\nENTRY"):]
    written = re.findall(rf"= \w+\[(?:{n}|{n // 4})\]\{{0\}} (?:fusion|copy)\(", entry)
    assert len(written) == 2 + stored, entry
