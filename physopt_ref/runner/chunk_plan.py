r"""How :func:`physopt_ref.run_chunked` splits an ensemble: chunk bounds, members, memory estimate.

An ensemble is split along its first ensemble axis into *chunks* of consecutive rows; each chunk
is an ordinary :func:`physopt_ref.run` on its slice of ``x0``. The draws are keyed by (seed,
member) (:mod:`physopt_ref.backends`): ensemble member ``k`` (flat C-order index over the
ensemble axes) of a seeded draw equals a single run with the same seed and member index ``k``.
So a chunk whose first member has flat index ``m0`` keeps every seed and shifts the member
offsets by ``m0``: the optimizer's ``member`` hyperparameter and the run loop's
``noise_member``. Per-run hyperparameter arrays are sliced like ``x0``. Each chunk then
computes exactly what its members compute in the unsplit run.

The memory estimate
-------------------
The bytes one member of a chunk holds at its peak, with :math:`P` parameter elements per
member, :math:`b` bytes per element, :math:`S` bytes of optimizer state per member (measured:
the optimizer's ``init`` on one row), :math:`F` per-run floating state fields (what the run
records), :math:`R` records and :math:`P_0` elements of the first leaf (``record_x``):

.. math::

    B_{\text{member}} = \underbrace{10 P b + 4 S + 424}_{\text{working set and result}}
    + \underbrace{R (1 + F)(b + 24)}_{\text{records}}
    + \underbrace{3 R P_0 b}_{\text{record\_x}}
    + \underbrace{128 P}_{\text{draws off the host}}

- working set: the loop holds the point, gradient, best point and the step's new point and
  gradient, the objective's elementwise temporaries and the optimizer's (about 8 arrays of the
  parameters' size), the old, new and frozen state (:math:`3S`), and about 48 per-run scalars
  of 8 bytes (values, masks, status, counters); the returned result adds the final and best
  points and the state once more (:math:`2Pb + S + 40`), since a result is serialised to go back
  to the caller;
- records: per record, the loss and every per-run field stay on the backend (:math:`b`), are
  stacked on the host in float64 (a float64 copy on the way, and the stack: :math:`16`) and
  serialised once more (:math:`8`);
- ``record_x``: the recorded points on the backend, stacked on the host and serialised;
- draws: on the host backends (NumPy, array-api-strict, torch on the CPU) the Philox words are
  computed in blocks of fixed size, so seeded draws add nothing per member; on device backends
  (CuPy, JAX, torch on a GPU) they are computed in one piece, four int64 lanes per pair of
  float64 values and their temporaries, which the last term bounds (for runs with gradient
  noise or a stochastic optimizer only).

Plus :data:`CHUNK_OVERHEAD_BYTES` per chunk (Philox blocks, Python objects). The estimate was
calibrated with :mod:`tracemalloc` on NumPy (every registered optimizer on Ackley and
quadratics, float32 and float64, every step recorded or every 50th, with gradient noise): the
measured peaks of a chunk, including its serialised result, lie between 45% and 93% of the
per-member part (``tests/test_chunked.py`` checks that a chunk sized for a budget stays within
it). It assumes an objective whose
temporaries are elementwise (a few arrays of the parameters' size per member): the bundled
analytic problems and PDE residuals are; pairwise terms (Lennard-Jones / Morse clusters) are
larger, so give those a smaller budget or an explicit ``chunk_size``. The device term is derived
from the Philox layout, not measured (no GPU was available when it was written).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from physopt_ref.backends._random import _eager_host
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.numerics import itemsize
from physopt_ref.core.registry import REGISTRY
from physopt_ref.core.tree import batch_shape_of, tree_flatten, tree_unflatten
from physopt_ref.core.validate import is_array
from physopt_ref.runner.advance import _per_run_fields
from physopt_ref.transforms.chain import Chain, chain
from physopt_ref.transforms.gradient import TRANSFORMS, GradientTransform

__all__ = [
    "CHUNK_OVERHEAD_BYTES",
    "DEFAULT_MEMORY_BUDGET",
    "ChunkPlan",
    "chunk_optimizer",
    "default_batch_ndim",
    "member_bytes",
    "plan_chunks",
    "record_count",
    "shift_member",
    "slice_rows",
]

#: The default memory budget of one chunk, in bytes (256 MiB).
DEFAULT_MEMORY_BUDGET = 256 * 2**20

#: Bytes a chunk holds whatever its size: Philox blocks, Python objects (1 MiB).
CHUNK_OVERHEAD_BYTES = 2**20

def shift_member(member: int, offset: int) -> int:
    """``member + offset``: the member index of the draws of the chunk member ``offset``.

    Raises ``ValueError`` past the last member index, :math:`2^{32} - 1`.
    """
    shifted = int(member) + int(offset)
    if shifted >= 2**32:
        raise ValueError(f"member index {member} + {offset} is past the last one, 2**32 - 1")
    return shifted


def default_batch_ndim(problem: Any, leaves: list[Any]) -> int:
    """:func:`physopt_ref.run`'s default: every axis but the last for a Problem, else 0."""
    is_problem = hasattr(problem, "value_and_grad") and len(leaves) == 1
    return leaves[0].ndim - 1 if is_problem else 0


def slice_rows(tree: Any, start: int, stop: int) -> Any:
    """Rows ``[start, stop)`` of the first axis of every leaf of a tree."""
    leaves, treedef = tree_flatten(tree)
    return tree_unflatten(treedef, [leaf[start:stop, ...] for leaf in leaves])


def _sliced(hp: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    """The per-run hyperparameter arrays among ``hp``, sliced to rows ``[start, stop)``."""
    return {name: value[start:stop, ...] for name, value in hp.items()
            if is_array(value) and value.ndim}


def _chunk_core(optimizer: Optimizer, start: int, stop: int, members_per_row: int) -> Optimizer:
    hp = dict(optimizer.hyperparameters)
    changes = _sliced(hp, start, stop)
    if "seed" in hp and start:
        changes["member"] = shift_member(hp.get("member", 0), start * members_per_row)
    if not changes:
        return optimizer
    entry = REGISTRY.get(optimizer.name)
    rebuilt = None if entry is None else entry.factory(**{**hp, **changes})
    if (
        rebuilt is None
        or rebuilt.state_type is not optimizer.state_type
        or rebuilt._update_rule is not optimizer._update_rule
    ):
        raise ValueError(
            f"run_chunked must rebuild {optimizer!r} for each chunk (it has a seed or per-run "
            f"hyperparameter arrays), but no registered factory named {optimizer.name!r} builds "
            "it; register the optimizer (physopt_ref.register) or run it without chunks"
        )
    return rebuilt


def _chunk_transform(transform: GradientTransform, start: int, stop: int) -> GradientTransform:
    hp = dict(transform.hyperparameters)
    changes = _sliced(hp, start, stop)
    if not changes:
        return transform
    factory = TRANSFORMS.get(transform.name)
    if factory is None:
        raise ValueError(
            f"run_chunked must slice the per-run arrays {sorted(changes)} of the transform "
            f"{transform!r} for each chunk, but physopt_ref.TRANSFORMS has no factory named "
            f"{transform.name!r} to build it again; add it there or run without chunks"
        )
    return factory(**{**hp, **changes})


def chunk_optimizer(optimizer: Optimizer, start: int, stop: int, members_per_row: int) -> Optimizer:
    """The optimizer of the chunk of rows ``[start, stop)``.

    Its ``member`` offset (when it has a ``seed``) is shifted by the chunk's first member index
    and its per-run
    hyperparameter arrays (and those of the transforms of a :func:`physopt_ref.chain`) are
    sliced to the chunk's rows; an optimizer with neither is returned as it is. The new
    optimizer is built by the registered factory of ``optimizer.name`` (so it is validated, and
    constants derived from the hyperparameters are derived again), the transforms by theirs in
    :data:`physopt_ref.TRANSFORMS`, and chained again.

    Raises
    ------
    ValueError
        When the optimizer (or a transform) has a seed or per-run arrays and is not built by a
        registered factory (the chunk's optimizer could not be rebuilt).
    """
    if not isinstance(optimizer, Chain):
        return _chunk_core(optimizer, start, stop, members_per_row)
    core = _chunk_core(optimizer.optimizer, start, stop, members_per_row)
    transforms = tuple(_chunk_transform(t, start, stop) for t in optimizer.transforms)
    if core is optimizer.optimizer and all(
        a is b for a, b in zip(transforms, optimizer.transforms, strict=True)
    ):
        return optimizer
    return chain(*transforms, core)


def record_count(steps: int, record_every: int) -> int:
    """Most records a run keeps: the start, every ``record_every``-th step, the last, a stop."""
    return 1 + steps // record_every + 2


def _nbytes(tree: Any) -> int:
    """Bytes of every array in a (NamedTuple / tuple / list) state."""
    if isinstance(tree, tuple | list):
        return sum(_nbytes(t) for t in tree)
    if hasattr(tree, "shape") and hasattr(tree, "dtype"):
        return math.prod(tree.shape) * itemsize(array_namespace(tree), tree.dtype)
    return 0


def member_bytes(
    optimizer: Optimizer,
    x0: Any,
    steps: int,
    *,
    batch_ndim: int,
    record_every: int = 1,
    record_x: bool = False,
    grad_noise: float = 0.0,
) -> int:
    """Estimated peak bytes per ensemble member of a chunk (see the module's docstring).

    Parameters
    ----------
    optimizer : Optimizer
    x0 : array or tree of arrays
        The ensemble's start (only the first row is used: the optimizer's ``init`` runs on it to
        measure the state).
    steps, batch_ndim, record_every, record_x, grad_noise :
        As for :func:`physopt_ref.run`.
    """
    leaves, _ = tree_flatten(x0)
    xp = array_namespace(*leaves)
    members_per_row = math.prod(leaves[0].shape[1:batch_ndim])
    P = sum(math.prod(leaf.shape[batch_ndim:]) for leaf in leaves)
    P0 = math.prod(leaves[0].shape[batch_ndim:])
    b = max(itemsize(xp, leaf.dtype) for leaf in leaves)
    first = chunk_optimizer(optimizer, 0, 1, members_per_row)
    state = first.init(slice_rows(x0, 0, 1), batch_ndim=batch_ndim)
    S = _nbytes(state) / members_per_row
    F = len(_per_run_fields(xp, state, tuple(state.count.shape)))
    R = record_count(steps, record_every)
    total = 10 * P * b + 4 * S + 424 + R * (1 + F) * (b + 24)
    if record_x and len(leaves) == 1:
        total += 3 * R * P0 * b
    draws = grad_noise > 0 or "seed" in optimizer.hyperparameters
    if draws and not _eager_host(xp, leaves[0]):
        total += 128 * P
    return math.ceil(total)


@dataclass(frozen=True)
class ChunkPlan:
    """How an ensemble is split into chunks.

    Attributes
    ----------
    batch_shape : tuple of int
        The ensemble's shape; chunks split its first axis.
    bounds : tuple of (int, int)
        ``[start, stop)`` rows of the first ensemble axis per chunk, in order.
    members_per_row : int
        Members in one row (the product of the other ensemble axes).
    member_bytes : int
        Estimated peak bytes per member (:func:`member_bytes`).
    chunk_bytes : int
        Estimated peak bytes of the largest chunk (members times ``member_bytes`` plus
        :data:`CHUNK_OVERHEAD_BYTES`).
    memory_budget : int or None
        The budget the chunk size was derived from (None when ``chunk_size`` was given).
    """

    batch_shape: tuple[int, ...]
    bounds: tuple[tuple[int, int], ...]
    members_per_row: int
    member_bytes: int
    chunk_bytes: int
    memory_budget: int | None

    @property
    def n_chunks(self) -> int:
        """Number of chunks."""
        return len(self.bounds)

    @property
    def chunk_size(self) -> int:
        """Rows of the largest chunk."""
        return max(stop - start for start, stop in self.bounds)


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _balanced(rows: int, n_chunks: int) -> tuple[tuple[int, int], ...]:
    """``n_chunks`` runs of consecutive rows whose sizes differ by at most one."""
    size, extra = divmod(rows, n_chunks)
    bounds, start = [], 0
    for i in range(n_chunks):
        stop = start + size + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return tuple(bounds)


def plan_chunks(
    optimizer: Optimizer,
    problem: Any,
    x0: Any,
    steps: int,
    *,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    parallelism: int = 1,
    batch_ndim: int | None = None,
    record_every: int = 1,
    record_x: bool = False,
    grad_noise: float = 0.0,
) -> ChunkPlan:
    """Split the ensemble ``x0`` into chunks of rows of its first ensemble axis.

    Without ``chunk_size`` the largest chunk is the most rows whose estimated peak
    (:func:`member_bytes` per member, plus :data:`CHUNK_OVERHEAD_BYTES`) fits in
    ``memory_budget`` (default :data:`DEFAULT_MEMORY_BUDGET`, 256 MiB). The rows are then spread
    evenly: the number of chunks is rounded up to a multiple of ``parallelism`` (the workers
    that run chunks at once) so that no worker waits at the end, and chunk sizes differ by at
    most one row.

    Parameters
    ----------
    optimizer, problem, x0, steps, batch_ndim, record_every, record_x, grad_noise :
        As for :func:`physopt_ref.run`.
    chunk_size : int, optional
        Rows per chunk (instead of a memory budget).
    memory_budget : int, optional
        Bytes one chunk may hold at its peak.
    parallelism : int
        How many chunks run at once.

    Returns
    -------
    ChunkPlan

    Raises
    ------
    ValueError
        For an ``x0`` without ensemble axes, both ``chunk_size`` and ``memory_budget``, a budget
        too small for one row, or counts that are not positive ints.
    """
    leaves, _ = tree_flatten(x0)
    if batch_ndim is None:
        batch_ndim = default_batch_ndim(problem, leaves)
    if batch_ndim < 1:
        raise ValueError(
            "run_chunked splits an ensemble along its first ensemble axis, but x0 has no "
            "ensemble axes (batch_ndim = 0); run a single start with physopt_ref.run"
        )
    batch_shape = batch_shape_of(leaves, batch_ndim)
    _check_positive_int("parallelism", parallelism)
    if chunk_size is not None and memory_budget is not None:
        raise ValueError("give chunk_size or memory_budget, not both")
    rows = batch_shape[0]
    members_per_row = math.prod(batch_shape[1:])
    per_member = member_bytes(optimizer, x0, steps, batch_ndim=batch_ndim,
                              record_every=record_every, record_x=record_x,
                              grad_noise=grad_noise)
    per_row = per_member * members_per_row
    budget = None
    if chunk_size is not None:
        max_rows = _check_positive_int("chunk_size", chunk_size)
    else:
        budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
        _check_positive_int("memory_budget", budget)
        max_rows = (budget - CHUNK_OVERHEAD_BYTES) // per_row
        if max_rows < 1:
            raise ValueError(
                f"memory_budget = {budget} bytes is too small: one row of the ensemble "
                f"({members_per_row} member(s)) is estimated at {per_row} bytes plus "
                f"{CHUNK_OVERHEAD_BYTES} bytes per chunk"
            )
    n_chunks = -(-rows // max_rows) if rows else 1
    n_chunks = min(max(rows, 1), -(-n_chunks // parallelism) * parallelism)
    bounds = _balanced(rows, n_chunks)
    largest = max(stop - start for start, stop in bounds)
    return ChunkPlan(
        batch_shape=tuple(batch_shape),
        bounds=bounds,
        members_per_row=members_per_row,
        member_bytes=per_member,
        chunk_bytes=largest * per_row + CHUNK_OVERHEAD_BYTES,
        memory_budget=budget,
    )

