r"""Counter-based random draws computed on the device: Philox-4x32-10 in Array API integer code.

The Array API standard has no random-number generator (data-apis/array-api#431), and a step that
draws on the host pays a transfer per step and cannot be compiled. So the draws here are
*counter-based* (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3",
SC'11): every 32-bit word is a pure function of a key and a counter, computed with the
namespace's own integer operations, on the device of the parameters, inside ``jax.jit`` and
``torch.compile``. A step needs only its seed and its step count, never a generator object.

The generator is **Philox-4x32-10** (the SC'11 paper; the generator of cuRAND's
``curand_Philox4x32_10`` and Random123), checked against the Random123 known-answer vectors
(``tests/test_random.py``; multipliers ``M0 = 0xD2511F53``, ``M1 = 0xCD9E8D57`` and Weyl key
increments ``W0 = 0x9E3779B9``, ``W1 = 0xBB67AE85`` from the paper's Table 2 / Random123's
``philox.h``). One call of the bijection maps a 128-bit counter and a 64-bit key to four 32-bit
words.

Integer carriers (the facts are in the project spec ``random-draws.md``): each 32-bit word is
held in an ``int64`` array, masked to 32 bits after every add; a 32 x 32 -> 64 bit product wraps
in two's complement and keeps the bit pattern of the unsigned product, so its high word is
``(p >> 32) & 0xFFFFFFFF``. This works on NumPy, CuPy, array-api-strict, torch (which has no add
or right shift for ``uint32``) and JAX with x64. JAX without x64 has no ``int64``: there the
words are ``uint32`` and the high word of a product is assembled from 16-bit halves. Under
``torch.compile`` the int64 products are formed from 16-bit halves of the multiplier, never
overflowing: inductor writes C++ (or Triton) kernels, where a signed overflow is undefined and
GCC miscompiled the wrapping form (issue 21; ``_philox._Int64ExactWords``). All give the same
bits.

The key and counter packing (stable: seeded results depend on it)
-----------------------------------------------------------------
For ensemble member ``k`` (flat C-order index over the batch axes) of a draw with seed ``s``,
member offset ``m`` (default 0), stream ``r`` and step counter ``c``, word ``i`` of the member's
event (its trailing axes, flattened in C order) is word ``i mod 4`` of

.. math::

    \mathrm{Philox}_{10}\big(\text{ctr} = (\lfloor i/4 \rfloor,\ c,\ r,\ m + k),\
    \text{key} = (s \bmod 2^{32},\ \lfloor s/2^{32} \rfloor)\big).

The key is the seed alone and the member index is the counter's last word, so the streams are
keyed by the pair (seed, member): two different seeds never share a member's stream (Philox is
a bijection of the counter for each key, and different keys give independent streams), whereas
a key ``s + k`` made seeds ``s`` and ``s + 1`` share all members but one. Member ``k`` of an
ensemble draws exactly what a single run with the same seed and ``member = m + k`` draws (the
guarantee that makes ensembles, chunked and distributed runs exact: a chunk whose first member
is ``k0`` draws with member offset ``m + k0``). ``m + k < 2^32``. ``c`` may differ per member (an
array of the batch shape: each run's own step count). Member 0 of seed ``s`` draws what the
earlier packing (key ``s + k``, counter word 3 zero) drew for a single run with seed ``s``.

Floats from words
-----------------
* ``float32``: one word per uniform, :math:`u = \lfloor w/2^8 \rfloor\, 2^{-24} \in [0, 1)`.
* ``float64``: two words per uniform (``w_a``, ``w_b``, consecutive), 53 bits,
  :math:`u = (\lfloor w_a/2^5\rfloor 2^{26} + \lfloor w_b/2^6 \rfloor)\,2^{-53}` (the
  conversion of NumPy's ``random_standard_uniform``).
* normals: Box-Muller on consecutive uniform pairs :math:`(u_1, u_2)`, both outputs used,
  :math:`z_{2j} = \rho\cos\theta,\ z_{2j+1} = \rho\sin\theta` with
  :math:`\rho = \sqrt{-2\log(1-u_1)}`, :math:`\theta = 2\pi u_2`, computed in the target dtype.
* ``float16`` and ``bfloat16``: the ``float32`` uniform or normal above, rounded once to the
  target dtype (formed in float32: the words scaled in float16 overflow, since 2^24 > 65504).
  Uniforms that round up to 1.0 are set to the largest value below 1; the Philox bits are
  those of every other dtype.

The integer bits are identical on every backend; uniforms are exact; normals agree to a few
ulps (the backends' ``log``, ``cos`` and ``sin`` differ in the last bits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from array_api_compat import (
    array_namespace,
    device,
    is_array_api_strict_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)

from ._floats import _box_muller, _form_dtype, _host_units, _interleave, _narrow, _uniforms
from ._philox import (
    _CHUNK_BLOCKS,
    _HOST_BLOCKS,
    _MASK,
    _ROUNDS,
    PHILOX_M0,
    PHILOX_M1,
    PHILOX_W0,
    PHILOX_W1,
    _host_rounds,
    _host_unpack,
    _Int64Words,
    _rounds,
    _words,
    philox4x32,
)

__all__ = [
    "PHILOX_M0",
    "PHILOX_M1",
    "PHILOX_W0",
    "PHILOX_W1",
    "host_normal",
    "host_uniform",
    "normal",
    "philox4x32",
    "random_bits",
    "uniform",
]


def _check_key(name: str, value: int | np.integer[Any], bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be a Python int, got {type(value).__name__}")
    value = int(value)
    if not 0 <= value < 2**bits:
        raise ValueError(f"{name} must be in [0, 2**{bits}), got {value}")
    return value


def _split(shape: Sequence[int], batch_ndim: int) -> tuple[tuple[int, ...], int]:
    shape = tuple(int(n) for n in shape)
    if isinstance(batch_ndim, bool) or not isinstance(batch_ndim, int):
        raise TypeError(f"batch_ndim must be an int, got {type(batch_ndim).__name__}")
    if not 0 <= batch_ndim <= len(shape):
        raise ValueError(
            f"batch_ndim must be in [0, {len(shape)}] for shape {shape}, got {batch_ndim}"
        )
    return shape[:batch_ndim], math.prod(shape[batch_ndim:])


def _counter_words(w: Any, counter: Any, batch_shape: tuple[int, ...], n_members: int) -> Any:
    """The step counter as a Python int, or as words broadcastable to ``(n_members, blocks)``."""
    xp = w.xp
    if isinstance(counter, int | np.integer) and not isinstance(counter, bool):
        return _check_key("counter", counter, 32)
    if not hasattr(counter, "dtype") or not xp.isdtype(counter.dtype, "integral"):
        raise TypeError(
            "counter must be a Python int or an integer array of the ensemble's batch shape, "
            f"got {type(counter).__name__}"
        )
    c = w.clean(xp.astype(counter, w.dtype))
    if c.ndim == 0:
        return c  # one count for every member: broadcasts as it is
    return xp.reshape(xp.broadcast_to(c, batch_shape), (n_members, 1))


def _member_words(w: Any, member: Any, batch_shape: tuple[int, ...], n_members: int) -> Any:
    """Explicit member indices (an integer array of the batch shape) as ``(n_members, 1)``
    words; the values are checked to lie in [0, 2**32) where they are in host memory."""
    xp = w.xp
    if not xp.isdtype(member.dtype, "integral") or tuple(member.shape) != batch_shape:
        raise TypeError(
            "member must be a Python int or an integer array of the batch shape "
            f"{batch_shape}, got {member.dtype} of shape {tuple(member.shape)}"
        )
    if n_members and _eager_host(xp, member):
        low, high = int(xp.min(member)), int(xp.max(member))
        if low < 0 or high >= 2**32:
            raise ValueError(f"member indices must be in [0, 2**32), got {low} to {high}")
    return xp.reshape(w.clean(xp.astype(member, w.dtype)), (n_members, 1))


def _eager_host(xp: Any, like: Any) -> bool:
    """Eager arrays in host memory (NumPy, array-api-strict, torch on the CPU outside a trace)."""
    if is_numpy_namespace(xp) or is_array_api_strict_namespace(xp):
        return True
    if is_torch_namespace(xp):
        import torch

        return like.device.type == "cpu" and not torch.compiler.is_compiling()
    return False


class _Draw:
    """Philox words for ``n_members`` members x ``n_blocks`` blocks, computed in chunks."""

    def __init__(
        self, xp: Any, seed: int, counter: Any, batch_shape: tuple[int, ...], n_blocks: int,
        stream: int, dev: Any, member: Any = 0,
    ) -> None:
        self.w = w = _words(xp)
        self.xp, self.dev = xp, dev
        self.seed = _check_key("seed", seed, 64)
        stream = _check_key("stream", stream, 32)
        self.n_members = math.prod(batch_shape)
        self.members = None
        if hasattr(member, "dtype"):  # each member's own index (a subset of an ensemble)
            self.members = _member_words(w, member, batch_shape, self.n_members)
            member = 0
        self.member = _check_key("member", member, 32)
        if self.members is None and self.member + self.n_members > 2**32:
            raise ValueError(
                f"member indices must stay below 2**32: member offset {self.member} + "
                f"{self.n_members} ensemble members"
            )
        if n_blocks >= 2**32:
            raise ValueError(f"at most 2**34 words per member and draw, got {4 * n_blocks}")
        self.n_blocks = n_blocks
        self.ctr = _counter_words(w, counter, batch_shape, self.n_members)
        if isinstance(w, _Int64Words):  # Python ints broadcast against int64 words as they are
            self.stream = stream
        else:
            self.stream = xp.asarray(stream, dtype=w.dtype, device=dev)

    def lanes(self, m0: int, m1: int, b0: int, b1: int) -> tuple[Any, Any, Any, Any]:
        """The four lanes for members [m0, m1) and blocks [b0, b1): each ``(m1-m0, b1-b0)``."""
        xp, w = self.xp, self.w
        k0, k1 = self.seed & _MASK, (self.seed >> 32) & _MASK  # the key: the seed, on the host
        first = self.member + m0
        ctr = self.ctr
        if (self.members is None and m1 - m0 == 1 and b1 - b0 <= _HOST_BLOCKS
                and is_numpy_namespace(xp) and (isinstance(ctr, int) or ctr.ndim == 0)):
            # A small draw of one member on NumPy: the rounds on Python integers (the counter
            # is already in host memory), the same words as an int64 array.
            words = _host_rounds(range(b0, b1), int(ctr), self.stream, first, k0, k1, _ROUNDS)
            host = _host_unpack(words, b1 - b0)
            return host[0:1], host[1:2], host[2:3], host[3:4]
        if self.members is not None:
            members = self.members[m0:m1, ...]
        elif m1 - m0 == 1:  # one member: its counter word on the host
            members = first if isinstance(w, _Int64Words) else xp.asarray(
                first, dtype=w.dtype, device=self.dev)
        else:
            members = xp.reshape(
                xp.arange(first, self.member + m1, dtype=w.dtype, device=self.dev),
                (m1 - m0, 1),
            )
        if isinstance(ctr, int):
            ctr = xp.asarray(ctr, dtype=w.dtype, device=self.dev)
        elif ctr.ndim == 2 and ctr.shape[0] != m1 - m0:
            ctr = ctr[m0:m1, ...]
        blocks = xp.reshape(xp.arange(b0, b1, dtype=w.dtype, device=self.dev), (1, b1 - b0))
        lanes = _rounds(w, blocks, ctr, self.stream, members, k0, k1, _ROUNDS, self.dev)
        shape = (m1 - m0, b1 - b0)
        return tuple(x if tuple(x.shape) == shape else xp.broadcast_to(x, shape) for x in lanes)

    def chunks(self, eager_host: bool) -> list[tuple[int, int, int, int]]:
        m, nb = self.n_members, self.n_blocks
        if not eager_host or m * nb <= _CHUNK_BLOCKS:
            return [(0, m, 0, nb)]
        if nb >= _CHUNK_BLOCKS:
            return [(i, i + 1, b, min(nb, b + _CHUNK_BLOCKS)) for i in range(m)
                    for b in range(0, nb, _CHUNK_BLOCKS)]
        step = _CHUNK_BLOCKS // nb
        return [(i, min(m, i + step), 0, nb) for i in range(0, m, step)]


#: The NumPy dtypes of :func:`_small_host_draw`, with their values per 4-word block.
_SMALL_DTYPES = {np.dtype(np.float16): 4, np.dtype(np.float32): 4, np.dtype(np.float64): 2}


def _small_host_draw(
    kind: str, seed: int, counter: Any, shape: Sequence[int], like: np.ndarray, stream: int,
    member: Any,
) -> Any:
    """A one-member NumPy draw of at most ``_HOST_BLOCKS`` blocks, or ``None`` (another case).

    The same words (:func:`_host_rounds`), uniforms and Box-Muller as :func:`_draw`'s general
    path, on NumPy directly: without the namespace lookups, ``finfo`` calls and the wrappers'
    device checks, which were most of a dim-10 draw (about 60 of ECDSep's 85 us per jitter
    draw; ``benchmarks/bench_ecd.py``, section ``small``). Every value comes from the same
    NumPy operations on the same numbers (each element by itself, in one contiguous array);
    ``tests/test_random.py::test_small_host_draws_equal_the_array_rounds`` compares the bits.
    """
    per_block = _SMALL_DTYPES.get(like.dtype)
    if per_block is None or isinstance(member, bool) or not isinstance(member, int | np.integer):
        return None
    if isinstance(counter, np.ndarray):
        if counter.ndim or counter.dtype.kind not in "iu":
            return None
        ctr = int(counter) & _MASK  # _Int64Words.clean
    elif isinstance(counter, int | np.integer) and not isinstance(counter, bool):
        ctr = _check_key("counter", counter, 32)
    else:
        return None
    _, n_event = _split(shape, 0)
    n_blocks = -(-n_event // per_block)
    if not 0 < n_blocks <= _HOST_BLOCKS:
        return None
    seed = _check_key("seed", seed, 64)
    words = _host_rounds(range(n_blocks), ctr, _check_key("stream", stream, 32),
                         _check_key("member", member, 32), seed & _MASK, (seed >> 32) & _MASK,
                         _ROUNDS)
    form, flip = (np.float32 if per_block == 4 else np.float64), kind == "normal"
    units, scale = _host_units(words, n_blocks, per_block == 4, flip)
    values = list(_host_unpack(units, n_blocks).astype(form) * scale)
    if flip:
        values = _box_muller(np, values)
    block = np.empty((n_blocks, per_block), dtype=form)  # interleaved: a block's values in order
    for j, v in enumerate(values):
        block[:, j] = v
    out = block.reshape(n_blocks * per_block)
    if form != like.dtype:
        out = _narrow(np, out, like.dtype, kind == "uniform")
    if n_blocks * per_block != n_event:
        out = out[:n_event]
    return out.reshape(tuple(shape))


def _draw(
    kind: str, seed: int, counter: Any, shape: Sequence[int], like: Any, batch_ndim: int,
    stream: int, member: Any,
) -> Any:
    if type(like) is np.ndarray and batch_ndim == 0:
        out = _small_host_draw(kind, seed, counter, shape, like, stream, member)
        if out is not None:
            return out
    xp = array_namespace(like)
    if not xp.isdtype(like.dtype, "real floating"):
        raise TypeError(f"like must have a real floating dtype, got {like.dtype}")
    dtype, dev = like.dtype, device(like)
    form = _form_dtype(xp, dtype)
    batch_shape, n_event = _split(shape, batch_ndim)
    per_block = 4 if xp.finfo(dtype).bits <= 32 else 2  # values per 4-word block
    n_blocks = -(-n_event // per_block)
    draw = _Draw(xp, seed, counter, batch_shape, n_blocks, stream, dev, member)
    pieces = []
    for m0, m1, b0, b1 in draw.chunks(_eager_host(xp, like)):
        values = _uniforms(xp, draw.lanes(m0, m1, b0, b1), form, kind == "normal")
        if kind == "normal":
            values = _box_muller(xp, values)
        block = xp.reshape(_interleave(xp, values), (m1 - m0, (b1 - b0) * per_block))
        if form != dtype:
            block = _narrow(xp, block, dtype, kind == "uniform")
        pieces.append(((m0, m1, b0 * per_block, b1 * per_block), block))
    if len(pieces) == 1:
        out = pieces[0][1]
    else:
        out = xp.empty((draw.n_members, n_blocks * per_block), dtype=dtype, device=dev)
        for (m0, m1, j0, j1), block in pieces:
            out[m0:m1, j0:j1] = block
    if n_blocks * per_block != n_event:
        out = out[:, :n_event]
    return xp.reshape(out, tuple(shape))


def random_bits(
    xp: Any,
    seed: int,
    counter: Any,
    batch_shape: tuple[int, ...],
    n_words: int,
    *,
    stream: int = 0,
    device: Any = None,
    member: int = 0,
) -> Any:
    """Philox words for every member: shape ``batch_shape + (n_words,)``, in the carrier dtype.

    See the module notes for the key and counter packing. ``counter`` is a Python int or an
    integer array broadcastable to ``batch_shape`` (one step count per member); ``member`` is
    the member index of the first member (members ``member + k``).
    """
    n_blocks = -(-n_words // 4)
    draw = _Draw(xp, seed, counter, batch_shape, n_blocks, stream, device, member)
    lanes = draw.lanes(0, draw.n_members, 0, n_blocks)
    words = xp.reshape(_interleave(xp, list(lanes)), (*batch_shape, 4 * n_blocks))
    return words if 4 * n_blocks == n_words else words[..., :n_words]


def uniform(
    seed: int,
    counter: Any,
    shape: Sequence[int],
    *,
    like: Any,
    batch_ndim: int = 0,
    stream: int = 0,
    member: Any = 0,
) -> Any:
    """Uniform [0, 1) draws as an array with the namespace, dtype and device of ``like``.

    Parameters
    ----------
    seed : int
        The user's seed, in [0, 2**64): the Philox key.
    counter : int or integer array
        The step count: a Python int, or an integer array broadcastable to the batch shape
        (each member's own count).
    shape : sequence of int
        Shape of the result; its first ``batch_ndim`` axes index ensemble members.
    like : array
        Template: the result has its namespace, floating dtype and device.
    batch_ndim : int
        Number of leading ensemble axes.
    stream : int
        Separates the independent draws one step makes (one per parameter leaf, say).
    member : int or integer array
        Member index of the first ensemble member, in [0, 2**32): member ``k`` of the batch
        draws as member ``member + k`` (counter word 3), and a single draw (``batch_ndim = 0``)
        with ``member = k`` equals member ``k`` of an ensemble with the same seed. An integer
        array of the batch shape gives each member its own index instead: the draws of a
        subset of an ensemble's members (BBI draws only for the runs that bounce).
    """
    return _draw("uniform", seed, counter, shape, like, batch_ndim, stream, member)


def normal(
    seed: int,
    counter: Any,
    shape: Sequence[int],
    *,
    like: Any,
    batch_ndim: int = 0,
    stream: int = 0,
    member: Any = 0,
) -> Any:
    """Standard normal draws as an array like ``like`` (Box-Muller; see :func:`uniform`)."""
    return _draw("normal", seed, counter, shape, like, batch_ndim, stream, member)


def _host_like() -> Any:
    import array_api_compat.numpy as npx

    return npx.empty((), dtype=npx.float64)


def host_uniform(
    seed: int, counter: int, shape: Sequence[int], *, batch_ndim: int = 0, stream: int = 0,
    member: int = 0,
) -> np.ndarray:
    """:func:`uniform` as a NumPy float64 array (for start points and reports, not steps)."""
    return np.asarray(
        uniform(seed, counter, shape, like=_host_like(), batch_ndim=batch_ndim, stream=stream,
               member=member)
    )


def host_normal(
    seed: int, counter: int, shape: Sequence[int], *, batch_ndim: int = 0, stream: int = 0,
    member: int = 0,
) -> np.ndarray:
    """:func:`normal` as a NumPy float64 array (for start points and reports, not steps)."""
    return np.asarray(
        normal(seed, counter, shape, like=_host_like(), batch_ndim=batch_ndim, stream=stream,
               member=member)
    )
