"""The counter-based generator: Philox-4x32-10 on the device, checked against published vectors.

Known-answer vectors: Random123 ``kat_vectors`` (``girving/random123-manual``,
``examples/kat_vectors``), the philox4x32 rows with 10 rounds, as recorded in the project spec
``random-draws.md``. The host reference ``tests/reference/philox_ref.py`` is an independent
implementation on Python integers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from array_api_compat import is_jax_namespace
from hypothesis import given
from hypothesis import strategies as st
from physopt_ref.backends import (
    host_normal,
    host_uniform,
    normal,
    philox4x32,
    random_bits,
    to_numpy,
    uniform,
)

from .helpers import assert_like
from .reference import philox_ref as ref

# ctr0-3 | key0-1 | expected0-3 (Random123 kat_vectors, philox4x32 10 rounds)
KAT = [
    ((0x00000001, 0, 0, 0), (0x00000001, 0), (0xAC08141B, 0xDFC5CCBE, 0x79C07A47, 0xA7F66093)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0x00000001, 0),
        (0x38527B8F, 0xFAD9A48C, 0x20E675C0, 0xF2FEA26A),
    ),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0, 0x00000001),
        (0x126514C3, 0xD1898B69, 0xDA2707B3, 0x6E6FB436),
    ),
    ((0, 0, 0x80000000, 0), (0, 0x80000000), (0xAE56CA02, 0x7609BA67, 0x25ABD7DF, 0x46CE39A3)),
    (
        (0x452821E6, 0x38D01377, 0xBE5466CF, 0x34E90C6C),
        (0, 0xFFFFFFFF),
        (0x72CE44B3, 0xB44F9B78, 0x49AF0267, 0x726813AC),
    ),
]


def _words_dtype(xp: Any) -> Any:
    if is_jax_namespace(xp):
        import jax

        if not jax.config.jax_enable_x64:
            return xp.uint32
    return xp.int64


def _kat_arrays(xp: Any) -> tuple[list[Any], list[Any], np.ndarray]:
    dt = _words_dtype(xp)
    ctr = [xp.asarray([row[0][i] for row in KAT], dtype=dt) for i in range(4)]
    key = [xp.asarray([row[1][i] for row in KAT], dtype=dt) for i in range(2)]
    expected = np.asarray([row[2] for row in KAT], dtype=np.int64).T
    return ctr, key, expected


def test_reference_matches_known_answers() -> None:
    for ctr, key, expected in KAT:
        assert ref.philox4x32_10(ctr, key) == expected


def test_known_answer_vectors(xp: Any) -> None:
    ctr, key, expected = _kat_arrays(xp)
    out = philox4x32(xp, ctr, key)
    for lane, want in zip(out, expected, strict=True):
        np.testing.assert_array_equal(to_numpy(lane).astype(np.int64), want)


def test_known_answer_vectors_jax_without_x64() -> None:
    """JAX's default 32-bit mode has no int64: the uint32 carriers give the same words."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    with jax.enable_x64(False):
        ctr, key, expected = _kat_arrays(jnp)
        assert ctr[0].dtype == jnp.uint32
        out = philox4x32(jnp, ctr, key)
        for lane, want in zip(out, expected, strict=True):
            np.testing.assert_array_equal(np.asarray(lane).astype(np.int64), want)
        words = random_bits(jnp, 2**32 - 2, 2**31 + 5, (3,), 6, stream=2**32 - 4)
    host = np.asarray(
        [ref.member_words(2**32 - 2, k, 2**31 + 5, 2**32 - 4, 6) for k in range(3)]
    )
    np.testing.assert_array_equal(np.asarray(words).astype(np.int64), host)


@given(
    seed=st.integers(0, 2**64 - 8),
    counter=st.integers(0, 2**32 - 1),
    stream=st.integers(0, 2**32 - 1),
    n_words=st.integers(1, 11),
)
def test_words_match_the_host_reference(
    seed: int, counter: int, stream: int, n_words: int, xp: Any
) -> None:
    """Same integer bits on every backend, for any key, member offset and counter."""
    member = (seed * 7919) % (2**32 - 4)
    words = random_bits(xp, seed, counter, (2, 2), n_words, stream=stream, member=member)
    host = [ref.member_words(seed, member + k, counter, stream, n_words) for k in range(4)]
    got = to_numpy(words).astype(np.int64).reshape(4, n_words)
    np.testing.assert_array_equal(got, np.asarray(host, dtype=np.int64))


@pytest.mark.parametrize("kind", ["uniform", "normal"])
@pytest.mark.parametrize("bits", [32, 64])
def test_floats_match_the_host_reference(kind: str, bits: int, xp: Any) -> None:
    dtype = xp.float32 if bits == 32 else xp.float64
    like = xp.zeros(1, dtype=dtype)
    fn = uniform if kind == "uniform" else normal
    got = fn(11, 4, (3, 7), like=like, batch_ndim=1, stream=2)
    assert_like(got, xp, dtype, (3, 7))
    want = ref.draw(kind, 11, 4, (3, 7), 1, 2, bits)
    if kind == "uniform":  # exact: integer bits times a power of two
        np.testing.assert_array_equal(to_numpy(got), want.astype(to_numpy(got).dtype))
    else:  # a few ulps: the backends' log, cos and sin differ in the last bits
        rtol = 2e-6 if bits == 32 else 1e-13
        np.testing.assert_allclose(to_numpy(got), want, rtol=rtol, atol=rtol)


def test_same_numbers_on_every_backend(xp: Any) -> None:
    like = xp.zeros(1, dtype=xp.float64)
    z = normal(7, 3, (4, 5), like=like, stream=2)
    np.testing.assert_allclose(to_numpy(z), host_normal(7, 3, (4, 5), stream=2), rtol=1e-13)
    u = uniform(7, 3, (6,), like=like)
    np.testing.assert_array_equal(to_numpy(u), host_uniform(7, 3, (6,)))


def test_per_member_counters(xp: Any) -> None:
    """A counter array gives each member the draw of its own count (ensembles at any step)."""
    like = xp.zeros(1, dtype=xp.float64)
    counts = xp.asarray([3, 0, 9], dtype=xp.int32)
    ens = to_numpy(normal(5, counts, (3, 4), like=like, batch_ndim=1, stream=1))
    for k, c in enumerate([3, 0, 9]):
        np.testing.assert_allclose(ens[k], host_normal(5, c, (4,), stream=1, member=k),
                                   rtol=1e-13)


def test_draws_depend_on_every_key() -> None:
    base = host_normal(1, 2, (50,), stream=3)
    for other in (
        host_normal(2, 2, (50,), stream=3),
        host_normal(1, 3, (50,), stream=3),
        host_normal(1, 2, (50,), stream=4),
    ):
        assert not np.allclose(base, other)
    np.testing.assert_array_equal(base, host_normal(1, 2, (50,), stream=3))


def test_ensemble_member_k_is_the_single_draw_with_member_k() -> None:
    ens = host_normal(10, 5, (2, 3, 4), batch_ndim=2, stream=1)
    for k, index in enumerate(np.ndindex(2, 3)):
        np.testing.assert_array_equal(ens[index], host_normal(10, 5, (4,), stream=1, member=k))
    # a member offset shifts the indices: members 2.. of the ensemble
    tail = host_normal(10, 5, (4, 4), batch_ndim=1, stream=1, member=2)
    np.testing.assert_array_equal(tail, ens.reshape(6, 4)[2:])


def test_member_index_array_draws_a_subset_of_the_ensemble(xp: Any) -> None:
    """``member`` as an integer array of the batch shape: each row draws as its own member
    (what BBI uses to draw only for the runs that bounce), bit for bit the ensemble's rows."""
    like = xp.zeros(1, dtype=xp.float64)
    counts = xp.asarray([3, 0, 9, 4, 4, 1], dtype=xp.int32)
    full = to_numpy(uniform(5, counts, (6, 3), like=like, batch_ndim=1, stream=2, member=7))
    rows = np.asarray([1, 4, 5])
    sub = uniform(5, xp.asarray(to_numpy(counts)[rows]), (3, 3), like=like, batch_ndim=1,
                  stream=2, member=xp.asarray(7 + rows))
    np.testing.assert_array_equal(to_numpy(sub), full[rows])
    with pytest.raises(TypeError, match="member must be a Python int or an integer array"):
        uniform(5, 0, (3, 3), like=like, batch_ndim=1, member=xp.asarray([1, 2]))


def test_member_index_array_out_of_range_is_refused() -> None:
    like = np.zeros(1)
    with pytest.raises(ValueError, match=r"member indices must be in \[0, 2\*\*32\)"):
        uniform(5, 0, (2, 3), like=like, batch_ndim=1, member=np.asarray([-1, 2]))
    with pytest.raises(ValueError, match=r"member indices must be in \[0, 2\*\*32\)"):
        uniform(5, 0, (2, 3), like=like, batch_ndim=1, member=np.asarray([0, 2**32]))


def test_seeds_never_share_a_member_stream() -> None:
    """Seeds 0..9 x 64 members: 640 distinct streams (the key s + k made seeds s and s + 1
    share 63 of 64 members; issue 23). Both the words and the float64 normals differ."""
    words = {tuple(ref.member_words(s, k, 0, 0, 8)) for s in range(10) for k in range(64)}
    assert len(words) == 640
    for draw in (host_normal, host_uniform):
        rows = np.concatenate([draw(s, 0, (64, 6), batch_ndim=1) for s in range(10)])
        assert len({r.tobytes() for r in rows}) == 640
    # and the member's words are those of the reference packing (key = seed, ctr[3] = member)
    got = random_bits(np, 3, 0, (64,), 8).astype(np.int64)
    np.testing.assert_array_equal(got[17], ref.member_words(3, 17, 0, 0, 8))
    with pytest.raises(ValueError, match="member"):
        host_normal(0, 0, (3, 2), batch_ndim=1, member=2**32 - 2)
    with pytest.raises(ValueError, match="member"):
        host_normal(0, 0, (2,), member=-1)


def test_float32_is_float64_rounded_for_uniforms(xp: Any) -> None:
    """Both precisions read the same first word: float32 is the float64 value's top 24 bits."""
    u32 = to_numpy(uniform(3, 1, (1, 1), like=xp.zeros(1, dtype=xp.float32), batch_ndim=1))
    u64 = to_numpy(uniform(3, 1, (1, 1), like=xp.zeros(1, dtype=xp.float64), batch_ndim=1))
    assert abs(float(u32[0, 0]) - float(u64[0, 0])) < 2.0**-24


def test_distribution_moments() -> None:
    """Mean, variance and a Kolmogorov-Smirnov check on 2·10⁵ draws (fixed keys)."""
    from scipy import stats

    z = host_normal(123, 0, (200_000,))
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / z.size)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    u = host_uniform(123, 0, (200_000,))
    assert u.min() >= 0 and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    z32 = np.asarray(normal(9, 0, (200_000,), like=np.zeros(1, dtype=np.float32)))
    assert z32.dtype == np.float32 and np.all(np.isfinite(z32))
    assert stats.kstest(z32.astype(np.float64), "norm").pvalue > 1e-3
    # neighbouring counters, streams and members are uncorrelated
    a = host_normal(5, 0, (100_000,))
    for b in (host_normal(5, 1, (100_000,)), host_normal(5, 0, (100_000,), stream=1),
              host_normal(6, 0, (100_000,))):
        assert abs(np.corrcoef(a, b)[0, 1]) < 4 / np.sqrt(a.size)


def test_bad_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="seed"):
        host_normal(-1, 0, (3,))
    with pytest.raises(ValueError, match="seed"):
        host_normal(2**64, 0, (3,))
    with pytest.raises(TypeError, match="counter"):
        host_normal(0, 1.5, (3,))
    with pytest.raises(ValueError, match="counter"):
        host_normal(0, 2**32, (3,))
    with pytest.raises(TypeError, match="counter"):
        normal(0, np.asarray([0.5]), (1, 3), like=np.zeros(1), batch_ndim=1)
    with pytest.raises(ValueError, match="batch_ndim"):
        host_normal(0, 0, (3,), batch_ndim=2)
    with pytest.raises(TypeError, match="floating"):
        normal(0, 0, (3,), like=np.zeros(1, dtype=np.int64))


@pytest.mark.parametrize("shape", [(2, 70_001), (40_000, 3), (5,)])
@pytest.mark.parametrize("kind", ["uniform", "normal"])
def test_chunked_draws_equal_one_piece(
    shape: tuple[int, ...], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NumPy computes large draws in cache-sized chunks; the numbers are those of one piece."""
    from physopt_ref.backends import _random

    fn = uniform if kind == "uniform" else normal
    counts = np.arange(shape[0], dtype=np.int32) % 3
    for dtype in (np.float32, np.float64):
        like = np.zeros(1, dtype=dtype)
        chunked = fn(3, counts, shape, like=like, batch_ndim=1, stream=7)
        with monkeypatch.context() as m:
            m.setattr(_random, "_CHUNK_BLOCKS", 10**9)
            whole = fn(3, counts, shape, like=like, batch_ndim=1, stream=7)
        assert chunked.dtype == dtype and chunked.shape == shape
        np.testing.assert_array_equal(chunked, whole)


@pytest.mark.parametrize("kind", ["uniform", "normal"])
def test_small_host_draws_equal_the_array_rounds(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small one-member NumPy draw runs the Philox rounds on Python integers
    (``_philox._host_rounds``) and forms its floats on NumPy directly
    (``_random._small_host_draw``); the numbers are those of the rounds on int64 arrays and
    the general conversion, bit for bit."""
    from physopt_ref.backends import _random

    fn = uniform if kind == "uniform" else normal
    counters = [0, 7, 2**31 - 1, np.int32(12), np.asarray(2**31 - 2, dtype=np.int32)]
    for dtype in (np.float16, np.float32, np.float64):
        like = np.zeros(1, dtype=dtype)
        # up to 16 blocks of float32, past it for float64; an event of several axes
        # batch_ndim 1 with one member: the host rounds inside the general conversion
        for shape, bn in (((1,), 0), ((10,), 0), ((33,), 0), ((64,), 0), ((65,), 0),
                          ((2, 5), 0), ((), 0), ((1, 10), 1), ((1, 65), 1)):
            for counter in counters:
                key = dict(like=like, stream=2**32 - 3, member=2**32 - 1, batch_ndim=bn)
                host = fn(2**64 - 5, counter, shape, **key)
                with monkeypatch.context() as m:
                    m.setattr(_random, "_HOST_BLOCKS", -1)
                    arrays = fn(2**64 - 5, counter, shape, **key)
                assert type(host) is type(arrays) and host.dtype == dtype
                assert host.shape == arrays.shape == shape
                assert host.tobytes() == arrays.tobytes()
    with pytest.raises(ValueError, match="counter"):
        fn(0, -1, (3,), like=np.zeros(1))
    with pytest.raises(ValueError, match="seed"):
        fn(2**64, 0, (3,), like=np.zeros(1))


def test_draws_stay_on_the_device_of_like() -> None:
    """array-api-strict refuses to mix devices: every intermediate is made on like's device."""
    import array_api_strict as xps
    from array_api_compat import device

    dev = xps.Device("device1")
    for like in (xps.zeros(1, dtype=xps.float64, device=dev),
                 xps.zeros(1, dtype=xps.float32, device=dev)):
        counts = xps.asarray([1, 2], dtype=xps.int32, device=dev)
        for fn in (uniform, normal):
            out = fn(4, counts, (2, 5), like=like, batch_ndim=1, stream=3)
            assert device(out) == dev and out.dtype == like.dtype


def test_exact_int64_products_are_the_wrapping_ones() -> None:
    """The overflow-free 32 x 32 -> 64 bit product (the carrier under ``torch.compile``) gives
    the high and low words of the exact product, and the known-answer vectors, on NumPy."""
    from physopt_ref.backends._philox import (
        PHILOX_M0,
        PHILOX_M1,
        _Int64ExactWords,
        _rounds,
    )

    w = _Int64ExactWords(np)
    a = np.asarray([0, 1, 2**31 - 1, 2**31, 0xF0000001, 2**32 - 1], dtype=np.int64)
    for m in (PHILOX_M0, PHILOX_M1):
        hi, lo = w.mulhilo(a, m)
        assert hi.dtype == np.int64 and lo.dtype == np.int64
        assert hi.tolist() == [(int(x) * m) >> 32 for x in a]
        assert lo.tolist() == [(int(x) * m) & 0xFFFFFFFF for x in a]
        assert w.mulhilo(int(a[4]), m) == divmod(int(a[4]) * m, 2**32)  # a word on the host
    ctr, key, expected = _kat_arrays(np)
    for lane, want in zip(_rounds(w, *ctr, *key, 10), expected, strict=True):
        np.testing.assert_array_equal(lane, want)


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_draws_under_torch_compile_equal_eager() -> None:
    """Under ``torch.compile`` (inductor, C++ on the CPU) every draw keeps its bits.

    The int64 carriers let ``(a & MASK) * M`` wrap past 2^63; in the scalar C++ kernel that
    inductor generates for one Philox block, a signed overflow is undefined behaviour and GCC
    dropped the mask of the high word: draws of 1 to 4 float32 values (a bias's jitter in
    ECDSep, BBI's bounce of a bias) came out different from eager (issue 21). Under a torch
    trace the products are formed without overflow.
    """
    torch = pytest.importorskip("torch")

    like = torch.zeros(1, dtype=torch.float32)
    ctr, key, expected = KAT[4]  # one element per word: the scalar kernel

    def draws(count: Any, *words: Any) -> list[Any]:
        return [*philox4x32(torch, words, key), normal(5, count, (2,), like=like, stream=1),
                uniform(9, count, (3, 2), like=like, batch_ndim=1)]  # one block, three members

    args = [torch.tensor(1, dtype=torch.int32)]
    args += [torch.tensor([c], dtype=torch.int64) for c in ctr]
    torch._dynamo.reset()
    got = torch.compile(draws, backend="inductor", fullgraph=True)(*args)
    assert [int(lane) for lane in got[:4]] == list(expected)
    want = draws(*args)[4:]
    torch.testing.assert_close(got[5], want[1], rtol=0, atol=0)  # uniforms: exact
    torch.testing.assert_close(got[4], want[0], rtol=2e-6, atol=2e-6)  # log, cos: last bits


# ctr0-1 | key0-1 | expected0-1 (Random123 kat_vectors, threefry2x32 20 rounds; the same three
# rows are JAX's own threefry2x32 test vectors)
THREEFRY_KAT = [
    ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x243F6A88, 0x85A308D3), (0x13198A2E, 0x03707344), (0xC4923A9C, 0x483DF7A0)),
]


def _threefry_kat(xp: Any) -> None:
    from physopt_ref.backends._threefry import threefry2x32

    dt = _words_dtype(xp)
    ctr = [xp.asarray([row[0][i] for row in THREEFRY_KAT], dtype=dt) for i in range(2)]
    key = [xp.asarray([row[1][i] for row in THREEFRY_KAT], dtype=dt) for i in range(2)]
    want = np.asarray([row[2] for row in THREEFRY_KAT], dtype=np.int64).T
    for lane, expected in zip(threefry2x32(xp, ctr, key), want, strict=True):
        np.testing.assert_array_equal(to_numpy(lane).astype(np.int64), expected)
    for c, k, expected in THREEFRY_KAT:  # a key known on the host (Python ints)
        out = threefry2x32(xp, [xp.asarray(c[0], dtype=dt), xp.asarray(c[1], dtype=dt)], list(k))
        assert [int(to_numpy(o)) for o in out] == list(expected)


def test_threefry_known_answer_vectors(xp: Any) -> None:
    """The measured alternative generator (backends/_threefry.py) meets Random123's vectors."""
    _threefry_kat(xp)


def test_threefry_matches_jax_kernel_without_x64() -> None:
    """uint32 carriers (JAX's 32-bit mode) give the vectors and the words of JAX's own kernel."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from jax.extend.random import threefry_2x32
    from physopt_ref.backends._threefry import threefry2x32

    with jax.enable_x64(False):
        _threefry_kat(jnp)
        rng = np.random.default_rng(3)
        c = rng.integers(0, 2**32, size=(2, 64), dtype=np.uint64).astype(np.uint32)
        k = rng.integers(0, 2**32, size=2, dtype=np.uint64).astype(np.uint32)
        ours = threefry2x32(jnp, [jnp.asarray(c[0]), jnp.asarray(c[1])],
                            [jnp.asarray(k[0]), jnp.asarray(k[1])])
        theirs = threefry_2x32(jnp.asarray(k), jnp.asarray(c))
        np.testing.assert_array_equal(np.stack([np.asarray(o) for o in ours]),
                                      np.asarray(theirs))


def test_jitted_jax_draw_has_no_concatenate() -> None:
    """Under jax.jit a draw assembles its lanes without ``concatenate``: XLA's CPU backend fused
    the stack with the Philox rounds into a 24x slower kernel (2.2 s for 1e6 float32 uniforms,
    benchmarks/bench_ecd.py); the where-chain gives the same bits."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    x = jnp.zeros((3, 10), dtype=jnp.float32)
    c = jnp.zeros((3,), dtype=jnp.int32)
    for draw in (uniform, normal):
        fn = jax.jit(lambda c, x, draw=draw: draw(5, c, (3, 10), like=x, batch_ndim=1))
        assert "concatenate" not in str(jax.make_jaxpr(fn)(c, x))
    fn = jax.jit(lambda c, x: uniform(5, c, (3, 10), like=x, batch_ndim=1))
    host = uniform(5, np.zeros(3, np.int32), (3, 10), like=np.zeros((3, 10), np.float32),
                   batch_ndim=1)
    np.testing.assert_array_equal(np.asarray(fn(c, x)), to_numpy(host))  # uniforms are exact
