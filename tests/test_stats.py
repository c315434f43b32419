"""Wilson score intervals and runtime ECDFs (:mod:`physopt_ref.runner.stats`).

Reference intervals are computed here independently: from SciPy's ``binomtest`` (its Wilson
interval), and at the ends k = 0 and k = n from the closed forms z²/(n+z²) and n/(n+z²).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from physopt_ref import evaluations_ecdf, wilson_interval

Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal distribution


@pytest.mark.parametrize(("k", "n"), [(0, 24), (22, 24), (83, 100), (1, 1), (5, 16), (0, 100)])
def test_wilson_matches_scipy(k, n):
    from scipy.stats import binomtest

    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(ref.low, abs=1e-12)
    assert high == pytest.approx(ref.high, abs=1e-12)


def test_wilson_known_values():
    # 0 of 24 (the heavy-ball headline): [0, z²/(n+z²)] = [0, 0.13798]
    assert wilson_interval(0, 24) == (0.0, pytest.approx(Z95**2 / (24 + Z95**2), rel=1e-12))
    assert wilson_interval(0, 24)[1] == pytest.approx(0.13798, abs=5e-6)
    # n of n: [n/(n+z²), 1]
    assert wilson_interval(24, 24) == (pytest.approx(24 / (24 + Z95**2), rel=1e-12), 1.0)
    # 22 of 24 and 83 of 100 (the Ackley headline's counts), to 4 digits
    assert wilson_interval(22, 24) == (pytest.approx(0.7415, abs=1e-4),
                                       pytest.approx(0.9768, abs=1e-4))
    assert wilson_interval(83, 100) == (pytest.approx(0.7445, abs=1e-4),
                                        pytest.approx(0.8911, abs=1e-4))


def test_wilson_confidence_level():
    narrow = wilson_interval(5, 20, confidence=0.5)
    wide = wilson_interval(5, 20, confidence=0.99)
    default = wilson_interval(5, 20)
    assert wide[0] < default[0] < narrow[0] < 0.25 < narrow[1] < default[1] < wide[1]


@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_properties(kn):
    k, n = kn
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    assert low < high
    if k < n:  # one more success moves both ends up
        low2, high2 = wilson_interval(k + 1, n)
        assert low2 > low and high2 > high
    # symmetric: failures' interval is the mirror image
    f_low, f_high = wilson_interval(n - k, n)
    assert math.isclose(f_low, 1.0 - high, abs_tol=1e-12)
    assert math.isclose(f_high, 1.0 - low, abs_tol=1e-12)


@pytest.mark.parametrize(
    ("args", "error"),
    [((3, 2), ValueError), ((-1, 4), ValueError), ((0, 0), ValueError), ((1.0, 4), TypeError),
     ((True, 4), TypeError)],
)
def test_wilson_rejects_bad_counts(args, error):
    with pytest.raises(error):
        wilson_interval(*args)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 4, confidence=1.0)


def test_ecdf_one_problem():
    # 5 runs: three reached the target after 3, 10 and 10 evaluations, two never did
    x, y = evaluations_ecdf(np.array([10, -1, 3, 10, -1]))
    np.testing.assert_array_equal(x, [3, 10])
    np.testing.assert_allclose(y, [1 / 5, 3 / 5])
    assert x.dtype == np.int64


def test_ecdf_weights_problems_equally():
    # problem A: 1 of 2 runs at 4 evaluations; problem B: 4 of 4 runs at 1, 2, 2, 8
    x, y = evaluations_ecdf([4, -1], [2, 1, 8, 2])
    np.testing.assert_array_equal(x, [1, 2, 4, 8])
    # F(k) = (F_A(k) + F_B(k)) / 2
    np.testing.assert_allclose(y, [(0 + 1 / 4) / 2, (0 + 3 / 4) / 2, (1 / 2 + 3 / 4) / 2,
                                   (1 / 2 + 1) / 2])


def test_ecdf_without_successes_and_bad_input():
    x, y = evaluations_ecdf([-1, -1, -1])
    assert x.size == 0 and y.size == 0
    with pytest.raises(ValueError):
        evaluations_ecdf()
    with pytest.raises(ValueError):
        evaluations_ecdf([])
    with pytest.raises(ValueError, match="whole"):
        evaluations_ecdf([1.5, 2.0])


@given(st.lists(st.lists(st.integers(-1, 50), min_size=1, max_size=12), min_size=1, max_size=5))
def test_ecdf_matches_the_definition(groups):
    x, y = evaluations_ecdf(*groups)
    for k in range(0, 52):
        expected = np.mean([np.mean([0 <= e <= k for e in g]) for g in groups])
        at = np.searchsorted(x, k, side="right") - 1
        got = y[at] if at >= 0 else 0.0
        assert got == pytest.approx(expected, abs=1e-12)
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) >= -1e-15)
