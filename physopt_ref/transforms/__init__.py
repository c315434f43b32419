"""Gradient transforms and :func:`chain`, which puts them in front of any optimizer.

- :mod:`~physopt_ref.transforms.gradient`: clipping, weight decay, masks, the non-finite guard;
- :mod:`~physopt_ref.transforms.chain`: :func:`chain` and :class:`Chain`.
"""

from physopt_ref.transforms.chain import Chain, chain
from physopt_ref.transforms.gradient import (
    TRANSFORMS,
    GradientTransform,
    clip_by_global_norm,
    clip_by_value,
    coupled_weight_decay,
    decoupled_weight_decay,
    masked,
    non_finite_guard,
)

__all__ = [
    "TRANSFORMS",
    "Chain",
    "GradientTransform",
    "chain",
    "clip_by_global_norm",
    "clip_by_value",
    "coupled_weight_decay",
    "decoupled_weight_decay",
    "masked",
    "non_finite_guard",
]
