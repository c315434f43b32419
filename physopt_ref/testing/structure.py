"""The contract's structural properties: zero gradients, refused inputs, tree kinds, the state's
structure, the saturating count, per-run hyperparameters and pickling.

The behavioural properties (purity, dtype, device, determinism, ensembles, backend parity)
live in :mod:`physopt_ref.testing.contract`.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from physopt_ref.backends import namespace_name, to_numpy
from physopt_ref.core.context import COUNT_MAX
from physopt_ref.core.tree import tree_flatten, tree_unflatten
from physopt_ref.testing._compare import close_condition
from physopt_ref.testing._result import CheckResult, Condition, combine
from physopt_ref.testing.contract import (
    ENSEMBLE_TOL,
    NP,
    _example,
    _hp,
    _members_match,
    _pairs,
    _started,
    _violations,
    count_of,
    state_leaves,
)
from physopt_ref.testing.subject import Subject, as_subject
from physopt_ref.testing.workloads import (
    CONTRACT_WORKLOAD,
    QuadraticWorkload,
    leaf_paths,
    on_backend,
    trajectory,
)

__all__ = [
    "check_count_saturates",
    "check_invalid_hyperparameters_refused",
    "check_mismatched_inputs_refused",
    "check_per_run_arrays_checked",
    "check_per_run_hyperparameter",
    "check_pickles",
    "check_state_structure",
    "check_tree_kinds",
    "check_zero_gradient_finite",
    "state_signature",
]


def check_zero_gradient_finite(
    opt: Any, *, workload: QuadraticWorkload = CONTRACT_WORKLOAD, steps: int = 3
) -> CheckResult:
    """All-zero gradients (a flat point) give finite parameters."""
    subject, opt, params, state = _started(opt, workload)
    zeros = tree_unflatten(tree_flatten(params)[1],
                           [np.zeros_like(v) for v in tree_flatten(params)[0]])
    problems = []
    for t in range(steps):
        params, state = opt.step(params, zeros, state, loss=np.asarray(1.0))
        for name, leaf in zip(leaf_paths(params), tree_flatten(params)[0], strict=True):
            bad = int(np.sum(~np.isfinite(to_numpy(leaf))))
            if bad:
                problems.append(f"step {t + 1}, leaf {name}: {bad} non-finite entries")
    return _violations("zero gradient stays finite", problems,
                       _example(subject, workload, steps=steps))


def check_invalid_hyperparameters_refused(subject: Subject) -> CheckResult:
    """NaN for each numeric hyperparameter, and an unknown keyword, are refused at build time:
    a ``ValueError`` or ``TypeError`` whose message names the hyperparameter."""
    subject = as_subject(subject)
    problems = []
    checked = 0
    for key, value in subject.hyperparameters.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        checked += 1
        try:
            subject.build(**{key: float("nan")})
        except (ValueError, TypeError) as exc:
            if not re.search(key, str(exc)):
                problems.append(f"{key}=nan: the error does not name {key!r}: {exc}")
        else:
            problems.append(f"{key}=nan was accepted")
    try:
        subject.build(not_a_hyperparameter=1.0)
    except TypeError:
        pass
    else:
        problems.append("an unknown keyword (not_a_hyperparameter) was accepted")
    if checked == 0 and subject.hyperparameters:
        problems.append("no numeric hyperparameter to check")
    return _violations("invalid hyperparameters refused", problems, _example_hp(subject))


def _example_hp(subject: Subject) -> dict[str, Any]:
    return {"optimizer": subject.name, **_hp(subject)}


def _raises(fn: Any, kinds: tuple[type[BaseException], ...], match: str | None = None) -> str:
    """'' when ``fn()`` raises one of ``kinds`` (with ``match`` in the message), else why not."""
    try:
        fn()
    except kinds as exc:
        if match is not None and not re.search(match, str(exc)):
            return f"raised {type(exc).__name__} without {match!r} in the message: {exc}"
        return ""
    return "raised nothing"


def check_mismatched_inputs_refused(
    opt: Any, *, workload: QuadraticWorkload = CONTRACT_WORKLOAD
) -> CheckResult:
    """Grads of another structure or shape (``ValueError``), integer parameters (``TypeError``)
    and, for a step that needs the loss, a missing loss (``ValueError`` naming it) are refused.

    The workload must be a dict of at least two leaves.
    """
    subject, opt, params, state = _started(opt, workload)
    if not (isinstance(params, dict) and len(params) >= 2):
        raise ValueError("check_mismatched_inputs_refused needs a dict workload of >= 2 leaves")
    loss, grads = workload.loss_and_grads(NP, params, 0)
    first, *rest = list(grads)
    fewer = {k: grads[k] for k in rest}
    short = {**grads, first: grads[first][..., :-1] if grads[first].ndim else grads[first][None]}
    integer = {k: np.arange(np.size(v)).reshape(np.shape(v)) for k, v in params.items()}
    cases: dict[str, tuple[Callable[[], Any], tuple[type[Exception], ...], str | None]] = {
        "grads missing a leaf": (lambda: opt.step(params, fewer, state, loss=loss),
                                 (ValueError,), None),
        "grads of another shape": (lambda: opt.step(params, short, state, loss=loss),
                                   (ValueError,), None),
        "integer parameters at init": (lambda: opt.init(integer), (TypeError,), None),
    }
    if getattr(opt, "needs_loss", False):
        cases["no loss for a step that needs it"] = (lambda: opt.step(params, grads, state),
                                                     (ValueError,), "loss")
    problems = [f"{what}: {why}" for what, (fn, kinds, match) in cases.items()
                if (why := _raises(fn, kinds, match))]
    return _violations("mismatched inputs refused", problems, _example(subject, workload))


def check_tree_kinds(
    opt: Any,
    *,
    workload: QuadraticWorkload = CONTRACT_WORKLOAD,
    steps: int = 5,
    elementwise: bool = False,
    rtol: float = 1e-12,
) -> CheckResult:
    """A single array and a list of arrays are accepted as trees (finite results).

    With ``elementwise=True`` (a rule that does not see how parameters are split into leaves)
    both runs must also agree to ``rtol``.
    """
    subject = as_subject(opt)
    x = np.concatenate([np.ravel(v) for v in tree_flatten(workload.x0)[0]])
    c = np.concatenate([np.ravel(v) for v in tree_flatten(workload.curvature)[0]])
    cut = max(1, x.size // 2)
    kinds = {
        "array": (lambda v: v, lambda t: t),
        "list": (lambda v: [v[:cut], v[cut:]], lambda t: np.concatenate(t)),
    }
    results = {}
    for kind, (split, join) in kinds.items():
        opt_k = subject.build()
        params = split(x)
        state = opt_k.init(params)
        for _ in range(steps):
            flat = join(params)
            loss = 0.5 * np.sum(c * flat * flat) + workload.offset
            params, state = opt_k.step(params, split(c * flat), state, loss=np.asarray(loss))
        results[kind] = join(params)
    conditions = [Condition("non-finite entries", sum(int(np.sum(~np.isfinite(r)))
                                                     for r in results.values()), 0, "<=",
                            "after single-array and list runs")]
    if elementwise:
        conditions.append(close_condition([("the final parameters", results["array"],
                                            results["list"])], rtol, 0.0))
    return combine("single array and list trees", conditions, _example(subject, workload))


def state_signature(state: Any) -> tuple[list[tuple[str, tuple[int, ...], str]], list[str]]:
    """``(path, shape, dtype)`` of every array of a state tree, and the problems found.

    A state is a tree: NamedTuples, dicts, tuples and lists (nested as deep as needed) whose
    leaves are arrays, the way ``jax.jit``, ``jax.lax.scan`` and ``torch.compile`` carry it (and
    optax's states are built). A leaf that is a Python number, ``None``, a NumPy scalar or any
    other host object is a problem: it cannot be traced, and it changes the compiled program
    when it changes.
    """
    out, problems = [], []
    for path, a in state_leaves(state):
        if isinstance(a, bool | int | float | complex | np.generic) or a is None or not (
                hasattr(a, "shape") and hasattr(a, "dtype")):
            name = type(a).__name__
            kind = "a NumPy scalar" if isinstance(a, np.generic) else (
                f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}")
            problems.append(f"{path} is {kind}, not an array")
            continue
        out.append((path, tuple(a.shape), str(a.dtype)))
    return out, problems


def check_state_structure(
    opt: Any,
    xp: Any = NP,
    *,
    workload: QuadraticWorkload = CONTRACT_WORKLOAD,
    batch_shape: tuple[int, ...] = (2,),
    steps: int = 6,
) -> CheckResult:
    """Every leaf of the state is an array (:func:`state_signature`); the state's type,
    structure, shapes and dtypes never change; a top-level ``count`` field, where there is one,
    is ``int32`` of the batch shape and counts the steps."""
    subject = as_subject(opt)
    opt = subject.build()
    bn = len(batch_shape)
    example = _example(subject, workload, backend=namespace_name(xp), batch_shape=batch_shape)
    params = on_backend(xp, workload.start(batch_shape), xp.float32)
    state = opt.init(params, batch_ndim=bn)
    kind = type(state)
    problems = []
    declared = getattr(opt, "state_type", None)
    if declared is not None and kind is not declared:
        problems.append(f"init returned a {kind.__name__}, the optimizer declares "
                        f"{declared.__name__}")
    count = count_of(state)
    if count is not None and (getattr(count, "dtype", None) != xp.int32
                              or tuple(getattr(count, "shape", ())) != batch_shape):
        problems.append(f"count is {getattr(count, 'dtype', type(count).__name__)}"
                        f"{tuple(getattr(count, 'shape', ()))}, not int32{batch_shape}")
    first, bad = state_signature(state)
    problems += bad
    for t in range(steps):
        loss, grads = workload.loss_and_grads(xp, params, bn)
        params, state = opt.step(params, grads, state, loss=loss)
        if type(state) is not kind:
            problems.append(f"step {t + 1} returned a {type(state).__name__}")
        sig, bad = state_signature(state)
        problems += [b for b in bad if b not in problems]
        if sig != first:
            diff = next((f"{a} -> {b}" for a, b in zip(first, sig, strict=False) if a != b),
                        f"{len(first)} -> {len(sig)} arrays")
            problems.append(f"the state changed at step {t + 1}: {diff}")
    count = count_of(state)
    if count is not None and hasattr(count, "shape"):
        counts = to_numpy(count)
        if not np.array_equal(counts, np.full(batch_shape, steps)):
            problems.append(f"count is {counts.tolist()} after {steps} steps")
    return _violations("state of arrays", problems, example)


def check_count_saturates(
    opt: Any, *, workload: QuadraticWorkload = CONTRACT_WORKLOAD, steps: int = 3
) -> CheckResult:
    """From ``COUNT_MAX - 1`` the count reaches ``COUNT_MAX`` and stays there, as ``int32``."""
    subject, opt, params, state = _started(opt, workload)
    state = state._replace(count=np.asarray(COUNT_MAX - 1, dtype=np.int32))
    problems = []
    for t in range(steps):
        loss, grads = workload.loss_and_grads(NP, params, 0)
        params, state = opt.step(params, grads, state, loss=loss)
        if int(state.count) != COUNT_MAX or state.count.dtype != np.int32:
            problems.append(f"step {t + 1}: count {state.count!r}")
    return _violations("count saturates", problems, _example(subject, workload))


def check_per_run_hyperparameter(
    subject: Subject,
    hp: str,
    values: Sequence[float],
    xp: Any = NP,
    *,
    workload: QuadraticWorkload = CONTRACT_WORKLOAD,
    steps: int = 8,
    rtol: float = ENSEMBLE_TOL["rtol"],
    atol: float = ENSEMBLE_TOL["atol"],
) -> CheckResult:
    """K values of ``hp`` as one per-run array == K separate runs (a sweep in one array)."""
    subject = as_subject(subject)
    array = xp.asarray(np.asarray(values), dtype=xp.float64)
    example = _example(subject, workload, backend=namespace_name(xp), per_run={hp: values})
    return _members_match("per-run hyperparameter = separate runs", subject.build(**{hp: array}),
                          lambda k, index: subject.build(**{hp: values[k], **subject.as_member(k)}),
                          lambda k, index: f"{hp}={values[k]}, ", xp, (len(values),), workload,
                          steps, rtol, atol, example)


def check_per_run_arrays_checked(
    subject: Subject, hp: str, values: Sequence[float],
    *, workload: QuadraticWorkload = CONTRACT_WORKLOAD,
) -> CheckResult:
    """A per-run array is range-checked when built (NaN refused, naming ``hp``), its shape
    against the ensemble at ``init`` ("batch shape"), its namespace too ("namespace")."""
    subject = as_subject(subject)
    problems = []
    why = _raises(lambda: subject.build(**{hp: np.asarray([np.nan, 1.0])}),
                  (ValueError, TypeError), hp)
    if why:
        problems.append(f"{hp}=[nan, 1.0] {why}")
    opt = subject.build(**{hp: np.asarray(values[:2])})
    why = _raises(lambda: opt.init(workload.start((3,)), batch_ndim=1), (ValueError,),
                  "batch shape")
    if why:
        problems.append(f"two values for an ensemble of 3: {why}")
    try:
        import array_api_strict as xps
    except ImportError:
        pass
    else:
        foreign = on_backend(xps, workload.start((2,)))
        why = _raises(lambda: opt.init(foreign, batch_ndim=1), (TypeError,), "namespace")
        if why:
            problems.append(f"a NumPy per-run array with array-api-strict parameters: {why}")
    return _violations("per-run arrays checked", problems,
                       {**_example_hp(subject), "per_run": {hp: list(values)}})


def check_pickles(
    opt: Any, *, workload: QuadraticWorkload = CONTRACT_WORKLOAD, steps: int = 5
) -> CheckResult:
    """The optimizer pickles, its copy has the same repr and takes the same steps (bitwise)."""
    subject = as_subject(opt)
    opt = subject.build()
    copy = pickle.loads(pickle.dumps(opt))
    names = leaf_paths(workload.x0)
    conditions = [Condition("repr differences", int(repr(copy) != repr(opt)), 0, "<=",
                            f"{copy!r} vs {opt!r}")]
    a = trajectory(opt, NP, workload.start(), steps, workload=workload)
    b = trajectory(copy, NP, workload.start(), steps, workload=workload)
    conditions.append(close_condition(_pairs(b, a, names), 0.0, 0.0,
                                      "max |copy - original| / tolerance 0"))
    return combine("pickles", conditions, _example(subject, workload))
