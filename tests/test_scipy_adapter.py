"""``scipy.optimize.minimize(..., method=physopt_ref.scipy_method(name, ...))``, through SciPy.

Every registered optimizer is run by SciPy itself on a positive quadratic (the energy-based
optimizers need f > 0) with its registry test hyperparameters.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import OptimizeResult, OptimizeWarning, minimize

import physopt_ref
from physopt_ref import REGISTRY, registered_names, scipy_method

C = np.array([1.0, 3.0, 0.5])


def fun(x):
    return 0.5 * float(np.sum(C * x * x)) + 0.5


def jac(x):
    return C * x


X0 = np.array([1.0, -0.5, 2.0])


@pytest.mark.parametrize("name", registered_names())
def test_every_registered_optimizer_through_scipy(name):
    hp = REGISTRY[name].test_hyperparameters
    calls = {"fun": 0, "jac": 0}

    def counted(which, f):
        def wrapped(x):
            calls[which] += 1
            return f(x)
        return wrapped

    res = minimize(counted("fun", fun), X0, jac=counted("jac", jac),
                   method=scipy_method(name, **hp), options={"maxiter": 25})
    assert isinstance(res, OptimizeResult)
    for key in ("x", "fun", "jac", "nit", "nfev", "success", "status", "message"):
        assert key in res
    assert res.x.shape == X0.shape
    assert res.fun == pytest.approx(fun(res.x))
    np.testing.assert_allclose(res.jac, jac(res.x))
    assert res.fun <= fun(X0)
    assert 1 <= res.nit <= 25
    # the real calls (an optimizer that stopped moving, as BBI at V <= eps, is not re-evaluated)
    assert res.nfev == calls["fun"] and res.njev == calls["jac"] <= res.nit + 1
    if not res.success:
        assert res.status == 1 and res.nit == 25


def test_converges_and_reports_success():
    res = minimize(fun, X0, jac=jac, method=scipy_method("heavy_ball", lr=0.3, momentum=0.5),
                   tol=1e-8, options={"maxiter": 5000})
    assert res.success and res.status == 0
    assert np.max(np.abs(res.jac)) <= 1e-8
    assert res.message.startswith("Optimization terminated successfully: max|grad f|")
    assert res.nit < 5000


def test_maxiter_is_honoured():
    res = minimize(fun, X0, jac=jac, method=scipy_method("sgd", lr=1e-3),
                   options={"maxiter": 7})
    assert res.nit == 7 and not res.success and res.status == 1
    assert "Maximum number of iterations" in res.message


def test_jac_true_and_finite_differences():
    both = lambda x: (fun(x), jac(x))  # noqa: E731
    r1 = minimize(both, X0, jac=True, method=scipy_method("adam", lr=0.1),
                  options={"maxiter": 30})
    r2 = minimize(fun, X0, jac=jac, method=scipy_method("adam", lr=0.1), options={"maxiter": 30})
    np.testing.assert_allclose(r1.x, r2.x, rtol=1e-14)
    r3 = minimize(fun, X0, method=scipy_method("adam", lr=0.1), options={"maxiter": 30})
    np.testing.assert_allclose(r3.x, r2.x, rtol=1e-5, atol=1e-6)
    assert r3.nfev == 31 * (1 + X0.size)  # forward differences
    r4 = minimize(fun, X0, jac="3-point", method=scipy_method("adam", lr=0.1),
                  options={"maxiter": 30})
    np.testing.assert_allclose(r4.x, r2.x, rtol=1e-7, atol=1e-8)


def test_callback_forms_and_stop_iteration():
    seen = []

    def new_style(intermediate_result):
        seen.append(intermediate_result.fun)
        assert intermediate_result.fun == pytest.approx(fun(intermediate_result.x))
        if len(seen) == 4:
            raise StopIteration

    res = minimize(fun, X0, jac=jac, method=scipy_method("sgd", lr=0.1), callback=new_style,
                   options={"maxiter": 100})
    assert len(seen) == 4 and res.nit == 4
    assert res.status == 99 and not res.success
    assert "StopIteration" in res.message

    xs = []
    minimize(fun, X0, jac=jac, method=scipy_method("sgd", lr=0.1), callback=xs.append,
             options={"maxiter": 3})
    assert len(xs) == 3 and all(x.shape == X0.shape for x in xs)


def test_unknown_options_warn_like_scipy():
    with pytest.warns(OptimizeWarning, match="Unknown solver options: frobnicate"):
        res = minimize(fun, X0, jac=jac, method=scipy_method("sgd", lr=0.1),
                       options={"maxiter": 3, "frobnicate": 1})
    assert res.nit == 3



@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"bounds": [(-5, 5)] * 3}, "bounds="),
        ({"constraints": [{"type": "ineq", "fun": lambda x: x[0]}]}, "constraints="),
        ({"constraints": {"type": "ineq", "fun": lambda x: x[0]}}, "constraints="),
        ({"hess": lambda x: np.eye(3)}, "hess="),
        ({"hessp": lambda x, p: p}, "hessp="),
    ],
)
def test_bounds_constraints_and_hessians_are_refused(kwargs, name):
    """They used to be ignored with a warning while the result said "terminated
    successfully" (issue 12)."""
    with pytest.raises(ValueError, match=f"first-order method: it cannot honour {name}"):
        minimize(fun, X0, jac=jac, method=scipy_method("sgd", lr=0.1), options={"maxiter": 2},
                 **kwargs)


def test_args_ftarget_return_all_and_prebuilt_optimizer():
    def f2(x, scale):
        return scale * fun(x)

    def j2(x, scale):
        return scale * jac(x)

    res = minimize(f2, X0, args=(2.0,), jac=j2, method=scipy_method(physopt_ref.sgd(lr=0.1)),
                   options={"maxiter": 1000, "ftarget": 1.2, "return_all": True})
    assert res.success and res.fun <= 1.2
    assert len(res.allvecs) == res.nit + 1


def test_bad_construction():
    with pytest.raises(ValueError, match="unknown optimizer"):
        scipy_method("no_such_optimizer")
    with pytest.raises(ValueError, match="lr"):
        scipy_method("sgd", lr=-1.0)
