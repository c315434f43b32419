"""Floats from Philox words: uniforms, Box-Muller normals, the block order (``_random``).

The conversions of :mod:`physopt_ref.backends._random`'s module notes ("Floats from words"):
``float32`` takes one word per uniform, ``float64`` two; normals are Box-Muller on consecutive
uniform pairs; ``float16`` and ``bfloat16`` draws are formed in ``float32`` and rounded once.
:func:`_host_units` forms the same integers on the packed words of
:func:`~physopt_ref.backends._philox._host_rounds` (small one-member NumPy draws).
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import device, is_jax_namespace

from ._philox import _lane_ones


def _unit32(xp: Any, w: Any, dtype: Any, flip: bool = False) -> Any:
    """u = (w >> 8) 2^-24 in [0, 1), or exactly 1 - u in (0, 1] with ``flip``.

    ``dtype`` is the dtype the value is formed in, float32 (exact: 24 bits) or wider; a
    narrower target is cast afterwards (:func:`_form_dtype`): 2^24 itself overflows float16.
    """
    top = w >> 8
    return xp.astype(16777216 - top if flip else top, dtype) * (2.0**-24)


def _unit64(xp: Any, a: Any, b: Any, dtype: Any, flip: bool = False) -> Any:
    """u = (a >> 5, b >> 6) 2^-53 in [0, 1), or exactly 1 - u in (0, 1] with ``flip``."""
    bits = (a >> 5) * 67108864 + (b >> 6)
    return xp.astype(9007199254740992 - bits if flip else bits, dtype) * (2.0**-53)


def _form_dtype(xp: Any, dtype: Any) -> Any:
    """The dtype a draw is formed in: ``dtype``, or float32 for a narrower one.

    float16 and bfloat16 draws are formed in float32 (the uniform's 24 bits, the logarithm,
    cosine and sine of Box-Muller) and rounded once to the target at the end: the words scaled
    in float16 overflow (2^24 > 65504), and bfloat16's 8 bits of mantissa make ``1 - u`` and
    ``log`` too coarse for the tails.
    """
    return dtype if xp.finfo(dtype).bits >= 32 else xp.float32


def _narrow(xp: Any, values: Any, dtype: Any, uniform: bool) -> Any:
    """float32 draws rounded to a narrower ``dtype``; uniforms kept below 1 (the [0, 1) contract).

    Rounding to nearest takes the uniforms above 1 - ulp/2 to 1.0; they become the largest
    value below 1 instead, ``1 - eps/2`` (a shift within the dtype's rounding).
    """
    out = xp.astype(values, dtype)
    if uniform:
        below_one = 1.0 - float(xp.finfo(dtype).eps) / 2.0
        out = xp.minimum(out, xp.asarray(below_one, dtype=dtype, device=device(values)))
    return out


def _uniforms(xp: Any, lanes: tuple[Any, ...], dtype: Any, pairs: bool = False) -> list[Any]:
    """A block's uniforms in order: four (float32, one word each) or two (float64, two each).

    ``dtype`` is float32 or float64 (:func:`_form_dtype`).

    With ``pairs`` the first of each pair comes as ``1 - u`` (exact), what Box-Muller takes the
    logarithm of: ``log(1 - u)`` of the exact value equals ``log1p(-u)``, and NumPy's ``log``
    is vectorised where ``log1p`` is not (17 ns against 3 ns per float32 element here).
    """
    if xp.finfo(dtype).bits <= 32:
        return [_unit32(xp, lane, dtype, pairs and i % 2 == 0) for i, lane in enumerate(lanes)]
    return [
        _unit64(xp, lanes[0], lanes[1], dtype, pairs),
        _unit64(xp, lanes[2], lanes[3], dtype, False),
    ]


def _box_muller(xp: Any, us: list[Any]) -> list[Any]:
    """Normals from pairs (1 - u1, u2), both outputs: (ρ cos θ, ρ sin θ) per pair."""
    out = []
    for v1, u2 in zip(us[0::2], us[1::2], strict=True):
        radius = xp.sqrt(-2.0 * xp.log(v1))
        theta = (2.0 * math.pi) * u2
        out += [radius * xp.cos(theta), radius * xp.sin(theta)]
    return out


def _interleave(xp: Any, values: list[Any]) -> Any:
    """``stack(values, axis=-1)``: a block's values in order, for arrays of one shape.

    On JAX the stack is written as a chain of ``where`` over a broadcast position index: XLA's
    CPU backend fuses a ``concatenate`` with the Philox rounds that feed it so badly that a
    jitted draw of 1e6 float32 uniforms took 2.2 s (measured here; 92 ms this way, and the same
    bits: it only moves data).
    """
    if not is_jax_namespace(xp):
        return xp.stack(values, axis=-1)
    pos = xp.arange(len(values), dtype=xp.int32)
    out = xp.expand_dims(values[-1], axis=-1)
    for i in range(len(values) - 2, -1, -1):
        out = xp.where(pos == i, xp.expand_dims(values[i], axis=-1), out)
    return out


def _host_units(
    words: tuple[int, ...], n: int, single: bool, flip: bool
) -> tuple[list[int], float]:
    """:func:`_uniforms`' integers, from :func:`_host_rounds`' packed words, still packed, and
    their scale: one per word below 2^24 (float32, ``single``) or one per word pair below
    2^53 (float64); with ``flip`` the first of each pair is ``2^k - u`` (exact). Each is an
    exact integer, so its conversion to the float dtype is exact: the numbers of
    :func:`_unit32` and :func:`_unit64`."""
    ones = _lane_ones(n)
    if single:
        low24 = 0xFFFFFF * ones
        units = [(w >> 8) & low24 for w in words]
        if flip:
            units[0], units[2] = (16777216 * ones) - units[0], (16777216 * ones) - units[2]
        return units, 2.0**-24
    a, b, c, d = words
    low27, low26 = 0x7FFFFFF * ones, 0x3FFFFFF * ones
    first = (((a >> 5) & low27) << 26) | ((b >> 6) & low26)
    second = (((c >> 5) & low27) << 26) | ((d >> 6) & low26)
    if flip:
        first = (9007199254740992 * ones) - first
    return [first, second], 2.0**-53
