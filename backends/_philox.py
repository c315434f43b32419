r"""Philox-4x32-10 (Salmon, Moraes, Dror & Shaw, SC'11) in Array API integer code.

The bijection and its integer carriers; :mod:`._random` builds the keyed draws on it. The
constants are the paper's Table 2 (Random123's ``philox.h``); ``tests/test_random.py`` checks
the known-answer vectors. The carriers are described in :mod:`._random`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from array_api_compat import (
    device,
    is_jax_namespace,
    is_torch_namespace,
)

__all__ = [
    "PHILOX_M0",
    "PHILOX_M1",
    "PHILOX_W0",
    "PHILOX_W1",
    "philox4x32",
]

PHILOX_M0 = 0xD2511F53  #: Philox-4x32 multiplier 0 (Salmon et al. SC'11, Table 2)
PHILOX_M1 = 0xCD9E8D57  #: Philox-4x32 multiplier 1 (ibid.)
PHILOX_W0 = 0x9E3779B9  #: Weyl key increment 0: golden ratio (ibid.)
PHILOX_W1 = 0xBB67AE85  #: Weyl key increment 1: sqrt(3) - 1 (ibid.)
_MASK = 0xFFFFFFFF
_ROUNDS = 10


_CHUNK_BLOCKS = 1 << 14
"""Philox blocks per chunk on eager host backends: four int64 lanes of 128 KiB stay in cache.

On NumPy a 10-round Philox over a large array is bound by fresh allocations (page faults) unless
it runs on cache-sized pieces: measured here, an int64 multiply costs 0.45 ns per element on
16 Ki elements and 5.4 ns on 2.5 Mi. Traced backends (JAX, ``torch.compile``) and devices get
the whole draw at once, which their compilers fuse.
"""


class _Int64Words:
    """32-bit words held in int64 arrays (every backend with 64-bit integers).

    Words may carry garbage above bit 31 between rounds (an arithmetic shift, an unmasked low
    product): they are masked only where it matters, before a multiplication and at the end.
    """

    masked = False
    #: Whether :func:`_rounds` may multiply without overflow (False: it lets products wrap).
    exact_products = False

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self.dtype = xp.int64

    def const(self, value: int) -> Any:
        return value

    def clean(self, a: Any) -> Any:
        return a & _MASK

    def add(self, a: Any, b: Any) -> Any:
        return (a + b) & _MASK

    def add_carry(self, a: Any, b: Any) -> tuple[Any, Any]:
        """(a + b) mod 2^32 and the carry (0 or 1), for word arrays or ints."""
        s = a + b
        return s & _MASK, s >> 32

    def mulhilo(self, a: Any, m: int) -> tuple[Any, Any]:
        """High word (low 32 bits valid) and the full product (low 32 bits = the low word)."""
        p = (a & _MASK) * m  # wraps in two's complement: the low 64 bits of the unsigned product
        return p >> 32, p


class _Int64ExactWords(_Int64Words):
    """int64 words whose products never overflow: for code generators where it is undefined.

    :class:`_Int64Words` lets ``(a & MASK) * M`` wrap past 2^63. NumPy, JAX (XLA) and torch's
    eager kernels wrap it in two's complement, but in C and C++ a signed overflow is undefined
    behaviour, and a compiler that sees the constants may use that: in the scalar C++ kernel
    that ``torch.compile`` (inductor) generated for a draw of one Philox block, GCC took
    ``(a & MASK) * M`` as non-negative and below 2^63 and dropped the mask of
    ``((a & MASK) * M >> 32) & MASK``, so the high word kept the sign bits of the wrapped
    product (measured on torch 2.13: ``a = 0xF0000001`` gave -986968738 for 3307998558; a
    draw of one to four float32 values came out wrong, ECDSep's jitter of a bias with it).
    Here the product is formed from the 16-bit halves of ``M`` (every partial below 2^49), the
    same bits with no overflow; a draw costs a few more integer operations, which the traced
    code fuses.
    """

    exact_products = True

    def mulhilo(self, a: Any, m: int) -> tuple[Any, Any]:
        """(high word, low word) of ``a * m``, both clean, for ``a`` and ``m`` below 2^32."""
        if isinstance(a, int):
            return divmod((a & _MASK) * m, 1 << 32)
        low = (a & _MASK) * (m & 0xFFFF)  # < 2^48
        mid = (a & _MASK) * (m >> 16) + (low >> 16)  # < 2^48 + 2^32: a * m = mid 2^16 + low % 2^16
        return mid >> 16, ((mid & 0xFFFF) << 16) | (low & 0xFFFF)


class _Uint32Words:
    """32-bit words held in uint32 arrays (JAX without x64, which has no int64)."""

    masked = True

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self.dtype = xp.uint32

    def const(self, value: int) -> Any:
        # JAX parses a bare Python int as a (weak) int32: words above 2^31 must be typed.
        return self.xp.asarray(value, dtype=self.dtype)

    def clean(self, a: Any) -> Any:
        return a

    def add(self, a: Any, b: Any) -> Any:
        return a + self.const(b) if isinstance(b, int) else a + b  # wraps modulo 2^32

    def add_carry(self, a: Any, b: Any) -> tuple[Any, Any]:
        s = self.add(a, b)
        return s, self.xp.astype(s < a, self.dtype)

    def mulhilo(self, a: Any, m: int) -> tuple[Any, Any]:
        # High word from 16-bit halves: a = ah 2^16 + al, m = mh 2^16 + ml.
        al, ah = a & 0xFFFF, a >> 16
        ml, mh = m & 0xFFFF, m >> 16
        ll, lh, hl = al * ml, al * mh, ah * ml
        mid = (ll >> 16) + (lh & 0xFFFF) + (hl & 0xFFFF)  # < 3 * 2^16: no overflow
        hi = ah * mh + (lh >> 16) + (hl >> 16) + (mid >> 16)
        return hi, a * self.const(m)


def _words(xp: Any) -> _Int64Words | _Uint32Words:
    """The integer carrier for ``xp``: int64 words, or uint32 on JAX without x64.

    Under ``torch.compile`` the int64 words multiply without overflow
    (:class:`_Int64ExactWords`): inductor compiles them to C++ or Triton, where a signed
    overflow is undefined.
    """
    if is_jax_namespace(xp):
        import jax

        if not jax.config.jax_enable_x64:  # type: ignore[attr-defined]  # flags are set at run time
            return _Uint32Words(xp)
    if is_torch_namespace(xp):
        import torch

        if torch.compiler.is_compiling():
            return _Int64ExactWords(xp)
    return _Int64Words(xp)


def _rounds(
    w: Any, c0: Any, c1: Any, c2: Any, c3: Any, k0: Any, k1: Any, rounds: int, dev: Any = None
) -> tuple[Any, Any, Any, Any]:
    """Philox rounds on words (arrays, or Python ints for a lane or key known on the host)."""
    if isinstance(k0, int) and isinstance(k1, int):
        # One member: the key schedule is computed on the host (k_r = k + r W, mod 2^32).
        keys = [
            ((k0 + r * PHILOX_W0) & _MASK, (k1 + r * PHILOX_W1) & _MASK) for r in range(rounds)
        ]
        if not isinstance(w, _Int64Words):
            keys = [(w.const(a), w.const(b)) for a, b in keys]
    else:
        keys = [(k0, k1)]
        for _ in range(rounds - 1):
            keys.append((w.add(keys[-1][0], PHILOX_W0), w.add(keys[-1][1], PHILOX_W1)))
    if isinstance(w, _Int64Words) and not w.exact_products:
        xp = w.xp
        m0 = xp.asarray(PHILOX_M0, dtype=w.dtype, device=dev)
        m1 = xp.asarray(PHILOX_M1, dtype=w.dtype, device=dev)
        for r in range(rounds):
            # (c & MASK) * M wraps to the low 64 bits of the product; (p >> 32) keeps the high
            # word in its low 32 bits; garbage above bit 31 is masked before the next product.
            p0 = c0 * m0 if r == 0 else (c0 & _MASK) * m0
            p1 = c2 * m1 if r == 0 else (c2 & _MASK) * m1
            k0, k1 = keys[r]
            c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1, (p0 >> 32) ^ c3 ^ k1, p0
        return c0 & _MASK, c1 & _MASK, c2 & _MASK, c3 & _MASK
    for r in range(rounds):
        hi0, p0 = w.mulhilo(c0, PHILOX_M0)
        hi1, p1 = w.mulhilo(c2, PHILOX_M1)
        k0, k1 = keys[r]
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, p1, hi0 ^ c3 ^ k1, p0
    return c0, c1, c2, c3


#: At most this many blocks of one member take :func:`_host_rounds` on NumPy (``_random``): a
#: small draw's Philox rounds are ~100 ufunc calls on a few elements each (88 us for the 5
#: blocks of a dim-10 float64 normal draw, measured here), where Python integers take ~6 us.
_HOST_BLOCKS = 16

#: Bits per block in :func:`_host_rounds`' packed integers: a 32 x 32 bit product fits.
_SLOT = 128


@functools.lru_cache(maxsize=64)
def _lane_ones(n: int) -> int:
    """A 1 in each of ``n`` packed slots (times a word: the word in every slot)."""
    return sum(1 << (_SLOT * i) for i in range(n))


@functools.lru_cache(maxsize=64)
def _host_keys(
    b0: int, n: int, k0: int, k1: int, rounds: int
) -> tuple[int, tuple[tuple[int, int], ...]]:
    """The packed block counters of :func:`_host_rounds` and its packed round keys (a step's
    draws share one seed and size: cached)."""
    ones = _lane_ones(n)
    blocks = sum((b0 + i) << (_SLOT * i) for i in range(n))
    keys = tuple((((k0 + r * PHILOX_W0) & _MASK) * ones, ((k1 + r * PHILOX_W1) & _MASK) * ones)
                 for r in range(rounds))
    return blocks, keys


def _host_rounds(
    blocks: range, c1: int, c2: int, c3: int, k0: int, k1: int, rounds: int
) -> tuple[int, int, int, int]:
    """Philox rounds on Python integers, every block at once: the four output lanes, packed.

    The counters of block ``b`` are ``(b, c1, c2, c3)``; every input is a 32-bit word. Block
    ``i`` of ``blocks`` (a ``range`` of step 1) lives in bits ``[128 i, 128 i + 128)`` of
    each integer, so one Python multiplication forms every block's product, exactly (at
    most 64 bits: no carry into the next slot), the high word is ``(p >> 32)`` and the low
    word ``p``, each masked to the 32 bits of every slot: the bits of :func:`_rounds`.
    :func:`_host_unpack` gives the words as arrays.
    """
    n = len(blocks)
    ones = _lane_ones(n)
    x0, keys = _host_keys(blocks.start, n, k0, k1, rounds)
    mask = _MASK * ones
    x1, x2, x3 = c1 * ones, c2 * ones, c3 * ones
    m0, m1 = PHILOX_M0, PHILOX_M1
    for r0, r1 in keys:
        p0, p1 = x0 * m0, x2 * m1
        hi0, hi1 = (p0 >> 32) & mask, (p1 >> 32) & mask
        x0, x1, x2, x3 = hi1 ^ x1 ^ r0, p1 & mask, hi0 ^ x3 ^ r1, p0 & mask
    return x0, x1, x2, x3


def _host_unpack(packed: Sequence[int], n: int) -> Any:
    """Packed integers of ``n`` slots (each value below 2^63) as an ``int64`` NumPy array of
    shape ``(len(packed), n)``."""
    whole = 0
    for j, x in enumerate(packed):
        whole |= x << (_SLOT * n * j)
    raw = np.frombuffer(whole.to_bytes(_SLOT // 8 * n * len(packed), "little"), dtype="<i8")
    return raw[::2].astype(np.int64).reshape(len(packed), n)


def philox4x32(
    xp: Any, counter: Sequence[Any], key: Sequence[Any], *, rounds: int = _ROUNDS
) -> tuple[Any, Any, Any, Any]:
    """The Philox-4x32 bijection on word arrays (Salmon et al. SC'11, Sec. 3.2).

    Parameters
    ----------
    xp : namespace
    counter : four arrays (or ints) of 32-bit words
        ``(c0, c1, c2, c3)``, broadcastable together, held in the carrier dtype of
        :func:`random_bits` (int64, or uint32 on JAX without x64).
    key : two arrays (or ints) of 32-bit words
        ``(k0, k1)``.
    rounds : int
        10 for Philox-4x32-10 (the known-answer vectors' setting).

    Returns
    -------
    tuple of four arrays
        The output words, in the carrier dtype.

    Notes
    -----
    One round, with :math:`(h_0, l_0) = \\mathrm{mulhilo}(M_0, c_0)` and
    :math:`(h_1, l_1) = \\mathrm{mulhilo}(M_1, c_2)`:
    :math:`(c_0, c_1, c_2, c_3) \\leftarrow (h_1 \\oplus c_1 \\oplus k_0,\\ l_1,\\
    h_0 \\oplus c_3 \\oplus k_1,\\ l_0)`, then :math:`k \\leftarrow k + (W_0, W_1)`.
    """
    w = _words(xp)
    c0, c1, c2, c3 = (w.clean(c) for c in counter)
    k0, k1 = key
    dev = next((device(c) for c in (*counter, *key) if hasattr(c, "shape")), None)
    return _rounds(w, c0, c1, c2, c3, k0, k1, rounds, dev)
