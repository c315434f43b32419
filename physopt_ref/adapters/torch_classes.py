"""One ``torch.optim.Optimizer`` class per registered optimizer, with typed signatures.

Each class takes the factory's hyperparameters as keyword arguments, with the factory's
defaults (``tests/test_torch_adapter_conventions.py`` checks that they stay equal), so that
IDEs and type checkers see them: ``Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))``.
Where torch has its own name for a hyperparameter the class takes both: Adam's and Dyna's
prototype's ``b1``/``b2`` (the factory's) or ``betas`` (torch's). The shared keywords:
``one_tree`` and ``compiled`` (see :class:`~physopt_ref.adapters.torch.PhysicsOptimizer`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from physopt_ref.adapters.torch import PhysicsOptimizer
from physopt_ref.core.registry import REGISTRY

__all__ = [
    "BBI",
    "SGD",
    "Adam",
    "CoolMomentum",
    "Dyna",
    "DynaPrototype",
    "DynamicRelaxation",
    "ECDSep",
    "Gravity",
    "HeavyBall",
    "Nesterov",
    "optimizer_class",
]

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]
#: A hyperparameter that may vary: a number, a 0-d tensor (torch's convention for a compiled
#: step) or a schedule of the step count (:mod:`physopt_ref.core.schedules`).
Value = float | torch.Tensor | Callable[[Any], Any]


def _betas(b1: Value, b2: Value, betas: tuple[Value, Value] | None) -> dict[str, Any]:
    if betas is None:
        return {"b1": b1, "b2": b2}
    return {"betas": betas}


def _doc(name: str) -> str:
    factory = REGISTRY[name].factory
    return (f"physopt_ref.{name} as a torch.optim.Optimizer (see physopt_ref.torch).\n\n"
            f"{factory.__doc__ or ''}")


class SGD(PhysicsOptimizer):
    __doc__ = _doc("sgd")

    def __init__(self, params: Params, lr: Value = 0.01, *, one_tree: bool | None = None,
                 compiled: bool | None = None) -> None:
        super().__init__(params, "sgd", one_tree=one_tree, compiled=compiled, lr=lr)


class HeavyBall(PhysicsOptimizer):
    __doc__ = _doc("heavy_ball")

    def __init__(self, params: Params, lr: Value = 0.01, momentum: Value = 0.9, *,
                 one_tree: bool | None = None, compiled: bool | None = None) -> None:
        super().__init__(params, "heavy_ball", one_tree=one_tree, compiled=compiled, lr=lr,
                         momentum=momentum)


class Nesterov(PhysicsOptimizer):
    __doc__ = _doc("nesterov")

    def __init__(self, params: Params, lr: Value = 0.01, momentum: Value = 0.9, *,
                 one_tree: bool | None = None, compiled: bool | None = None) -> None:
        super().__init__(params, "nesterov", one_tree=one_tree, compiled=compiled, lr=lr,
                         momentum=momentum)


class Adam(PhysicsOptimizer):
    __doc__ = _doc("adam")

    def __init__(self, params: Params, lr: Value = 1e-3, b1: Value = 0.9, b2: Value = 0.999,
                 eps: float | torch.Tensor = 1e-8, *, betas: tuple[Value, Value] | None = None,
                 one_tree: bool | None = None, compiled: bool | None = None) -> None:
        super().__init__(params, "adam", one_tree=one_tree, compiled=compiled, lr=lr, eps=eps,
                         **_betas(b1, b2, betas))


class DynaPrototype(PhysicsOptimizer):
    __doc__ = _doc("dyna_prototype")

    def __init__(self, params: Params, lr: Value = 1e-3, b1: float = 0.9, b2: Value = 0.999,
                 eps: float = 1e-8, *, betas: tuple[Value, Value] | None = None,
                 one_tree: bool | None = None, compiled: bool | None = None) -> None:
        super().__init__(params, "dyna_prototype", one_tree=one_tree, compiled=compiled,
                         lr=lr, eps=eps, **_betas(b1, b2, betas))


class Dyna(PhysicsOptimizer):
    __doc__ = _doc("dyna")

    def __init__(self, params: Params, gamma: Value = 1.0, beta: float = 0.9,
                 zeta: Value = 1.0, omega_eps: float = 1e-8, fan_in: Any = None, *,
                 one_tree: bool | None = None, compiled: bool | None = None) -> None:
        super().__init__(params, "dyna", one_tree=one_tree, compiled=compiled, gamma=gamma,
                         beta=beta, zeta=zeta, omega_eps=omega_eps, fan_in=fan_in)


class DynamicRelaxation(PhysicsOptimizer):
    __doc__ = _doc("dynamic_relaxation")

    def __init__(self, params: Params, h: float | torch.Tensor | None = None, mass: float = 1.0,
                 stiffness: float = 1.0, zeta: Value = 1.0, *, one_tree: bool | None = None,
                 compiled: bool | None = None) -> None:
        super().__init__(params, "dynamic_relaxation", one_tree=one_tree, compiled=compiled,
                         h=h, mass=mass, stiffness=stiffness, zeta=zeta)


class CoolMomentum(PhysicsOptimizer):
    __doc__ = _doc("coolmomentum")

    def __init__(self, params: Params, lr: Value = 0.01, rho0: float = 0.99,
                 cool_steps: int | None = 78200,
                 schedule: str | Callable[[int], float] = "paper", weight_decay: float = 0.0, *,
                 one_tree: bool | None = None, compiled: bool | None = None) -> None:
        super().__init__(params, "coolmomentum", one_tree=one_tree, compiled=compiled, lr=lr,
                         rho0=rho0, cool_steps=cool_steps, schedule=schedule,
                         weight_decay=weight_decay)


class BBI(PhysicsOptimizer):
    __doc__ = _doc("bbi")

    def __init__(self, params: Params, lr: Value, *, v0: float | torch.Tensor = 0.0,
                 delta_e: float | torch.Tensor = 0.0, rescale: bool = True,
                 t0: int | None = 1000, t1: int | None = 3000, n_fixed_bounces: int = 1,
                 eps1: float = 1e-10, eps2: float | None = None, seed: int = 0,
                 bounce_direction: str = "cube", v0_tuning: bool = False, member: int = 0,
                 state_dtype: str | None = None, safety: str | None = None,
                 one_tree: bool | None = None, compiled: bool | None = None) -> None:
        super().__init__(params, "bbi", one_tree=one_tree, compiled=compiled, lr=lr, v0=v0,
                         delta_e=delta_e, rescale=rescale, t0=t0, t1=t1,
                         n_fixed_bounces=n_fixed_bounces, eps1=eps1, eps2=eps2, seed=seed,
                         bounce_direction=bounce_direction, v0_tuning=v0_tuning, member=member,
                         state_dtype=state_dtype, safety=safety)


class ECDSep(PhysicsOptimizer):
    __doc__ = _doc("ecdsep")

    def __init__(self, params: Params, lr: Value, eta: float | torch.Tensor, *,
                 nu: float | torch.Tensor = 1e-5, s: float | torch.Tensor = 1.0,
                 f0: float | torch.Tensor = 0.0, delta_e: float | torch.Tensor | None = None,
                 rescale: bool = True, weight_decay: float = 0.0, eps1: float = 1e-10,
                 eps2: float | None = None, seed: int = 0, f0_tuning: bool = False,
                 member: int = 0, state_dtype: str | None = None, safety: str | None = None,
                 one_tree: bool | None = None, compiled: bool | None = None) -> None:
        super().__init__(params, "ecdsep", one_tree=one_tree, compiled=compiled, lr=lr, eta=eta,
                         nu=nu, s=s, f0=f0, delta_e=delta_e, rescale=rescale,
                         weight_decay=weight_decay, eps1=eps1, eps2=eps2, seed=seed,
                         f0_tuning=f0_tuning, member=member, state_dtype=state_dtype,
                         safety=safety)


class Gravity(PhysicsOptimizer):
    __doc__ = _doc("gravity")

    def __init__(self, params: Params, lr: float | torch.Tensor = 0.1,
                 alpha: float | torch.Tensor = 0.01, beta: float | torch.Tensor = 0.9,
                 seed: int = 0, t_start: int = 0, member: int = 0, *,
                 one_tree: bool | None = None, compiled: bool | None = None) -> None:
        super().__init__(params, "gravity", one_tree=one_tree, compiled=compiled, lr=lr,
                         alpha=alpha, beta=beta, seed=seed, t_start=t_start, member=member)


_CLASSES: dict[str, type[PhysicsOptimizer]] = {
    "sgd": SGD, "heavy_ball": HeavyBall, "nesterov": Nesterov, "adam": Adam, "dyna": Dyna,
    "dyna_prototype": DynaPrototype, "dynamic_relaxation": DynamicRelaxation,
    "coolmomentum": CoolMomentum, "bbi": BBI, "ecdsep": ECDSep, "gravity": Gravity,
}


def optimizer_class(name: str) -> type[PhysicsOptimizer]:
    """The ``torch.optim.Optimizer`` class of a registered optimizer:
    ``optimizer_class("bbi")(model.parameters(), lr=0.05)``. An optimizer registered later
    (a user's) gets a class that takes its hyperparameters by keyword."""
    if name not in REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; registered: {sorted(REGISTRY)}")
    cls = _CLASSES.get(name)
    if cls is None:

        def init(self: PhysicsOptimizer, params: Params, *, one_tree: bool | None = None,
                 compiled: bool | None = None, **hyperparameters: Any) -> None:
            PhysicsOptimizer.__init__(self, params, name, one_tree=one_tree, compiled=compiled,
                                      **hyperparameters)

        class_name = "".join(w.title() for w in name.split("_"))
        cls = type(class_name, (PhysicsOptimizer,), {
            "__init__": init, "__module__": __name__, "__doc__": _doc(name)})
        _CLASSES[name] = cls
    return cls
