"""Running optimizers on problems: the run loop and everything around it.

- :mod:`~physopt_ref.runner.loop`: :func:`physopt_ref.run`, eager;
- :mod:`~physopt_ref.runner.advance`: one step of the loop (shared by the eager and compiled
  forms);
- :mod:`~physopt_ref.runner.compiled`: the loop's step as one ``jax.jit`` call;
- :mod:`~physopt_ref.runner.trace`: :class:`~physopt_ref.runner.trace.Trace`;
- :mod:`~physopt_ref.runner.stats`: intervals and runtime ECDFs;
- :mod:`~physopt_ref.runner.spec`: optimizers, chains and schedules as plain data;
- :mod:`~physopt_ref.runner.checkpoint`, :mod:`~physopt_ref.runner.run_checkpoint`:
  checkpoints of optimizer states and of whole runs;
- :mod:`~physopt_ref.runner.chunk_plan`, :mod:`~physopt_ref.runner.chunk_merge`,
  :mod:`~physopt_ref.runner.chunked`: ensembles split into chunks on any executor.

(Named ``runner``, not ``run``, so that the subpackage never shadows the function
:func:`physopt_ref.run`.)
"""
