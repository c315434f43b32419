"""An independent host reference for the counter-based draws: Philox-4x32-10 on Python ints.

Written from Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC'11),
Sec. 3.2 and Table 2, one 128-bit block at a time with Python's unbounded integers (no array
tricks, no carriers), plus the word layout and float conversions that
``physopt_ref.backends._random`` documents. Slow; for small test sizes only.
"""

from __future__ import annotations

import math

import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF


def philox4x32_10(ctr: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, ...]:
    """One Philox-4x32-10 block: four 32-bit counter words and two key words -> four words."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for _ in range(10):
        p0 = M0 * c0
        p1 = M1 * c2
        hi0, lo0 = p0 >> 32, p0 & MASK32
        hi1, lo1 = p1 >> 32, p1 & MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
    return c0, c1, c2, c3


def member_words(seed: int, member: int, counter: int, stream: int, n_words: int) -> list[int]:
    """The first ``n_words`` words of one ensemble member: key = the seed, counter =
    (block, step counter, stream, member)."""
    key = (seed & MASK32, (seed >> 32) & MASK32)
    out: list[int] = []
    block = 0
    while len(out) < n_words:
        out.extend(philox4x32_10((block, counter, stream, member), key))
        block += 1
    return out[:n_words]


def uniforms(words: list[int], bits: int) -> np.ndarray:
    """float32: 24 bits of one word; float64: 53 bits of two consecutive words (as float64)."""
    if bits == 32:
        return np.asarray([(w >> 8) * 2.0**-24 for w in words], dtype=np.float64)
    pairs = zip(words[0::2], words[1::2], strict=True)
    return np.asarray([((a >> 5) * 2**26 + (b >> 6)) * 2.0**-53 for a, b in pairs])


def draw(
    kind: str, seed: int, counter: int, shape: tuple[int, ...], batch_ndim: int, stream: int,
    bits: int, member0: int = 0,
) -> np.ndarray:
    """``uniform`` or ``normal`` of that shape, in float64 from the documented layout (the
    batch's members are ``member0 + k``)."""
    batch, event = shape[:batch_ndim], shape[batch_ndim:]
    n = math.prod(event)
    per = 1 if bits == 32 else 2
    rows = []
    for member in range(member0, member0 + math.prod(batch)):
        if kind == "uniform":
            rows.append(uniforms(member_words(seed, member, counter, stream, per * n), bits))
            continue
        pairs = -(-n // 2)
        u = uniforms(member_words(seed, member, counter, stream, 2 * per * pairs), bits)
        r = np.sqrt(-2.0 * np.log1p(-u[0::2]))
        theta = 2.0 * np.pi * u[1::2]
        rows.append(np.stack([r * np.cos(theta), r * np.sin(theta)], axis=-1).ravel()[:n])
    return np.asarray(rows).reshape(shape)
