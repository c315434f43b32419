r"""Step-level physics: bias correction under a constant gradient, and bounded step sizes.

**Bias correction.** Moment estimates started at zero are biased towards zero by a factor
:math:`1 - \beta^t`; dividing by it (Kingma & Ba 2015, Sec. 3; Dyna's :math:`\mu_t`, Han 2018,
Eq. 19) makes the estimates exact under a constant gradient from the first step, so a
bias-corrected method takes the *same* step every time: Adam
:math:`-\eta g/(|g| + \epsilon)`, Dyna :math:`-\alpha g/(2\zeta\hat\omega^2)`, a bias-corrected
heavy ball :math:`-\eta g`. :func:`check_bias_correction` checks the steps (and, optionally,
estimates read from the state) against the expected values. A correction off by one step shows
at once: Adam's first step would be :math:`1/(1+\beta)` of the others.

**Bounded steps.** Some methods promise a largest step whatever the gradients: Dyna
:math:`|\Delta\theta_t| \le \alpha_t/(\zeta_{\min}(1 + \sqrt{1-\beta}))` per coordinate (the
sharp form of Han 2018 Sec. 4.2, established by the project's tests), ECDSep
:math:`\|\Delta q\| \le \Delta t/\sqrt{s}` over the tree (its speed limit :math:`|\dot q|^2 <
1/s`, spec ``shared/specs/ecd.md`` §3.3, measured 0.9999-1.0000 for s = 1).
:func:`step_sizes` measures the steps of a run, :func:`check_step_bound` compares them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from physopt_ref.backends import to_numpy
from physopt_ref.core.tree import tree_flatten
from physopt_ref.testing._compare import close_condition
from physopt_ref.testing._result import CheckResult, Condition, combine

__all__ = [
    "check_bias_correction",
    "check_step_bound",
    "dyna_step_bound",
    "ecdsep_step_bound",
    "step_sizes",
]

#: ``(name, actual, expected, rtol, atol)`` for one estimate read from the state at step t.
Estimate = tuple[str, Any, Any, float, float]


def check_bias_correction(
    opt: Any,
    grad: Any,
    steps: int,
    *,
    expected_step: Any = None,
    step_rtol: float | None = 1e-9,
    step_atol: float = 0.0,
    estimates: Callable[[Any, int], Iterable[Estimate]] | None = None,
) -> CheckResult:
    r"""Under the constant gradient ``grad`` (one array) a bias-corrected step is the same from
    the first step on.

    Parameters
    ----------
    opt : optimizer
        Started at zero parameters of ``grad``'s shape.
    grad : array
        The constant gradient (NumPy).
    steps : int
        Steps taken.
    expected_step : array, optional
        :math:`\Delta\theta` expected at every step; default: the first step (so the check is
        "every step equals the first").
    step_rtol, step_atol : float
        Tolerances of the steps; ``step_rtol=None`` skips the comparison of steps (only the
        ``estimates`` are checked).
    estimates : callable, optional
        ``estimates(state, t)`` yields ``(name, actual, expected, rtol, atol)`` for quantities
        read from the state after step ``t`` (Adam's :math:`\hat m_t = g`, say).

    Returns
    -------
    CheckResult
        The verdict; ``values["params"]`` holds the final parameters.
    """
    grad = np.asarray(grad)
    x = np.zeros_like(grad)
    state = opt.init(x)
    moves, est_pairs = [], []
    for t in range(1, steps + 1):
        new, state = opt.step(x, grad, state, loss=np.asarray(1.0))
        moves.append((t, to_numpy(new) - to_numpy(x)))
        if estimates is not None:
            est_pairs += [(name, t, a, e, r, at) for name, a, e, r, at in estimates(state, t)]
        x = new
    conditions = []
    if step_rtol is not None:
        want = moves[0][1] if expected_step is None else np.asarray(expected_step)
        what = "the first step" if expected_step is None else "the expected step"
        conditions.append(close_condition(
            ((f"step {t} vs {what}", move, want) for t, move in moves), step_rtol, step_atol,
            f"max |step_t - {'step_1' if expected_step is None else 'expected'}| / tolerance"))
    by_tol: dict[tuple[float, float], list[Any]] = {}
    for name, t, a, e, r, at in est_pairs:
        by_tol.setdefault((r, at), []).append((f"{name} after step {t}", to_numpy(a), e))
    for (r, at), pairs in by_tol.items():
        conditions.append(close_condition(pairs, r, at,
                                          "max |estimate - expected| / tolerance"))
    if not conditions:
        raise ValueError("nothing to check: give step_rtol or estimates")
    return combine("bias correction", conditions, {"grad": grad, "steps": steps},
                   values={"params": x, "state": state})


def step_sizes(
    opt: Any,
    params: Any,
    gradients: Sequence[Any] | Callable[[Any], tuple[Any, Any]],
    *,
    steps: int | None = None,
    norm: str = "abs",
    before_step: Callable[[int, Any], Any] | None = None,
) -> np.ndarray:
    r"""The steps :math:`\Delta\theta_t` of a run, measured.

    Parameters
    ----------
    gradients : sequence of trees, or callable
        One gradient tree per step (then the loss passed is None), or ``params -> (loss,
        grads)``, called before each of ``steps`` steps.
    norm : {"abs", "l2"}
        ``"abs"``: every element's :math:`|\Delta\theta|`, leaves concatenated, shape
        ``(T, n)``; ``"l2"``: the Euclidean norm over the whole tree per step, shape ``(T,)``.
    before_step : callable, optional
        ``before_step(t, state) -> state`` before step ``t`` (1-based): restarts, say.
    """
    if norm not in ("abs", "l2"):
        raise ValueError(f"norm must be 'abs' or 'l2', got {norm!r}")
    if callable(gradients):
        if steps is None:
            raise ValueError("give steps with a gradient function")
        fn = gradients
    else:
        given = list(gradients)
        steps = len(given)
        seq = iter(given)

        def fn(_: Any) -> tuple[Any, Any]:
            return None, next(seq)

    state = opt.init(params)
    out: list[Any] = []
    for t in range(1, steps + 1):
        if before_step is not None:
            state = before_step(t, state)
        loss, grads = fn(params)
        new, state = opt.step(params, grads, state, loss=loss)
        d = [to_numpy(a) - to_numpy(b) for a, b in zip(tree_flatten(new)[0],
                                                        tree_flatten(params)[0], strict=True)]
        if norm == "abs":
            out.append(np.concatenate([np.abs(np.ravel(v)) for v in d]))
        else:
            out.append(math.sqrt(sum(float(np.sum(v**2)) for v in d)))
        params = new
    return np.asarray(out)


def check_step_bound(
    sizes: Any, bound: Any, *, rtol: float = 1e-12, example: dict[str, Any] | None = None,
    what: str = "|step|",
) -> CheckResult:
    """Every measured step within its bound: ``max(sizes / bound) <= 1 + rtol``.

    ``bound`` broadcasts against ``sizes`` (a number, one value per step as ``(T, 1)``, ...).
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), sizes.shape)
    if sizes.size == 0:
        return CheckResult("bounded step", Condition(f"max {what} / bound", 0.0, 1.0 + rtol),
                           example or {})
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bound > 0, sizes / bound, np.where(sizes == 0, 0.0, np.inf))
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    i = tuple(int(v) for v in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
    detail = (f"step {i[0] + 1}" + (f", element {i[1:]}" if len(i) > 1 else "")
              + f": {what} = {sizes[i]:.6g}, bound {bound[i]:.6g}")
    return combine("bounded step", [Condition(f"max {what} / bound", float(ratio[i]), 1.0 + rtol,
                                              "<=", detail)], example or {})


def dyna_step_bound(alpha: Any, beta: float, zeta_min: Any) -> Any:
    r"""Dyna's largest step per coordinate: :math:`\alpha/(\zeta_{\min}(1 + \sqrt{1-\beta}))`.

    ``zeta_min`` is the smallest :math:`\zeta` used so far (one value per step broadcasts).
    """
    return np.asarray(alpha) / (np.asarray(zeta_min) * (1.0 + math.sqrt(1.0 - beta)))


def ecdsep_step_bound(dt: float, s: float) -> float:
    r"""ECDSep's largest step over the whole tree: :math:`\Delta t/\sqrt{s}`."""
    return dt / math.sqrt(s)
