"""Every physopt_ref optimizer as a custom method of :func:`scipy.optimize.minimize`.

>>> import numpy as np
>>> from scipy.optimize import minimize, rosen, rosen_der
>>> import physopt_ref
>>> res = minimize(rosen, np.zeros(2), jac=rosen_der,
...                method=physopt_ref.scipy_method("adam", lr=0.05),
...                options={"maxiter": 3000})
>>> bool(res.fun < 1e-3)
True

SciPy calls a callable ``method`` as ``method(fun, x0, args=..., jac=..., hess=..., hessp=...,
bounds=..., constraints=..., callback=..., **options)`` (``scipy.optimize.minimize``, "Custom
minimizers"), with ``tol`` folded into ``options``. The adapter runs the optimizer on the
flattened float64 ``x0`` as one run (``batch_ndim=0``), passing the objective's value as the
``loss`` that energy-based optimizers need.

SciPy's optimizer module is imported when :func:`scipy_method` is called, not with
``physopt_ref``: ``import physopt_ref`` stays light.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from physopt_ref.core.contract import Optimizer
from physopt_ref.core.registry import REGISTRY, get_optimizer

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult

__all__ = ["scipy_method"]

_STOP_ITERATION_MESSAGE = "`callback` raised `StopIteration`."


def _wants_intermediate_result(callback: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(callback).parameters
    except (TypeError, ValueError):
        return False
    return set(params) == {"intermediate_result"}


def _finite_difference(
    fun: Callable[[np.ndarray], float], x: np.ndarray, f0: float, scheme: str
) -> np.ndarray:
    """Forward (``2-point``) or central (``3-point``) differences of ``fun`` at ``x``."""
    grad = np.empty_like(x)
    eps = np.finfo(np.float64).eps
    for i in range(x.size):
        if scheme == "3-point":
            h = eps ** (1.0 / 3.0) * max(1.0, abs(x[i]))
            xp, xm = x.copy(), x.copy()
            xp[i] += h
            xm[i] -= h
            grad[i] = (fun(xp) - fun(xm)) / (2.0 * h)
        else:
            h = np.sqrt(eps) * max(1.0, abs(x[i]))
            xp = x.copy()
            xp[i] += h
            grad[i] = (fun(xp) - f0) / h
    return grad


def scipy_method(
    optimizer: str | Optimizer, **hyperparameters: Any
) -> Callable[..., OptimizeResult]:
    """A ``method=`` for :func:`scipy.optimize.minimize` that runs a physopt_ref optimizer.

    Parameters
    ----------
    optimizer : str or Optimizer
        A registry name (``"bbi"``, ``"heavy_ball"``, ...) or a built :class:`Optimizer`.
    **hyperparameters
        The optimizer's hyperparameters (with a name); validated here, so a bad value fails
        before SciPy is called.

    Returns
    -------
    callable
        ``method(fun, x0, args=(), jac=None, callback=None, **options) -> OptimizeResult``.

    Notes
    -----
    Options (``options={...}`` of :func:`scipy.optimize.minimize`):

    ``maxiter`` : int, default 1000
        Most optimizer steps (``nit``).
    ``gtol`` : float, default 1e-5
        Stop with success when ``max|∇f| <= gtol`` (BFGS's default and norm). ``tol=`` of
        ``minimize`` sets it when ``gtol`` is not given.
    ``ftarget`` : float, optional
        Also stop with success once ``f <= ftarget``.
    ``return_best`` : bool, default True
        When the run did not converge, return the lowest point seen (energy-conserving and
        momentum methods oscillate); False returns the last iterate, as SciPy's descent methods
        do. A converged run returns the iterate that met the criterion.
    ``disp``, ``return_all`` : as in SciPy (``allvecs`` holds every iterate).

    Unknown options are ignored with an :class:`~scipy.optimize.OptimizeWarning`, as SciPy's
    own methods do. ``hess``, ``hessp``, ``bounds`` and ``constraints`` raise
    :class:`ValueError`: the methods are unconstrained and first-order, and a result that
    ignored them would still say "Optimization terminated successfully".

    ``jac`` may be a callable (or ``True``, which SciPy turns into one); ``None``, ``"2-point"``
    and ``"3-point"`` use finite differences (counted in ``nfev``).

    ``callback`` is called after every step, as ``callback(intermediate_result=OptimizeResult)``
    when that is its only parameter, else ``callback(xk)``; raising :class:`StopIteration`
    ends the run with status 99, as in SciPy.

    Status codes: 0 converged (``gtol`` or ``ftarget``), 1 ``maxiter`` reached, 3 NaN
    encountered, 99 stopped by the callback.
    """
    from scipy.optimize import OptimizeResult, OptimizeWarning

    if isinstance(optimizer, Optimizer):
        if hyperparameters:
            raise TypeError("give hyperparameters with a name, not with a built Optimizer")
        opt = optimizer
    elif isinstance(optimizer, str):
        opt = get_optimizer(optimizer, **hyperparameters)
    else:
        raise TypeError(
            f"optimizer must be a registry name or an Optimizer, got {type(optimizer).__name__}; "
            f"registered: {sorted(REGISTRY)}"
        )

    def method(
        fun: Callable[..., Any],
        x0: Any,
        args: tuple[Any, ...] = (),
        jac: Any = None,
        hess: Any = None,
        hessp: Any = None,
        bounds: Any = None,
        constraints: Any = (),
        callback: Callable[..., Any] | None = None,
        maxiter: int | None = None,
        gtol: float | None = None,
        tol: float | None = None,
        ftarget: float | None = None,
        return_best: bool = True,
        disp: bool = False,
        return_all: bool = False,
        **unknown_options: Any,
    ) -> OptimizeResult:
        ignored = dict(unknown_options)
        refused = [name for name, value in (("hess", hess), ("hessp", hessp), ("bounds", bounds))
                   if value is not None]
        no_constraints = constraints is None or (
            isinstance(constraints, list | tuple | dict) and len(constraints) == 0
        )
        if not no_constraints:
            refused.append("constraints")
        if refused:
            raise ValueError(
                f"physopt_ref method {opt.name!r} is an unconstrained first-order method: it "
                f"cannot honour {', '.join(f'{n}=' for n in refused)} (refused rather than "
                "ignored, which would report a constrained problem as solved)"
            )
        if ignored:
            warnings.warn(
                f"Unknown solver options: {', '.join(map(str, ignored))} "
                f"(ignored by physopt_ref method {opt.name!r})",
                OptimizeWarning,
                stacklevel=3,
            )
        maxiter = 1000 if maxiter is None else int(maxiter)
        if maxiter < 0:
            raise ValueError(f"maxiter must be >= 0, got {maxiter}")
        if gtol is None:
            gtol = 1e-5 if tol is None else float(tol)
        x = np.array(x0, dtype=np.float64).reshape(-1)
        shape = np.shape(x0) or (1,)

        nfev = 0
        njev = 0

        def f_of(point: np.ndarray) -> float:
            nonlocal nfev
            nfev += 1
            return float(np.asarray(fun(point.reshape(shape), *args)).reshape(()))

        def grad_of(point: np.ndarray, f_point: float) -> np.ndarray:
            nonlocal njev, nfev
            if callable(jac):
                njev += 1
                return np.asarray(jac(point.reshape(shape), *args), dtype=np.float64).reshape(-1)
            scheme = jac if jac in ("2-point", "3-point") else "2-point"
            return _finite_difference(f_of, point, f_point, scheme)

        f = f_of(x)
        g = grad_of(x, f)
        state = opt.init(x, batch_ndim=0)
        best = (x, f, g)
        allvecs = [x.copy()] if return_all else []
        intermediate = callback is not None and _wants_intermediate_result(callback)

        def converged(f_now: float, g_now: np.ndarray) -> bool:
            if ftarget is not None and f_now <= ftarget:
                return True
            return bool(np.max(np.abs(g_now), initial=0.0) <= gtol)

        nit = 0
        status, message = 1, "Maximum number of iterations has been exceeded."
        if not (np.isfinite(f) and np.all(np.isfinite(g))):
            status, message = 3, "NaN result encountered."
        elif converged(f, g):
            status, message = 0, "Optimization terminated successfully."
        else:
            while nit < maxiter:
                x, state = opt.step(x, g, state, loss=np.asarray(f))
                x = np.asarray(x, dtype=np.float64)
                nit += 1
                f = f_of(x)
                g = grad_of(x, f)
                if return_all:
                    allvecs.append(x.copy())
                if not (np.isfinite(f) and np.all(np.isfinite(g))):
                    status, message = 3, "NaN result encountered."
                    break
                if f < best[1]:
                    best = (x, f, g)
                if callback is not None:
                    try:
                        if intermediate:
                            res = OptimizeResult(x=x.reshape(shape).copy(), fun=f)
                            callback(intermediate_result=res)
                        else:
                            callback(x.reshape(shape).copy())
                    except StopIteration:
                        status, message = 99, _STOP_ITERATION_MESSAGE
                        break
                if converged(f, g):
                    status, message = 0, "Optimization terminated successfully."
                    break
        if status != 0 and (return_best or status == 3):
            x_out, f_out, g_out = best
        else:
            x_out, f_out, g_out = x, f, g
        if disp:
            print(
                f"{message}\n         Current function value: {f_out:.6g}\n"
                f"         Iterations: {nit}\n         Function evaluations: {nfev}"
            )
        result = OptimizeResult(
            x=x_out.reshape(shape),
            fun=f_out,
            jac=g_out.reshape(shape),
            nit=nit,
            nfev=nfev,
            njev=njev,
            status=status,
            success=status == 0,
            message=message,
            optimizer=repr(opt),
        )
        if return_all:
            result["allvecs"] = [v.reshape(shape) for v in allvecs]
        return result

    method.__name__ = f"physopt_ref_{opt.name}"
    method.__doc__ = f"scipy.optimize.minimize method running {opt!r} (see scipy_method)."
    return method
