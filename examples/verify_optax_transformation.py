r"""Check an optax ``GradientTransformation`` written by a user, with a planted bug, and
``optax.adam``.

A JAX user writes an EMA momentum with Adam's bias correction (Kingma & Ba 2015, Sec. 3) as an
optax transformation, its state a NamedTuple holding a tree (the way optax's states do):

.. math::

    m_t = b_1 m_{t-1} + (1-b_1) g_t, \qquad u_t = -\eta\,\frac{m_t}{1 - b_1^t}.

Under a constant gradient :math:`m_t = (1-b_1^t) g`, so every update is :math:`-\eta g`. The
buggy version counts from 0 instead of 1 in the correction (:math:`1 - b_1^{t-1}`, guarded to
:math:`t = 1` at the first step): its first update is right, its second :math:`(1+b_1)` times
too long, and the bias-correction check, suggested from the name ``b1``, fails.

Run it::

    python examples/verify_optax_transformation.py --quick

or through the command line::

    physopt-ref verify examples/verify_optax_transformation.py:ema_momentum \
        --hp learning_rate=0.1
    physopt-ref verify optax:adam --hp learning_rate=0.01
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class EMAMomentumState(NamedTuple):
    """The step count (``int32``) and the gradient average (a tree like the parameters)."""

    count: Any
    average: Any


def _ema_momentum(learning_rate: float, b1: float, first: int) -> optax.GradientTransformation:
    if not learning_rate > 0.0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if not 0.0 <= b1 < 1.0:
        raise ValueError(f"b1 must be in [0, 1), got {b1}")

    def init(params: Any) -> EMAMomentumState:
        return EMAMomentumState(jnp.zeros((), jnp.int32),
                                jax.tree.map(jnp.zeros_like, params))

    def update(grads: Any, state: EMAMomentumState, params: Any = None
               ) -> tuple[Any, EMAMomentumState]:
        count = state.count + 1
        average = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.average, grads)
        t = jnp.maximum(count - 1 + first, 1)  # the number of this step (first = 1: correct)
        updates = jax.tree.map(
            lambda m: (-learning_rate * m / (1.0 - b1 ** t.astype(m.dtype))).astype(m.dtype),
            average)
        return updates, EMAMomentumState(count, average)

    return optax.GradientTransformation(init, update)


def ema_momentum(learning_rate: float = 0.1, b1: float = 0.9) -> optax.GradientTransformation:
    """EMA momentum with the bias correction 1 - b1^t, t = 1, 2, ..."""
    return _ema_momentum(learning_rate, b1, first=1)


def ema_momentum_from_zero(learning_rate: float = 0.1, b1: float = 0.9
                           ) -> optax.GradientTransformation:
    """The bug: the correction counts t = 0, 1, 2, ... (the first step guarded to t = 1)."""
    return _ema_momentum(learning_rate, b1, first=0)


def main(argv: Sequence[str] | None = None) -> int:
    """Verify both versions and optax.adam; 0 when the bug is caught and the others pass."""
    from physopt_ref.testing import verify
    from physopt_ref.testing.frameworks import framework_subject

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 examples per property, no jit / scan")
    args = parser.parse_args(argv)
    cases = [(ema_momentum, None), (ema_momentum_from_zero, "bias correction"),
             (optax.adam, None)]
    ok = True
    for factory, planted in cases:
        subject = framework_subject(factory.__name__, factory, {"learning_rate": 0.1})
        report = verify(subject, compile=not args.quick, max_examples=2 if args.quick else 10)
        print(report.table(), end="\n\n")
        failed = [r.property for r in report.failures]
        expected = [] if planted is None else [planted]
        print(f"{factory.__name__}: failed {failed or 'nothing'}, "
              f"expected {expected or 'nothing'}")
        ok &= failed == expected
    print(f"bug caught and correct versions pass: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
