"""Checks for ``torch.optim.Optimizer`` subclasses: the properties that apply to an in-place
optimizer built as ``cls(params, **hyperparameters)``.

A torch optimizer holds its state inside and updates the parameters in place (the documented
``optimizer.step()`` convention), so the kit checks it in torch's terms:

- **determinism**: two runs from the same start give the same bits;
- **dtype kept**: float32, float64 and bfloat16 parameters keep their dtype, and every state
  tensor shaped like a parameter keeps it too (finite values);
- **device kept** and **no host synchronisation**: a run on torch's ``meta`` device, whose
  tensors have no data: any step that reads a value on the host (``.item()``, ``float()``,
  ``bool()`` of a tensor, a NumPy conversion) raises there. The parameters and the state
  tensors shaped like them must stay on ``meta`` (a 0-d CPU ``step`` count, as torch's own
  optimizers keep by design, is allowed);
- **state_dict round trip**: ``state_dict()`` saved with ``torch.save`` and loaded with
  ``torch.load(weights_only=True)`` into a fresh optimizer on copies of the parameters
  continues the run with the same bits;
- the physics checks, through :class:`TorchView`, a step-function view on NumPy arrays.

:data:`NOT_APPLICABLE` lists the contract's properties that do not apply, and why.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from physopt_ref.core.tree import tree_flatten, tree_unflatten
from physopt_ref.testing._compare import close_condition
from physopt_ref.testing._result import CheckResult, Condition
from physopt_ref.testing.subject import Subject
from physopt_ref.testing.workloads import CONTRACT_WORKLOAD, QuadraticWorkload, leaf_paths

__all__ = [
    "NOT_APPLICABLE",
    "TorchView",
    "check_torch_determinism",
    "check_torch_device_kept",
    "check_torch_dtype_kept",
    "check_torch_no_host_sync",
    "check_torch_state_dict_round_trip",
    "not_applicable_results",
    "torch_properties",
]

#: The contract's properties that do not apply to a torch optimizer, and why.
NOT_APPLICABLE = {
    "purity": "torch steps update in place, by design",
    "ensemble = single runs": "torch.optim has no per-run axes",
    "backend parity": "torch tensors only",
    "state of arrays": "torch keeps a state_dict (its round trip is checked)",
    "jit / scan": "JAX transformations, not torch code",
}


class TorchView:
    """A torch optimizer class seen as ``init`` / ``step`` on NumPy trees (for the physics
    checks): ``init`` copies the parameters into torch tensors (same dtype) and builds
    ``cls(tensors, **hyperparameters)``; ``step`` writes the given parameters and gradients
    into them, calls ``optimizer.step()`` and returns NumPy copies."""

    def __init__(self, cls: type, hyperparameters: dict[str, Any]) -> None:
        self.cls, self.settings = cls, dict(hyperparameters)

    def init(self, params: Any, *, batch_ndim: int = 0) -> Any:
        import torch

        if batch_ndim:
            raise TypeError("a torch optimizer has no per-run axes (batch_ndim must be 0)")
        leaves, treedef = tree_flatten(params)
        tensors = [torch.tensor(np.array(v)) for v in leaves]
        return self.cls(tensors, **self.settings), tensors, treedef

    def step(self, params: Any, grads: Any, state: Any, *, loss: Any = None) -> Any:
        import torch

        opt, tensors, treedef = state
        with torch.no_grad():
            for t, p, g in zip(tensors, tree_flatten(params)[0], tree_flatten(grads)[0],
                               strict=True):
                t.copy_(torch.as_tensor(np.asarray(p), dtype=t.dtype))
                t.grad = torch.as_tensor(np.array(g), dtype=t.dtype)
        opt.step()
        return tree_unflatten(treedef, [t.detach().numpy().copy() for t in tensors]), state

    def __repr__(self) -> str:
        return f"TorchView({self.cls.__name__}, {self.settings})"


def _run(subject: Subject, workload: QuadraticWorkload, steps: int, dtype: Any = None,
         device: str = "cpu", start: tuple[Any, list[Any]] | None = None) -> tuple[Any, list]:
    """``steps`` steps of ``cls(params, **hp)`` on the workload (gradients ``c * x``)."""
    import torch

    dtype = torch.float64 if dtype is None else dtype
    if start is None:
        params = [torch.tensor(np.asarray(v), dtype=dtype, device=device)
                  for v in tree_flatten(workload.x0)[0]]
        opt = subject.native(params, **subject.hyperparameters)
    else:
        opt, params = start
    curvature = [torch.tensor(np.asarray(c), dtype=dtype, device=device)
                 for c in tree_flatten(workload.curvature)[0]]
    for _ in range(steps):
        with torch.no_grad():
            for p, c in zip(params, curvature, strict=True):
                p.grad = c * p
        opt.step()
    return opt, params


def _like_params(opt: Any, params: list[Any]) -> list[tuple[str, Any]]:
    """``(name, tensor)`` of each state tensor shaped like its parameter."""
    out = []
    for i, p in enumerate(params):
        for key, value in opt.state.get(p, {}).items():
            if hasattr(value, "shape") and tuple(value.shape) == tuple(p.shape) and p.ndim:
                out.append((f"state[{i}][{key!r}]", value))
    return out


def _example(subject: Subject, workload: QuadraticWorkload, **extra: Any) -> dict[str, Any]:
    return {"optimizer": subject.name, "hyperparameters": dict(subject.hyperparameters),
            **extra, "workload": workload.describe()}


def _violations(prop: str, problems: list[str], example: dict[str, Any]) -> CheckResult:
    detail = problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "") \
        if problems else ""
    return CheckResult(prop, Condition("violations", len(problems), 0, "<=", detail), example)


def check_torch_determinism(subject: Subject, *, workload: QuadraticWorkload = CONTRACT_WORKLOAD,
                            steps: int = 8) -> CheckResult:
    """Two runs from the same start give the same bits."""
    names = leaf_paths(workload.x0)
    a = [p.detach().numpy() for p in _run(subject, workload, steps)[1]]
    b = [p.detach().numpy() for p in _run(subject, workload, steps)[1]]
    return CheckResult("determinism", close_condition(
        ((f"leaf {n}", x, y) for n, x, y in zip(names, b, a, strict=True)), 0.0, 0.0,
        "max |run 1 - run 2| / tolerance 0"), _example(subject, workload, steps=steps))


def check_torch_dtype_kept(subject: Subject, dtype: str = "float32", *,
                           workload: QuadraticWorkload = CONTRACT_WORKLOAD,
                           steps: int = 4) -> CheckResult:
    """``dtype`` parameters keep it, and so does every state tensor shaped like them."""
    import torch

    want = getattr(torch, dtype)
    opt, params = _run(subject, workload, steps, want)
    problems = []
    for name, p in zip(leaf_paths(workload.x0), params, strict=True):
        if p.dtype != want:
            problems.append(f"parameter leaf {name} became {p.dtype}")
        elif not bool(torch.isfinite(p).all()):
            problems.append(f"parameter leaf {name} is not finite after {steps} steps")
    problems += [f"{name} is {t.dtype}" for name, t in _like_params(opt, params)
                 if t.is_floating_point() and t.dtype != want]
    return _violations("dtype kept", problems, _example(subject, workload, dtype=dtype))


def _meta_run(subject: Subject, workload: QuadraticWorkload, steps: int) -> tuple[Any, Any, str]:
    try:
        opt, params = _run(subject, workload, steps, device="meta")
    except Exception as exc:  # a host read of a meta tensor (or another failure) is the finding
        return None, None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    return opt, params, ""


def check_torch_no_host_sync(subject: Subject, *,
                             workload: QuadraticWorkload = CONTRACT_WORKLOAD,
                             steps: int = 3) -> CheckResult:
    """The steps run on the ``meta`` device, where reading a value on the host raises."""
    _, _, error = _meta_run(subject, workload, steps)
    return _violations("no host synchronisation (meta device)",
                       [f"the step reads tensor data on the host: {error}"] if error else [],
                       _example(subject, workload, device="meta", steps=steps))


def check_torch_device_kept(subject: Subject, *,
                            workload: QuadraticWorkload = CONTRACT_WORKLOAD,
                            steps: int = 3) -> CheckResult:
    """After steps on ``meta`` the parameters and the state tensors shaped like them are
    still on ``meta``."""
    opt, params, error = _meta_run(subject, workload, steps)
    if error:
        return CheckResult.skipped("device kept", "the step does not run on the meta device "
                                   "(see 'no host synchronisation')")
    problems = [f"parameter leaf {n} moved to {p.device}"
                for n, p in zip(leaf_paths(workload.x0), params, strict=True)
                if p.device.type != "meta"]
    problems += [f"{name} is on {t.device}" for name, t in _like_params(opt, params)
                 if t.device.type != "meta"]
    return _violations("device kept", problems,
                       _example(subject, workload, device="meta", steps=steps))


def check_torch_state_dict_round_trip(subject: Subject, *,
                                      workload: QuadraticWorkload = CONTRACT_WORKLOAD,
                                      before: int = 3, after: int = 4) -> CheckResult:
    """``state_dict()`` through ``torch.save`` / ``torch.load(weights_only=True)`` into a fresh
    optimizer on copies of the parameters: the next ``after`` steps have the same bits."""
    import torch

    opt, params = _run(subject, workload, before)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    copies = [p.detach().clone() for p in params]
    fresh = subject.native(copies, **subject.hyperparameters)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    _, params = _run(subject, workload, after, start=(opt, params))
    _, copies = _run(subject, workload, after, start=(fresh, copies))
    pairs = [(f"leaf {n} after {before} + {after} steps", c.detach().numpy(),
              p.detach().numpy())
             for n, c, p in zip(leaf_paths(workload.x0), copies, params, strict=True)]
    pairs += [(f"reloaded {name}", c.detach().numpy(), t.detach().numpy())
              for (name, t), (_, c) in zip(_like_params(opt, params),
                                           _like_params(fresh, copies), strict=True)]
    return CheckResult("state_dict round trip", close_condition(
        pairs, 0.0, 0.0, "max |reloaded - original| / tolerance 0"),
        _example(subject, workload, before=before, after=after))


def torch_properties() -> list[Any]:
    """The properties run on a torch optimizer class (each drawn over workloads)."""
    from physopt_ref.testing.properties import Property

    def st() -> Any:
        from hypothesis import strategies

        return strategies

    def workloads(subject: Subject) -> Any:
        from physopt_ref.testing import strategies as pst

        # lists of 1 to 3 parameters of 1 or 2 axes (0-d state tensors are where torch keeps
        # its step counts, so parameters with axes tell state shaped like them apart)
        shapes = st().lists(st().integers(1, 3), min_size=1, max_size=2).map(tuple)
        return st().tuples(pst.workloads(st().lists(shapes, min_size=1, max_size=3)))

    def on(check: Callable[..., CheckResult]) -> Callable[[Subject, Any], CheckResult]:
        return lambda s, ex: check(s, workload=ex[0])

    return [
        Property("determinism", on(check_torch_determinism), workloads),
        Property("dtype kept", lambda s, ex: check_torch_dtype_kept(s, ex[1], workload=ex[0]),
                 lambda s: st().tuples(workloads(s).map(lambda t: t[0]), st().sampled_from(
                     ["float32", "float64", "bfloat16"]))),
        Property("device kept", on(check_torch_device_kept), workloads, max_examples=3),
        Property("no host synchronisation (meta device)", on(check_torch_no_host_sync),
                 workloads, max_examples=3),
        Property("state_dict round trip", on(check_torch_state_dict_round_trip), workloads),
    ]


def not_applicable_results(table: dict[str, str] | None = None) -> list[CheckResult]:
    """A skip row per property of ``table`` (default :data:`NOT_APPLICABLE`), with the
    reason."""
    return [CheckResult.skipped(name, f"does not apply: {why}")
            for name, why in (NOT_APPLICABLE if table is None else table).items()]

