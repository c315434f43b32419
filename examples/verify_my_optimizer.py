r"""Check your own optimizer with ``physopt_ref.testing``: a heavy-ball variant with a planted bug.

A user writes heavy ball with an exponential moving average of the gradients and Adam's bias
correction (Kingma & Ba 2015, Sec. 3), so that the first steps are not too short:

.. math::

    m_t = \beta m_{t-1} + (1-\beta) g_t, \qquad
    \theta_t = \theta_{t-1} - \eta\, \frac{m_t}{1 - \beta^t}, \qquad t = 1, 2, \dots

Under a constant gradient :math:`m_t = (1-\beta^t) g`, so the corrected average is exactly
:math:`g` and every step is :math:`-\eta g`. The buggy version takes the step number one too
high (it adds 1 to a count that already starts at 1): its first step is :math:`-\eta g/(1+\beta)`,
the next ones longer. It is written with the library's scaffold
(:class:`physopt_ref.Optimizer`: trees, ensembles, the count and the checks come with it), the
way a user adds an optimizer.

Run it::

    python examples/verify_my_optimizer.py          # the whole kit (compiled steps too)
    python examples/verify_my_optimizer.py --quick  # fewer examples, no jit / torch.compile

or through the command line::

    physopt-ref verify examples/verify_my_optimizer.py:buggy_ema_heavy_ball \
        --hp lr=0.1 --hp momentum=0.9 --physics bias_correction

The kit reports the buggy version's "bias correction" row as FAIL, with the measured margin and
a minimal counterexample (hypothesis shrinks the gradient and the number of steps), and passes
the corrected one. The exit status is 0 when the corrected version passes and the buggy one is
caught.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import physopt_ref

StepContext = Any  # what the scaffold passes to the rules: xp, the count, t, leaf(), zeros_like()


class EMAMomentumState(NamedTuple):
    """The step count (``int32``, one per run) and the gradient average per leaf."""

    count: Any
    average: tuple[Any, ...]


def _init(hp: Mapping[str, Any], ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
    return {"average": ctx.zeros_like(leaves)}


def _ema_step(hp: Mapping[str, Any], ctx: StepContext, params: list[Any], grads: list[Any],
              state: EMAMomentumState, t: Any) -> tuple[list[Any], dict[str, Any]]:
    """The update with step number ``t`` in the bias correction ``1 - β^t``."""
    eta, beta = hp["lr"], hp["momentum"]
    correction = 1.0 - beta**t
    average, new = [], []
    for p, g, m in zip(params, grads, state.average, strict=True):
        m = beta * m + (1.0 - beta) * g
        average.append(m)
        new.append(p - ctx.leaf(eta / correction, p) * m)
    return new, {"average": tuple(average)}


def _buggy_update(hp: Mapping[str, Any], ctx: StepContext, params: list[Any], grads: list[Any],
                  state: EMAMomentumState, loss: Any) -> tuple[list[Any], dict[str, Any]]:
    t = ctx.t + 1.0  # the number of the step being taken, counted from 1 ...
    return _ema_step(hp, ctx, params, grads, state, t + 1.0)  # BUG: ... and one more


def _update(hp: Mapping[str, Any], ctx: StepContext, params: list[Any], grads: list[Any],
            state: EMAMomentumState, loss: Any) -> tuple[list[Any], dict[str, Any]]:
    t = ctx.t + 1.0  # the number of the step being taken, counted from 1
    return _ema_step(hp, ctx, params, grads, state, t)


def _hyperparameters(lr: float, momentum: float) -> dict[str, float]:
    lr, momentum = float(lr), float(momentum)
    if not lr > 0.0:
        raise ValueError(f"lr (η) must be > 0, got {lr}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum (β) must be in [0, 1), got {momentum}")
    return {"lr": lr, "momentum": momentum}


def buggy_ema_heavy_ball(lr: float = 0.1, momentum: float = 0.9) -> physopt_ref.Optimizer:
    """Bias-corrected EMA heavy ball, with the step number one too high in the correction."""
    return physopt_ref.Optimizer("buggy_ema_heavy_ball", _hyperparameters(lr, momentum),
                                 init=_init, update=_buggy_update, state_type=EMAMomentumState)


def ema_heavy_ball(lr: float = 0.1, momentum: float = 0.9) -> physopt_ref.Optimizer:
    """Bias-corrected EMA heavy ball (the corrected version)."""
    return physopt_ref.Optimizer("ema_heavy_ball", _hyperparameters(lr, momentum),
                                 init=_init, update=_update, state_type=EMAMomentumState)


def main(argv: Sequence[str] | None = None) -> int:
    """Verify both versions; 0 when the bug is caught and the corrected version passes."""
    from physopt_ref.testing import Subject, verify

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 examples per property, no jit / scan / torch.compile")
    args = parser.parse_args(argv)
    settings = {"lr": 0.1, "momentum": 0.9}
    reports = {}
    for factory in (buggy_ema_heavy_ball, ema_heavy_ball):
        subject = Subject(factory.__name__, factory, settings)
        report = verify(subject, physics=["bias_correction"], compile=not args.quick,
                        max_examples=3 if args.quick else 10)
        print(report.table(), end="\n\n")
        reports[factory.__name__] = report
    caught = not reports["buggy_ema_heavy_ball"]["bias correction"].passed
    fixed = reports["ema_heavy_ball"].passed
    print(f"bug caught: {caught}; corrected version passes: {fixed}")
    return 0 if caught and fixed else 1


if __name__ == "__main__":
    sys.exit(main())
