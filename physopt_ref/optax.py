"""physopt_ref's optimizers as optax gradient transformations.

The implementation lives in :mod:`physopt_ref.adapters.optax`; this module keeps the import
path ``physopt_ref.optax`` that users write.
"""

from physopt_ref.adapters.optax import (
    adam,
    as_optax,
    bbi,
    coolmomentum,
    dyna,
    dyna_prototype,
    dynamic_relaxation,
    ecdsep,
    gravity,
    heavy_ball,
    nesterov,
    sgd,
    transformation,
)

__all__ = [
    "adam",
    "as_optax",
    "bbi",
    "coolmomentum",
    "dyna",
    "dyna_prototype",
    "dynamic_relaxation",
    "ecdsep",
    "gravity",
    "heavy_ball",
    "nesterov",
    "sgd",
    "transformation",
]
