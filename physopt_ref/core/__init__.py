"""The core every optimizer is built on (imports nothing above it but :mod:`physopt_ref.backends`).

- :mod:`~physopt_ref.core.contract`: the :class:`~physopt_ref.core.contract.Optimizer` contract
  (v2) and its step scaffold;
- :mod:`~physopt_ref.core.context`: :class:`~physopt_ref.core.context.StepContext`, the count;
- :mod:`~physopt_ref.core.registry`: the registry of optimizers;
- :mod:`~physopt_ref.core.checks`: the debug switch and its checks;
- :mod:`~physopt_ref.core.tracing`: tracing detection and the torch autograd guard;
- :mod:`~physopt_ref.core.tree`: parameter trees;
- :mod:`~physopt_ref.core.validate`: hyperparameter validation;
- :mod:`~physopt_ref.core.control`: data-dependent control flow without host round trips;
- :mod:`~physopt_ref.core.numerics`: overflow-safe numerics;
- :mod:`~physopt_ref.core.donate`: donated (buffer-reusing) steps;
- :mod:`~physopt_ref.core.compile`: :func:`physopt_ref.compile`;
- :mod:`~physopt_ref.core.schedules`: hyperparameter schedules.
"""
