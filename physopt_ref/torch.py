"""physopt_ref's optimizers as ``torch.optim.Optimizer`` classes.

The implementation lives in :mod:`physopt_ref.adapters.torch` (classes in
:mod:`physopt_ref.adapters.torch_classes`); this module keeps the import
path ``physopt_ref.torch`` that users write.
"""

from physopt_ref.adapters.torch import PhysicsOptimizer
from physopt_ref.adapters.torch_classes import (
    BBI,
    SGD,
    Adam,
    CoolMomentum,
    Dyna,
    DynamicRelaxation,
    DynaPrototype,
    ECDSep,
    Gravity,
    HeavyBall,
    Nesterov,
    optimizer_class,
)

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
    "PhysicsOptimizer",
    "optimizer_class",
]
