r"""Threefry-2x32-20 (Salmon, Moraes, Dror & Shaw, SC'11) in Array API integer code.

The alternative to :mod:`._philox` measured for issue 25: Threefry uses only 32-bit additions,
rotations and xors (no 32 x 32 -> 64 bit products), so on JAX without x64 it needs no 16-bit
halves; it is JAX's default PRNG (``jax.random`` ``threefry2x32``). It was measured against
Philox-4x32-10 (``benchmarks/bench_ecd.py --only rng``; ``docs/speed.md``) and *not* adopted:
the draws stay Philox-4x32-10 (see ``docs/speed.md`` for the figures). It is kept, with its
known-answer tests, as the measured alternative and as a cross-check against JAX's kernel.
It wins under the compilers (torch.compile 0.62x, jax.jit 0.42x of Philox's time per word) and
loses 3.5x on NumPy eager, where the draws cost most. Under ``torch.compile``, pass the counters
in as an input: with counters made in the graph (``arange``) inductor re-inlines every word into
each of its users (a buffer that reads no input is never loaded), and the compile time grows
exponentially with the rounds (8 rounds: 82 s; 20: over 15 minutes).

The algorithm (Random123 ``threefry.h``, the SC'11 paper Sec. 3.3, after Skein's Threefish):
with the key schedule :math:`k_2 = k_0 \oplus k_1 \oplus \text{0x1BD11BDA}` (Skein's key
parity constant), start from :math:`x = (c_0 + k_0, c_1 + k_1)`, then 20 rounds of

.. math::

    x_0 \leftarrow x_0 + x_1, \quad x_1 \leftarrow \mathrm{rotl}_{32}(x_1, R_{r \bmod 8})
    \oplus x_0,

with the rotation constants :math:`R = (13, 15, 26, 6, 17, 29, 16, 24)` (Random123's
``R_32x2``), and after rounds 4, 8, ..., 20 (injection :math:`i = 1, \dots, 5`) a key
injection :math:`x_0 \mathrel{+}= k_{i \bmod 3}`,
:math:`x_1 \mathrel{+}= k_{(i+1) \bmod 3} + i`. All additions are modulo :math:`2^{32}`.

Carriers as in :mod:`._philox`: 32-bit words in ``int64`` arrays (masked after every add and
shift), or ``uint32`` on JAX without x64 (wrapping natively).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._philox import _MASK, _Int64Words, _words

__all__ = ["THREEFRY_PARITY", "THREEFRY_ROTATIONS", "threefry2x32"]

#: Rotation constants of Threefry-2x32 (Random123 ``threefry.h``, ``R_32x2_*``).
THREEFRY_ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)
#: Skein's key-schedule parity constant for 32-bit words (Random123 ``SKEIN_KS_PARITY32``).
THREEFRY_PARITY = 0x1BD11BDA
_ROUNDS = 20


def threefry2x32(
    xp: Any, counter: Sequence[Any], key: Sequence[Any], *, rounds: int = _ROUNDS
) -> tuple[Any, Any]:
    """The Threefry-2x32 bijection on word arrays (Salmon et al. SC'11, Sec. 3.3).

    Parameters
    ----------
    xp : namespace
    counter : two arrays (or ints) of 32-bit words
        ``(c0, c1)``, broadcastable together, in the carrier dtype of :mod:`._philox`
        (``int64``, or ``uint32`` on JAX without x64).
    key : two arrays (or ints) of 32-bit words
        ``(k0, k1)``.
    rounds : int
        20 for Threefry-2x32-20 (the known-answer vectors' setting; a multiple of 4).

    Returns
    -------
    tuple of two arrays
        The output words, in the carrier dtype.
    """
    if rounds % 4:
        raise ValueError(f"rounds must be a multiple of 4, got {rounds}")
    w = _words(xp)
    wide = isinstance(w, _Int64Words)
    k0, k1 = key
    if isinstance(k0, int) and isinstance(k1, int):
        ks = [k0 & _MASK, k1 & _MASK, (k0 ^ k1 ^ THREEFRY_PARITY) & _MASK]
        if not wide:
            ks = [w.const(k) for k in ks]
    else:
        k0, k1 = w.clean(k0), w.clean(k1)
        ks = [k0, k1, k0 ^ k1 ^ w.const(THREEFRY_PARITY)]
    c0, c1 = counter
    if not wide:
        c0 = w.const(c0) if isinstance(c0, int) else c0
        c1 = w.const(c1) if isinstance(c1, int) else c1
    x0, x1 = w.add(w.clean(c0), ks[0]), w.add(w.clean(c1), ks[1])
    for r in range(rounds):
        rot = THREEFRY_ROTATIONS[r % 8]
        x0 = w.add(x0, x1)
        if wide:  # x1 holds 32 bits: shift left, drop what passed bit 31, or in the top bits
            x1 = (((x1 << rot) & _MASK) | (x1 >> (32 - rot))) ^ x0
        else:
            x1 = ((x1 << rot) | (x1 >> (32 - rot))) ^ x0
        if r % 4 == 3:
            i = (r + 1) // 4
            x0 = w.add(x0, ks[i % 3])
            x1 = w.add(w.add(x1, ks[(i + 1) % 3]), i)
    return x0, x1
