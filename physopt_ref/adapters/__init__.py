"""The optimizers inside other frameworks; each adapter imports its framework lazily.

- :mod:`~physopt_ref.adapters.torch`: ``torch.optim.Optimizer`` classes (also importable as
  :mod:`physopt_ref.torch`);
- :mod:`~physopt_ref.adapters.optax`: optax gradient transformations (also
  :mod:`physopt_ref.optax`);
- :mod:`~physopt_ref.adapters.scipy`: :func:`physopt_ref.scipy_method`, a custom method for
  ``scipy.optimize.minimize``.
"""
