"""The ``physopt-ref`` application: argument parsing, ``compare`` and its settings, headlines,
tuning, output, plots and the digits experiment.

It builds on the library (:mod:`physopt_ref`); nothing in the library imports it. The entry
point is :func:`main` (the console script ``physopt-ref`` and ``python -m physopt_ref``).
"""

from physopt_ref.cli.main import main

__all__ = ["main"]
