"""physopt_ref: reference implementations of physics-inspired optimizer steps.

Every optimizer is a factory returning an :class:`Optimizer` with pure ``init`` and ``step``
functions, written once against the Python Array API (NumPy, CuPy, array-api-strict, PyTorch,
JAX). See ``DESIGN`` in the README for the contract.
"""

from importlib import import_module

from ._base import (
    COUNT_MAX,
    REGISTRY,
    Optimizer,
    RegistryEntry,
    batch_ndim_of,
    checks_enabled,
    debug_checks,
    get_optimizer,
    register,
    registered_names,
    set_debug_checks,
)
from ._tree import tree_flatten, tree_leaves, tree_map, tree_unflatten

__version__ = "0.1.0"

#: The optimizer family modules. Each registers its optimizers on import and lists its public
#: names in ``__all__``, which are re-exported here.
_FAMILY_MODULES = (
    "schedules",
    "classic",
    "oscillator",
    "bbi",
    "ecdsep",
    "coolmomentum",
    "gravity",
    "dyna",
    "dynamic_relaxation",
    "_run",
    "scipy_adapter",
)

__all__ = [
    "COUNT_MAX",
    "REGISTRY",
    "Optimizer",
    "RegistryEntry",
    "__version__",
    "batch_ndim_of",
    "checks_enabled",
    "debug_checks",
    "get_optimizer",
    "register",
    "registered_names",
    "set_debug_checks",
    "tree_flatten",
    "tree_leaves",
    "tree_map",
    "tree_unflatten",
]

for _name in _FAMILY_MODULES:
    _module = import_module(f"{__name__}.{_name}")
    for _attr in _module.__all__:
        globals()[_attr] = getattr(_module, _attr)
    __all__ += [a for a in _module.__all__ if a not in __all__]
del _name, _module, _attr
