"""Analytic test problems with gradients and known minima (see each module's docstring)."""

from ._base import KnownMinimum, Problem

__all__ = ["KnownMinimum", "Problem"]
