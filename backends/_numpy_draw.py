r"""The eager NumPy draw in ``uint32`` words: the bits of :mod:`._random`, with fewer passes.

:func:`._random._draw` runs a large NumPy draw in cache-sized chunks (``_CHUNK_BLOCKS``), each
chunk a few dozen element-wise passes. This module computes the same words, uniforms and
normals with fewer passes over narrower words; NumPy charges about as much for a cast or a
strided pass as for the passes saved, so the draw takes about 0.85-0.98x of the portable path's
time (``benchmarks/bench_ecd.py --only draw``; ``docs/speed.md``):

* **Philox rounds in uint32 words** (:func:`numpy_rounds`). The portable carrier holds each
  32-bit word in an ``int64`` and masks it before every product (:mod:`._philox`); here the
  words are ``uint32`` and each product is formed in ``uint64`` by NumPy's multiply of a
  ``uint32`` array by a ``uint64`` multiplier: the exact 64-bit product (both factors are below
  2^32), whose high and low words are the two ``uint32`` halves of each element, read as
  strided views (no shift, no mask, no copy). One round is two multiplications and two
  three-way xors of ``uint32`` words.
* **Floats written in place** (:func:`fill_block`): the uniforms and Box-Muller normals go
  straight into their slots of the result (no ``stack``, no copy of each chunk), and the
  integer-to-float conversions happen inside the multiplication by the power of two.

Every value is the same number as in the portable path: integer operations are exact; the
conversion of an integer below 2^24 (float32) or 2^53 (float64) to the float dtype is exact,
and so is its product with a power of two, so the order of cast and scale does not matter; the
``log``, ``cos`` and ``sin`` of Box-Muller are NumPy's, called on the same contiguous float
arrays with fresh contiguous outputs, as in :func:`._floats._box_muller` (the same SIMD loop);
``sqrt`` and the products are correctly rounded on every path.
``tests/test_random.py::test_numpy_fast_draw_has_the_bits_of_the_portable_path`` compares
the bits with the portable path on NumPy itself.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._philox import _MASK, PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1

__all__ = ["fill_block", "numpy_rounds"]

_M0, _M1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
#: The high, low ``uint32`` halves of a ``uint64`` on this machine's byte order.
_HIGH, _LOW = (1, 0) if np.little_endian else (0, 1)


def _mulhilo(a: Any, m: int, m64: Any) -> tuple[Any, Any]:
    """(high word, low word) of ``a * m``: ints for an int, else ``uint32`` views."""
    if isinstance(a, int):
        return divmod(a * m, 1 << 32)
    p = np.multiply(a, m64).view(np.uint32).reshape(*a.shape, 2)  # exact: a, m < 2^32
    return p[..., _HIGH], p[..., _LOW]


def _xor3(a: Any, b: Any, key: int) -> Any:
    """``a ^ b ^ key`` for ``uint32`` arrays or ints (xor is associative: ints first)."""
    if isinstance(a, int) and isinstance(b, int):
        return a ^ b ^ key
    if isinstance(a, int) or isinstance(b, int):
        arr, word = (b, a) if isinstance(a, int) else (a, b)
        return np.bitwise_xor(arr, np.uint32(word ^ key))
    out = np.bitwise_xor(a, b)
    out ^= np.uint32(key)
    return out


def numpy_rounds(
    c0: Any, c1: Any, c2: Any, c3: Any, k0: int, k1: int, rounds: int
) -> tuple[Any, Any, Any, Any]:
    r"""Philox-4x32 rounds on ``uint32`` arrays (broadcastable) or ints: the four lanes.

    The round of :func:`._philox.philox4x32`: with :math:`(h_0, l_0) = M_0 c_0` and
    :math:`(h_1, l_1) = M_1 c_2`, :math:`(c_0, c_1, c_2, c_3) \leftarrow (h_1 \oplus c_1
    \oplus k_0,\ l_1,\ h_0 \oplus c_3 \oplus k_1,\ l_0)`, keys :math:`k + r (W_0, W_1)`
    mod 2^32. ``k0``, ``k1`` are ints (one key for the draw). Arrays must hold words below 2^32
    in ``uint32``; the results are ``uint32`` arrays (some strided views) or, for lanes that do
    not depend on an array, ints.
    """
    for r in range(rounds):
        a0, a1 = (k0 + r * PHILOX_W0) & _MASK, (k1 + r * PHILOX_W1) & _MASK
        hi0, lo0 = _mulhilo(c0, PHILOX_M0, _M0)
        hi1, lo1 = _mulhilo(c2, PHILOX_M1, _M1)
        c0, c1, c2, c3 = _xor3(hi1, c1, a0), lo1, _xor3(hi0, c3, a1), lo0
    return c0, c1, c2, c3


def _unit32(word: Any, flip: bool, out: Any = None) -> Any:
    """:func:`._floats._unit32` in float32: ``(w >> 8) 2^-24`` (or ``(2^24 - (w >> 8)) 2^-24``)."""
    top = np.right_shift(word, np.uint32(8))
    if flip:
        np.subtract(np.uint32(16777216), top, out=top)
    return np.multiply(top, np.float32(2.0**-24), out=out, dtype=np.float32)


def _unit64(a: Any, b: Any, flip: bool, out: Any = None) -> Any:
    """:func:`._floats._unit64` in float64: ``(a >> 5, b >> 6) 2^-53`` (or its flip)."""
    bits = np.right_shift(a, np.uint32(5), dtype=np.uint64)
    bits <<= np.uint64(26)
    bits |= np.right_shift(b, np.uint32(6))  # the low 26 bits are zero: | is +
    if flip:
        np.subtract(np.uint64(9007199254740992), bits, out=bits)
    return np.multiply(bits, 2.0**-53, out=out, dtype=np.float64)


def fill_block(kind: str, lanes: tuple[Any, ...], out: Any) -> None:
    r"""Write a chunk's uniforms or normals into ``out``, shape ``lanes' + (per_block,)``.

    ``out`` is float32 (four values a block, one word each) or float64 (two values a block);
    its last axis holds a block's values in order (the interleaving of :mod:`._random`).
    Normals: Box-Muller on the pairs ``(1 - u_1, u_2)``, :math:`\rho = \sqrt{-2 \log(1 -
    u_1)}`, :math:`\theta = 2\pi u_2`, in the expressions and order of
    :func:`._floats._box_muller`.
    """
    single = out.dtype == np.float32
    normal = kind == "normal"
    if not normal:
        if single:
            for j, word in enumerate(lanes):
                _unit32(word, False, out[..., j])
        else:
            _unit64(lanes[0], lanes[1], False, out[..., 0])
            _unit64(lanes[2], lanes[3], False, out[..., 1])
        return
    if single:
        pairs = [(_unit32(lanes[0], True), _angle32(lanes[1])),
                 (_unit32(lanes[2], True), _angle32(lanes[3]))]
    else:
        pairs = [(_unit64(lanes[0], lanes[1], True), _angle64(lanes[2], lanes[3]))]
    for j, (v1, theta) in enumerate(pairs):
        radius = np.log(v1)
        radius *= out.dtype.type(-2.0)
        np.sqrt(radius, out=radius)
        np.multiply(radius, np.cos(theta), out=out[..., 2 * j])
        np.multiply(radius, np.sin(theta), out=out[..., 2 * j + 1])


def _angle32(word: Any) -> Any:
    r""":math:`\theta = 2\pi u` in float32 for the uniform of ``word``, in one product.

    ``2π u = 2π ((w >> 8) 2^-24)``: the uniform is exact, so the rounded product equals that of
    the integer ``w >> 8`` (exact in float32) and the exact constant ``float32(2π) 2^-24``.
    """
    return np.multiply(np.right_shift(word, np.uint32(8)), _TWO_PI_32, dtype=np.float32)


def _angle64(a: Any, b: Any) -> Any:
    """:func:`_angle32` in float64: the 53-bit integer times ``2π 2^-53``."""
    bits = np.right_shift(a, np.uint32(5), dtype=np.uint64)
    bits <<= np.uint64(26)
    bits |= np.right_shift(b, np.uint32(6))
    return np.multiply(bits, _TWO_PI_64, dtype=np.float64)


#: ``2π`` rounded to the dtype (as ``(2.0 * math.pi) * u`` rounds it) times the uniforms' scale
#: (a power of two: exact).
_TWO_PI_32 = np.float32(2.0 * math.pi) * np.float32(2.0**-24)
_TWO_PI_64 = np.float64(2.0 * math.pi) * 2.0**-53
