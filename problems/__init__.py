"""Analytic test problems with gradients and known minima (see each module's docstring).

Every problem is a :class:`Problem`: ``value(x)``, ``grad(x)``, ``value_and_grad(x)`` on any
Array API backend, batched over the leading axes of ``x`` (shape ``(*batch, dim)``), float32 or
float64; ``x0`` / ``start(...)``, ``bounds``, ``minima`` (:class:`KnownMinimum`), ``f_min``.

:data:`PROBLEMS` maps a name to a zero-argument factory with the defaults used by the command
line.
"""

from collections.abc import Callable

from ._base import KnownMinimum, Problem
from .analytic import Ackley, Zakharov, ackley, zakharov
from .clusters import (
    LJ_MINIMA,
    MORSE6_MINIMA,
    Cluster,
    lennard_jones,
    morse,
    regenerate_cluster_minima,
    relax,
    seed_structure,
    truncated_octahedron38,
)
from .pde import PDEResidual, bratu_1d, ecd_pde, ecd_radial_profile, gelfand_disk
from .quadratic import Quadratic, quadratic
from .two_basin import TwoBasin, two_basin

#: name -> zero-argument factory (sensible defaults; the ECD settings where the paper has them).
PROBLEMS: dict[str, Callable[[], Problem]] = {
    "quadratic": lambda: quadratic(dim=10, condition=100.0),
    "quadratic_rotated": lambda: quadratic(dim=10, condition=100.0, rotate=True, seed=0),
    "ackley": lambda: ackley(2),
    "ackley_ecd": lambda: ackley(2, b=0.02),
    "zakharov": lambda: zakharov(10),
    "two_basin": two_basin,
    "ecd_pde": lambda: ecd_pde(400),
    "bratu_1d": lambda: bratu_1d(100, 1.0),
    "gelfand_disk": lambda: gelfand_disk(100, 1.5),
    "lennard_jones": lambda: lennard_jones(13),
    "morse": lambda: morse(13),
}

__all__ = [
    "LJ_MINIMA",
    "MORSE6_MINIMA",
    "PROBLEMS",
    "Ackley",
    "Cluster",
    "KnownMinimum",
    "PDEResidual",
    "Problem",
    "Quadratic",
    "TwoBasin",
    "Zakharov",
    "ackley",
    "bratu_1d",
    "ecd_pde",
    "ecd_radial_profile",
    "gelfand_disk",
    "lennard_jones",
    "morse",
    "quadratic",
    "regenerate_cluster_minima",
    "relax",
    "seed_structure",
    "truncated_octahedron38",
    "two_basin",
    "zakharov",
]
