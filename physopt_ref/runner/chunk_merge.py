"""Merge the traces of chunks into the trace of the unsplit run, bit for bit.

Why the merge is exact: a member's decisions (its target, gtol and divergence stops) are taken
per member on the device, and a stopped member is frozen (its point, value, gradient, best point,
optimizer state, status and step counts no longer change). What depends on the whole ensemble is
only *when the loop ends*: :func:`physopt_ref.run` leaves once every run has stopped, as seen at a
check every ``check_every`` steps. Being stopped never ends, so the unsplit loop ends at the first
check at which every chunk has stopped: the latest end of the chunks. A chunk that ended earlier
holds frozen values from its end on, so its records after its end are its last record; and its
extra record at its own end (a loop records the step it stops at) is not one the unsplit run
keeps unless it falls on the record grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
from array_api_compat import array_namespace

from physopt_ref.core.tree import tree_flatten, tree_unflatten
from physopt_ref.runner.trace import Trace

__all__ = ["merge_traces"]


def _concat(parts: Sequence[Any]) -> Any:
    """Concatenate backend arrays (or NamedTuples / tuples / lists of them) along axis 0."""
    first = parts[0]
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*(_concat(f) for f in zip(*parts, strict=True)))
    if isinstance(first, tuple | list):
        return type(first)(_concat(f) for f in zip(*parts, strict=True))
    return array_namespace(*parts).concat(list(parts), axis=0)


def _concat_trees(trees: Sequence[Any]) -> Any:
    flat = [tree_flatten(t) for t in trees]
    treedef = flat[0][1]
    leaves = [_concat([f[0][i] for f in flat]) for i in range(len(flat[0][0]))]
    return tree_unflatten(treedef, leaves)


def _record_index(trace: Trace, steps: np.ndarray) -> np.ndarray:
    """For each record step of the unsplit run, the index of this chunk's record that holds it.

    A step at or before the chunk's end is one of its records; a later step is its last record
    (the chunk's values were frozen from its end on).
    """
    index = np.searchsorted(trace.recorded_steps, steps, side="right") - 1
    inside = steps <= trace.steps
    if np.any(index < 0) or not np.array_equal(trace.recorded_steps[index[inside]],
                                               steps[inside]):
        raise RuntimeError(
            "a chunk's records do not line up with the merged run's record steps "
            f"({trace.recorded_steps.tolist()} vs {steps.tolist()}); the chunks did not run with "
            "the same settings"
        )
    return index


def merge_traces(
    traces: Sequence[Trace],
    *,
    optimizer: str,
    batch_shape: tuple[int, ...],
    wall_time: float,
) -> Trace:
    """The :class:`~physopt_ref.Trace` of the unsplit run from its chunks' traces, in row order.

    Parameters
    ----------
    traces : sequence of Trace
        One per chunk, in the order of their rows (same settings: steps, records, stops).
    optimizer : str
        ``repr`` of the unsplit run's optimizer.
    batch_shape : tuple of int
        The unsplit ensemble's shape.
    wall_time : float
        Seconds of the whole chunked run.
    """
    end = max(t.steps for t in traces)
    longest = next(t for t in traces if t.steps == end)
    steps = longest.recorded_steps
    index = [_record_index(t, steps) for t in traces]
    losses = np.concatenate([t.losses[i] for t, i in zip(traces, index, strict=True)], axis=1)
    # the state history has no row for the start: record j + 1 is history row j
    history = {
        name: np.concatenate(
            [t.state_history[name][i[1:] - 1] for t, i in zip(traces, index, strict=True)],
            axis=1)
        for name in longest.state_history
    }
    xs = None
    if longest.xs is not None:
        xs = np.concatenate([cast(np.ndarray, t.xs)[i] for t, i in zip(traces, index, strict=True)],
                            axis=1)  # every chunk records x when one does (same settings)

    def joined(name: str) -> np.ndarray:
        return np.concatenate([getattr(t, name) for t in traces], axis=0)

    return Trace(
        optimizer=optimizer,
        batch_shape=tuple(batch_shape),
        recorded_steps=steps.copy(),
        losses=losses,
        best_value=joined("best_value"),
        best_x=_concat_trees([t.best_x for t in traces]),
        x=_concat_trees([t.x for t in traces]),
        state=_concat([t.state for t in traces]),
        final_value=joined("final_value"),
        status=joined("status"),
        steps_taken=joined("steps_taken"),
        steps_to_target=joined("steps_to_target"),
        steps=end,
        evaluations=longest.evaluations,
        wall_time=wall_time,
        state_history=history,
        xs=xs,
        target=longest.target,
        gtol=longest.gtol,
    )
