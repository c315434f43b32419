r"""Check an optimizer written for one array, as most scientific code writes it.

A user writes heavy ball for a parameter vector ``x``, with no trees, no ensembles and no loss:

.. math::

    v_t = \beta v_{t-1} - \eta g_t, \qquad x_t = x_{t-1} + v_t.

The kit probes what the optimizer accepts (a plain array here: lists, tuples and dicts are
refused, ``init`` takes no ``batch_ndim``, ``step`` no ``loss``), draws only inputs of that
kind, and from the name ``momentum`` and the first steps (:math:`-\eta g`, then longer ones)
suggests the heavy ball's stability threshold :math:`\eta k < 2(1+\beta)`.

The buggy version keeps the step number in its state as a Python ``int``: it runs in NumPy,
but a compiled step cannot carry it (``torch.compile`` recompiles each time it changes), and
"state of arrays" catches it (in the full run, "torch.compile = eager, one compilation" too).
Run it::

    python examples/verify_single_array.py          # both versions; exit 0 when the bug is
    python examples/verify_single_array.py --quick  # caught and the correct one passes

or through the command line::

    physopt-ref verify examples/verify_single_array.py:heavy_ball --hp lr=0.1 --hp momentum=0.9
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from array_api_compat import array_namespace


class HeavyBallState(NamedTuple):
    """The velocity (an array like ``x``)."""

    velocity: Any


class HeavyBall:
    """Heavy ball on one array: ``v = momentum * v - lr * g``, ``x = x + v``."""

    def __init__(self, lr: float = 0.1, momentum: float = 0.9) -> None:
        if not lr > 0.0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.lr, self.momentum = float(lr), float(momentum)

    def init(self, x: Any) -> HeavyBallState:
        return HeavyBallState(array_namespace(x).zeros_like(x))

    def step(self, x: Any, g: Any, state: HeavyBallState) -> tuple[Any, HeavyBallState]:
        v = self.momentum * state.velocity - self.lr * g
        return x + v, HeavyBallState(v)


class CountingState(NamedTuple):
    """The velocity and, the bug, the step number as a Python int."""

    velocity: Any
    t: int


class CountingHeavyBall(HeavyBall):
    """The same heavy ball, keeping the step number in its state as a Python ``int``."""

    def init(self, x: Any) -> CountingState:  # type: ignore[override]
        return CountingState(array_namespace(x).zeros_like(x), 0)

    def step(self, x: Any, g: Any, state: CountingState  # type: ignore[override]
             ) -> tuple[Any, CountingState]:
        v = self.momentum * state.velocity - self.lr * g
        return x + v, CountingState(v, state.t + 1)  # BUG: a host number in the state


def heavy_ball(lr: float = 0.1, momentum: float = 0.9) -> HeavyBall:
    """The correct version."""
    return HeavyBall(lr, momentum)


def counting_heavy_ball(lr: float = 0.1, momentum: float = 0.9) -> CountingHeavyBall:
    """The version with a Python int in its state."""
    return CountingHeavyBall(lr, momentum)


def main(argv: Sequence[str] | None = None) -> int:
    """Verify both versions; 0 when the bug is caught and the correct version passes."""
    from physopt_ref.testing import Subject, verify

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 examples per property, no jit / scan / torch.compile")
    args = parser.parse_args(argv)
    reports = {}
    for factory in (counting_heavy_ball, heavy_ball):
        subject = Subject(factory.__name__, factory, {"lr": 0.1, "momentum": 0.9})
        report = verify(subject, compile=not args.quick, max_examples=2 if args.quick else 10)
        print(report.table(), end="\n\n")
        reports[factory.__name__] = report
    caught = [r.property for r in reports["counting_heavy_ball"].failures]
    fixed = reports["heavy_ball"].passed
    print(f"bug caught by: {', '.join(caught) or 'nothing'}; correct version passes: {fixed}")
    return 0 if "state of arrays" in caught and fixed else 1


if __name__ == "__main__":
    sys.exit(main())
