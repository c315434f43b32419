r"""Check ``torch.optim.Optimizer`` subclasses: heavy ball and Adam, each with a planted bug.

A torch user writes heavy ball in torch's trace form (the form of ``torch.optim.SGD``):

.. math::

    b_t = \beta b_{t-1} + g_t, \qquad \theta_t = \theta_{t-1} - \eta b_t,

stable on :math:`f = \tfrac12 k\theta^2` for :math:`\eta k < 2(1+\beta)` (the damped-oscillator
view of heavy ball). The buggy version applies the momentum twice (:math:`b_t = \beta(\beta
b_{t-1}) + g_t`): its steps still look sensible, but its threshold is :math:`2(1+\beta^2)/k`,
5 % below the heavy ball's for :math:`\beta = 0.9`. The kit suggests the stability check from
the name ``momentum`` and the first steps, and catches it.

The second pair is Adam (Kingma & Ba 2015, Algorithm 1) with the bias correction
:math:`1-\beta^t` taken one step late (:math:`t+1`): every step under a constant gradient
should be :math:`-\eta g/(|g|+\epsilon)`; the late correction makes the first step
:math:`\sqrt{1+\beta_2}/(1+\beta_1) \approx 0.74` of that, the later ones closer to it, and
the bias-correction check (suggested from the name ``betas``) fails.

Run it::

    python examples/verify_torch_optimizer.py --quick

or through the command line (exit status 1: a property fails)::

    physopt-ref verify examples/verify_torch_optimizer.py:HeavyBallMomentumTwice \
        --hp lr=0.1 --hp momentum=0.9
    physopt-ref verify torch.optim:Adam --hp lr=0.01     # torch's own: exit status 0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import torch


class HeavyBall(torch.optim.Optimizer):
    """Heavy ball in torch's trace form: ``b = momentum * b + g``, ``p -= lr * b``."""

    twice = False

    def __init__(self, params: Iterable[Any], lr: float = 0.1, momentum: float = 0.9) -> None:
        if not lr > 0.0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "buffer" not in state:
                    state["buffer"] = torch.zeros_like(p)
                buf = state["buffer"]
                buf.mul_(group["momentum"])
                if self.twice:
                    buf.mul_(group["momentum"])  # BUG: the momentum applied a second time
                buf.add_(p.grad)
                p.add_(buf, alpha=-group["lr"])
        return loss


class HeavyBallMomentumTwice(HeavyBall):
    """The heavy ball with the momentum applied twice per step."""

    twice = True


class Adam(torch.optim.Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1) with the bias correction 1 - β^t."""

    late = 0  # the bug: 1 takes the correction one step late

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None if closure is None else closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    # the count as a 0-d tensor on the parameter's device, so that no step
                    # reads a value on the host
                    count_dtype = torch.float64 if p.dtype == torch.float64 else torch.float32
                    state["step"] = torch.zeros((), dtype=count_dtype, device=p.device)
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"].add_(1)
                t = state["step"] + self.late
                state["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                state["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                m_hat = state["m"] / (1 - b1**t)
                v_hat = state["v"] / (1 - b2**t)
                p.sub_(group["lr"] * m_hat / (v_hat.sqrt() + group["eps"]))
        return loss


class AdamLateCorrection(Adam):
    """Adam with the bias correction one step late (1 - β^(t+1))."""

    late = 1


def main(argv: Sequence[str] | None = None) -> int:
    """Verify the four subclasses; 0 when both bugs are caught (by the physics checks) and the
    correct versions pass."""
    from physopt_ref.testing import verify
    from physopt_ref.testing.frameworks import framework_subject

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 examples per property")
    args = parser.parse_args(argv)
    cases = [(HeavyBall, {"lr": 0.1, "momentum": 0.9}, None),
             (HeavyBallMomentumTwice, {"lr": 0.1, "momentum": 0.9}, "stability bound"),
             (Adam, {"lr": 0.01}, None),
             (AdamLateCorrection, {"lr": 0.01}, "bias correction")]
    ok = True
    for cls, hp, planted in cases:
        report = verify(framework_subject(cls.__name__, cls, hp),
                        max_examples=2 if args.quick else 10)
        print(report.table(), end="\n\n")
        failed = [r.property for r in report.failures]
        expected = [] if planted is None else [planted]
        print(f"{cls.__name__}: failed {failed or 'nothing'}, expected {expected or 'nothing'}")
        ok &= failed == expected
    print(f"bugs caught and correct versions pass: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
