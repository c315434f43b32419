r"""Statistics of ensembles of runs: Wilson score intervals and runtime ECDFs.

Both are about the question benchmark tables answer: how often, and how fast, does a method
reach a target value? A success rate from a few dozen runs needs an interval
(:func:`wilson_interval`); the speed is the number of objective evaluations a run needed, and
the distribution of those numbers over runs and problems is summarised as an empirical
cumulative distribution function (:func:`evaluations_ecdf`), as in COCO/BBOB.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["evaluations_ecdf", "wilson_interval"]


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    r"""The Wilson score interval of a binomial proportion.

    With :math:`\hat p = k/n` and :math:`z` the :math:`(1+c)/2` quantile of the standard normal
    distribution (:math:`z = 1.95996` for :math:`c = 0.95`):

    .. math::

        \frac{\hat p + \frac{z^2}{2n}}{1 + \frac{z^2}{n}}
        \pm \frac{z}{1 + \frac{z^2}{n}} \sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}.

    Unlike the Wald interval :math:`\hat p \pm z\sqrt{\hat p(1-\hat p)/n}` it never leaves
    :math:`[0, 1]` and is not empty at :math:`k = 0` or :math:`k = n` (0 of 24 gives
    :math:`[0, 0.138]`), and its coverage stays close to the nominal level for small :math:`n`
    (Brown, Cai & DasGupta 2001, who recommend it for :math:`n \le 40`).

    Parameters
    ----------
    successes : int
        :math:`k`, the number of successful runs, :math:`0 \le k \le n`.
    trials : int
        :math:`n \ge 1`, the number of runs.
    confidence : float
        The confidence level :math:`c \in (0, 1)`; default 0.95.

    Returns
    -------
    (low, high) : tuple of float
        The interval, inside :math:`[0, 1]`; ``low = 0`` at :math:`k = 0`, ``high = 1`` at
        :math:`k = n`.

    References
    ----------
    E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
    J. Am. Stat. Assoc. 22 (158), 209-212 (1927).
    L. D. Brown, T. T. Cai, A. DasGupta, "Interval estimation for a binomial proportion",
    Statistical Science 16 (2), 101-133 (2001).
    """
    for name, value in (("successes", successes), ("trials", trials)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be an int, got {value!r}")
    k, n = int(successes), int(trials)
    if n < 1:
        raise ValueError(f"trials must be >= 1, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"successes must be in [0, trials = {n}], got {k}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + 0.5 * confidence)
    p = k / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    low = 0.0 if k == 0 else max(0.0, center - half)
    high = 1.0 if k == n else min(1.0, center + half)
    return low, high


def evaluations_ecdf(*groups: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    r"""The empirical distribution of evaluations-to-target (a runtime ECDF, as in COCO/BBOB).

    Each argument is one problem: the evaluations each of its runs needed to reach the target,
    with a negative number (``-1``) for a run that never reached it. The result is the
    step function

    .. math::

        F(k) = \frac{1}{P} \sum_{p=1}^{P} \frac{\#\{\text{runs of } p
        \text{ that reached the target within } \le k \text{ evaluations}\}}
        {\#\{\text{runs of } p\}},

    each problem weighted equally (as COCO weights each function-target pair equally, whatever
    the number of runs on it). Unsuccessful runs count in the denominator but never in the
    numerator, so :math:`F` ends at the mean success rate, not at 1.

    Parameters
    ----------
    *groups : array_like of int
        Per problem, the evaluations-to-target of every run (``Trace.evaluations_to_target``).

    Returns
    -------
    x : numpy.ndarray of int64
        The evaluation counts at which :math:`F` jumps, strictly increasing (empty when no run
        succeeded).
    y : numpy.ndarray of float64
        :math:`F` at (and right after) each ``x``: non-decreasing, in :math:`(0, 1]`.

    Notes
    -----
    COCO plots :math:`F` against :math:`\log_{10}` of the evaluations divided by the dimension,
    to pool dimensions; here the axis is the evaluations themselves (plot it on a log axis).
    """
    if not groups:
        raise ValueError("evaluations_ecdf needs at least one group of runs")
    xs, ws = [], []
    for g in groups:
        runs = np.asarray(g).ravel()
        if runs.size == 0:
            raise ValueError("every group needs at least one run")
        if runs.dtype.kind not in "iu":
            if not np.all(runs == np.round(runs)):
                raise ValueError("evaluations must be whole numbers")
            runs = runs.astype(np.int64)
        hit = runs[runs >= 0]
        xs.append(hit.astype(np.int64))
        ws.append(np.full(hit.size, 1.0 / (runs.size * len(groups))))
    x_all = np.concatenate(xs)
    w_all = np.concatenate(ws)
    if x_all.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    x, inverse = np.unique(x_all, return_inverse=True)
    y = np.cumsum(np.bincount(inverse, weights=w_all, minlength=x.size))
    return x, np.minimum(y, 1.0)
