"""Properties as (check, input strategy) pairs, for :func:`~physopt_ref.testing.verify`.

A :class:`Property` names a check and says how hypothesis draws its inputs for a
:class:`~physopt_ref.testing.Subject`. :func:`contract_properties` lists the contract's
(purity, dtype, device, determinism, ensembles, backend parity, state, jit / scan /
torch.compile); the physics ones are opt-in, built for the hyperparameter names of the subject:
:func:`stability_bound`, :func:`bias_correction`, :func:`bounded_step`,
:func:`energy_conservation` (three properties), :func:`damping_regimes`.
:data:`REGISTERED_PHYSICS` holds the physics that applies to each registered optimizer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from physopt_ref.backends import available_backends, get_namespace
from physopt_ref.core.schedules import DampingRamp
from physopt_ref.testing._result import CheckResult
from physopt_ref.testing.compile import check_jax_jit, check_jax_scan, check_torch_compile
from physopt_ref.testing.contract import (
    check_backend_parity,
    check_determinism,
    check_device_kept,
    check_dtype_kept,
    check_ensemble_equals_single_runs,
    check_purity,
)
from physopt_ref.testing.damping import check_critical_damping
from physopt_ref.testing.energy import (
    BornInfeld,
    ECDSepEnergy,
    Hamiltonian,
    check_energy_drift_bounded,
    check_energy_error_order,
    check_energy_shell,
)
from physopt_ref.testing.probe import workload_for
from physopt_ref.testing.stability import check_stability_threshold, stability_threshold
from physopt_ref.testing.steps import (
    check_bias_correction,
    check_step_bound,
    dyna_step_bound,
    ecdsep_step_bound,
    step_sizes,
)
from physopt_ref.testing.structure import (
    check_state_structure,
)
from physopt_ref.testing.subject import Subject

__all__ = [
    "PHYSICS_PRESETS",
    "REGISTERED_PHYSICS",
    "Property",
    "bias_correction",
    "bounded_step",
    "contract_properties",
    "damping_regimes",
    "energy_conservation",
    "physics_preset",
    "stability_bound",
]

Check = Callable[[Subject, Any], CheckResult]


@dataclass(frozen=True)
class Property:
    """A named check and how to draw its input.

    Attributes
    ----------
    name : str
        As reported (the check's own property name).
    check : callable
        ``check(subject, example) -> CheckResult``.
    strategy : callable or None
        ``strategy(subject) -> SearchStrategy`` of examples; None for a check with one fixed
        input (the compiled runs, say), run once.
    max_examples : int or None
        A cap below :func:`verify`'s ``max_examples`` for costly checks.
    """

    name: str
    check: Check
    strategy: Callable[[Subject], Any] | None = None
    max_examples: int | None = None


def _st() -> Any:
    from hypothesis import strategies as st

    return st


def _pst() -> Any:
    from physopt_ref.testing import strategies

    return strategies


def _kinds(subject: Subject) -> Any:
    accepts = subject.accepts
    return None if accepts is None else accepts.trees


def _max_batch(subject: Subject, max_dims: int) -> int:
    """No ensembles for a subject whose ``init`` takes no ``batch_ndim``."""
    accepts = subject.accepts
    return max_dims if accepts is None or accepts.ensembles else 0


def _workloads(subject: Subject) -> Any:
    return _pst().workloads(kinds=_kinds(subject))


def _workload_and_shape(min_dims: int = 0, max_dims: int = 1) -> Callable[[Subject], Any]:
    def strategy(subject: Subject) -> Any:
        st, pst = _st(), _pst()
        return st.tuples(_workloads(subject),
                         pst.ensemble_shapes(_max_batch(subject, max_dims), min_dims=min_dims))

    return strategy


def _other_backends() -> list[str]:
    return [b for b in available_backends() if b != "numpy"]


def _fixed_input(check: Callable[..., CheckResult]) -> Check:
    """A check run once, on the contract workload in a kind the subject accepts (an ensemble
    of 2 where it takes ensembles)."""
    def run(subject: Subject, ex: Any) -> CheckResult:
        batch = (2,) if _max_batch(subject, 1) else ()
        return check(subject, workload=workload_for(subject.accepts), batch_shape=batch)

    return run


def _no_ensembles(name: str) -> Check:
    return lambda s, ex: CheckResult.skipped(name, "init takes no batch_ndim: no ensembles")


def contract_properties(compile: bool = True, accepts: Any = None) -> list[Property]:
    """The contract's properties; ``compile=False`` leaves out jit / scan / torch.compile.

    ``accepts`` (:class:`~physopt_ref.testing.probe.Accepts`): a subject without ensembles
    gets "ensemble = single runs" as a skip with the reason.
    """
    def parity_strategy(subject: Subject) -> Any:
        st = _st()
        return st.tuples(st.sampled_from(_other_backends()), _workloads(subject))

    def parity(subject: Subject, ex: Any) -> CheckResult:
        if not _other_backends():
            return CheckResult.skipped("backend parity", "no backend besides numpy is installed")
        backend, workload = ex
        return check_backend_parity(subject, get_namespace(backend), workload=workload,
                                    batch_shape=(2,) if _max_batch(subject, 1) else ())

    def dtype_strategy(subject: Subject) -> Any:
        st, pst = _st(), _pst()
        return st.tuples(pst.backends(), _workloads(subject),
                         pst.ensemble_shapes(_max_batch(subject, 1)))

    def device(subject: Subject, ex: Any) -> CheckResult:
        return check_device_kept(subject, workload=ex[0],
                                 batch_shape=(2,) if _max_batch(subject, 1) else ())

    ensembles = accepts is None or accepts.ensembles
    props = [
        Property("purity", lambda s, ex: check_purity(s, workload=ex[0], batch_shape=ex[1]),
                 _workload_and_shape()),
        Property("dtype kept", lambda s, ex: check_dtype_kept(
            s, get_namespace(ex[0]), workload=ex[1], batch_shape=ex[2]), dtype_strategy),
        Property("device kept", device, lambda s: _st().tuples(_workloads(s))),
        Property("determinism", lambda s, ex: check_determinism(s, workload=ex[0],
                                                                batch_shape=ex[1]),
                 _workload_and_shape()),
        Property("ensemble = single runs", lambda s, ex: check_ensemble_equals_single_runs(
            s, workload=ex[0], batch_shape=ex[1]), _workload_and_shape(1, 2))
        if ensembles else Property("ensemble = single runs",
                                   _no_ensembles("ensemble = single runs")),
        Property("backend parity", parity,
                 parity_strategy if _other_backends() else None),
        Property("state of arrays", _fixed_input(check_state_structure)),
    ]
    if compile:
        props += [
            Property("jax.jit = eager", _fixed_input(check_jax_jit)),
            Property("jax.lax.scan = eager", _fixed_input(check_jax_scan)),
            Property("torch.compile = eager, one compilation",
                     _fixed_input(check_torch_compile)),
        ]
    return props


# ---------------------------------------------------------------------------------------------
# Physics


def stability_bound(method: str, *, lr: str = "lr", momentum: str = "momentum",
                    rtol: float = 0.03) -> Property:
    """The measured stability threshold within ``rtol`` of ``method``'s theory
    (:func:`~physopt_ref.testing.stability_threshold`), for curvatures in [0.1, 100]."""

    def check(subject: Subject, ex: Any) -> CheckResult:
        (k,) = ex
        hp = subject.resolved_hyperparameters()
        beta = 0.0 if method in ("gd", "sgd") else float(hp.get(momentum, 0.0))
        theory = stability_threshold(method, k, beta)
        return check_stability_threshold(lambda v: subject.build(**{lr: v}), k, theory,
                                         rtol=rtol)

    # curvatures over three decades; a fixed list shrinks at once to k = 1
    return Property("stability bound", check,
                    lambda s: _st().tuples(_st().sampled_from((1.0, 0.1, 10.0, 100.0, 0.3, 3.0))),
                    max_examples=5)


def bias_correction(*, expected: Callable[[Mapping[str, Any], np.ndarray], Any] | None = None,
                    overrides: Mapping[str, Any] | None = None,
                    step_rtol: float = 1e-9) -> Property:
    """Under a constant gradient every step equals the first (or ``expected(hp, g)``);
    ``overrides`` fix hyperparameters for the check (a constant damping, say)."""
    overrides = dict(overrides or {})

    def check(subject: Subject, ex: Any) -> CheckResult:
        g, steps = ex
        want = None if expected is None else expected(
            subject.resolved_hyperparameters(**overrides), g)
        return check_bias_correction(subject.build(**overrides), g, steps, expected_step=want,
                                     step_rtol=step_rtol)

    return Property("bias correction", check,
                    lambda s: _st().tuples(_pst().constant_gradients(),
                                           _st().integers(1, 30)))


def bounded_step(bound: Callable[[Mapping[str, Any], int], float], *, norm: str = "abs",
                 dim: int = 3, rtol: float = 1e-12) -> Property:
    """Every step within ``bound(hp, dim)`` (``norm="abs"``: per coordinate; ``"l2"``: over the
    tree) for any gradient sequence and positive loss."""

    def check(subject: Subject, ex: Any) -> CheckResult:
        grads, loss = ex
        seq = iter(grads)
        sizes = step_sizes(subject.build(), np.zeros(dim),
                           lambda _p: (loss, next(seq)), steps=len(grads), norm=norm)
        return check_step_bound(sizes, bound(subject.resolved_hyperparameters(), dim), rtol=rtol,
                                example={"grads": grads, "loss": loss})

    return Property("bounded step", check, lambda s: _st().tuples(
        _pst().gradient_sequences(dim, max_steps=20), _st().floats(1e-3, 1e3)))


def _bbi_like(subject: Subject) -> dict[str, Any]:
    """Settings that keep bounces out of the energy checks (when the factory has them)."""
    return {k: None for k in ("t0", "t1") if k in subject.hyperparameters}


def energy_conservation(hamiltonian: Callable[[Mapping[str, Any]], Hamiltonian], *,
                        lr: str = "lr", rescale: str = "rescale",
                        offset: Callable[[Mapping[str, Any]], float] = lambda hp: 1.0
                        ) -> list[Property]:
    """Three properties of a Hamiltonian step: on the shell after the rescale, the one-step error
    O(Δt²), and the bounded drift without the rescale (``rescale=False``).

    ``hamiltonian(hp)`` builds the :class:`~physopt_ref.testing.Hamiltonian` for the subject's
    hyperparameters; ``offset(hp)`` is added to ``½|x|²`` to give the loss.
    """

    def setup(subject: Subject, seed: int) -> tuple[Any, Any, Any]:
        hp = subject.resolved_hyperparameters()
        h = hamiltonian(hp)
        c = offset(hp)
        x0 = np.random.default_rng(seed).normal(size=10)

        def loss_grad(x: Any) -> tuple[Any, Any]:
            return 0.5 * np.sum(x * x) + c, x

        return h, x0, loss_grad

    def shell(subject: Subject, ex: Any) -> CheckResult:
        seed, frac = ex
        h, x0, loss_grad = setup(subject, seed)
        opt = subject.build(**_bbi_like(subject))
        x, state = x0, opt.init(x0)
        for _ in range(2):
            f, g = loss_grad(x)
            x, state = opt.step(x, g, state, loss=f)
        loss = h.loss_at_fraction(frac, state)
        return check_energy_shell(opt, x, state, loss, h).with_example(
            {"seed": seed, "fraction of E": frac, "loss": loss})

    def order(subject: Subject, ex: Any) -> CheckResult:
        (seed,) = ex
        h, x0, loss_grad = setup(subject, seed)
        extra = _bbi_like(subject)
        return check_energy_error_order(lambda dt: subject.build(**{lr: dt, **extra}), x0,
                                        loss_grad, h).with_example({"seed": seed})

    def drift(subject: Subject, ex: Any) -> CheckResult:
        (seed,) = ex
        h, x0, loss_grad = setup(subject, seed)
        extra = _bbi_like(subject)
        return check_energy_drift_bounded(
            lambda dt: subject.build(**{lr: dt, rescale: False, **extra}), x0, loss_grad, h
        ).with_example({"seed": seed})

    def seeds(subject: Subject) -> Any:
        return _st().tuples(_st().integers(0, 2**16))

    return [
        Property("energy on the shell after the rescale", shell,
                 lambda s: _st().tuples(_st().integers(0, 2**16), _st().floats(0.02, 1.0))),
        Property("energy error O(dt^2)", order, seeds, max_examples=3),
        Property("bounded energy drift without rescale", drift, seeds, max_examples=2),
    ]


def damping_regimes(*, lr: str = "lr", momentum: str = "momentum") -> Property:
    """At the critical momentum the envelope contracts at the damped-oscillator rate, and the
    under- and over-damped momenta contract more slowly (Kη in [5e-4, 3e-3], K in [0.1, 10])."""

    def check(subject: Subject, ex: Any) -> CheckResult:
        s, k = ex
        return check_critical_damping(lambda a, b: subject.build(**{lr: a, momentum: b}),
                                      s / k, k)

    return Property("critical damping is fastest", check,
                    lambda s: _st().tuples(_st().floats(5e-4, 3e-3), _st().floats(0.1, 10.0)),
                    max_examples=3)


def _dyna_bound(hp: Mapping[str, Any], dim: int) -> float:
    """Dyna's bound for a vector of ``dim`` parameters: α = 2γ/n, the smallest ζ of a constant
    or of a damping ramp (monotone between its ends)."""
    gamma, fan_in, zeta = hp.get("gamma", 1.0), hp.get("fan_in"), hp.get("zeta", 1.0)
    if isinstance(zeta, DampingRamp):
        zeta = min(zeta.zeta_start, zeta.zeta_end)
    if not all(isinstance(v, int | float) for v in (gamma, zeta)) or not (
            fan_in is None or isinstance(fan_in, int)):
        raise ValueError("bounded_step=dyna needs constant gamma, an int fan_in and a constant "
                         "zeta or a damping_ramp")
    alpha = 2.0 * float(gamma) / float(fan_in or dim)
    return float(dyna_step_bound(alpha, float(hp.get("beta", 0.9)), float(zeta)))


def _adam_step(hp: Mapping[str, Any], g: np.ndarray) -> np.ndarray:
    return -hp["lr"] * g / (np.abs(g) + hp["eps"])


def _ecdsep_energy(hp: Mapping[str, Any]) -> Hamiltonian:
    return ECDSepEnergy(eta=float(hp["eta"]), s=float(hp.get("s", 1.0)),
                        f0=float(hp.get("f0", 0.0)))


#: Physics presets by name (what ``physopt-ref verify --physics NAME`` accepts).
PHYSICS_PRESETS: Mapping[str, Callable[[], list[Property]]] = {
    "stability=gd": lambda: [stability_bound("gd")],
    "stability=heavy_ball": lambda: [stability_bound("heavy_ball")],
    "stability=nesterov": lambda: [stability_bound("nesterov")],
    "bias_correction": lambda: [bias_correction()],
    "bias_correction=adam": lambda: [bias_correction(expected=_adam_step)],
    "bounded_step=dyna": lambda: [bounded_step(_dyna_bound)],
    "bounded_step=ecdsep": lambda: [bounded_step(
        lambda hp, dim: ecdsep_step_bound(float(hp["lr"]), float(hp.get("s", 1.0))),
        norm="l2")],
    "energy=bbi": lambda: energy_conservation(lambda hp: BornInfeld(float(hp.get("v0", 0.0))),
                                              offset=lambda hp: 1.0 + float(hp.get("v0", 0.0))),
    "energy=ecdsep": lambda: energy_conservation(_ecdsep_energy,
                                                 offset=lambda hp: float(hp.get("f0", 0.0))),
    "damping": lambda: [damping_regimes()],
}


def physics_preset(name: str) -> list[Property]:
    """The properties of a preset of :data:`PHYSICS_PRESETS`."""
    if name not in PHYSICS_PRESETS:
        raise ValueError(f"unknown physics check {name!r}; known: {sorted(PHYSICS_PRESETS)}")
    return PHYSICS_PRESETS[name]()


#: The physics checks that apply to each registered optimizer (with its registry settings and
#: the overrides given); optimizers not listed have none beyond the contract.
REGISTERED_PHYSICS: Mapping[str, tuple[tuple[str, Mapping[str, Any]], ...]] = {
    "sgd": (("stability=gd", {}),),
    "heavy_ball": (("stability=heavy_ball", {}), ("damping", {})),
    "nesterov": (("stability=nesterov", {}),),
    "adam": (("bias_correction=adam", {}),),
    "dyna_prototype": (("bias_correction", {}),),
    "dyna": (("bounded_step=dyna", {}),),
    "bbi": (("energy=bbi", {"v0": 0.0, "delta_e": 1.0, "v0_tuning": False}),),
    "ecdsep": (("energy=ecdsep", {"f0": 0.0, "delta_e": 1.0, "f0_tuning": False,
                                  "weight_decay": 0.0, "nu": 0.0}),
               ("bounded_step=ecdsep", {})),
}
