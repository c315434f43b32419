"""The records of a run (:func:`physopt_ref.run`): step numbers, losses, per-run state fields
and points, copied to host buffers as the loop goes.

Each recorded quantity is a :class:`_Rows`: one host (NumPy) buffer of all its records, filled
**one record late**. When record ``i + 1`` arrives, record ``i`` (a backend array, long
computed by then) is copied into row ``i`` and its reference dropped; :meth:`_Rows.array`
copies the last one. So

- the loop keeps at most one record per quantity on the backend: a JAX run that held every
  record (an ensemble's losses and each per-run state field, every ``record_every`` steps) made
  XLA allocate every new step's outputs in fresh memory, and stacking the records at the end
  copied them all once more into fresh memory;
- the copy waits for a record only when the next one is taken, not right after the step that
  produced it: the loop does not wait for the device at every record.

The buffer holds as many rows as the run can record (:func:`max_records`); rows not reached
(a run that stopped early) are never written. Measured with 1e5 runs x 2 float64, 300 steps,
``record_every=5``, BBI under ``run(compile=True)`` (five per-run fields and the losses, 61
records; one thread, CPU seconds, medians of 4 alternating repeats; ``docs/speed.md``): the
loop with the records took 0.96 s more than without them when the records were kept as
backend arrays and stacked at the end, 0.26 s more with these buffers.

The values are those of ``np.asarray(to_numpy(record), dtype)`` stacked in order: losses and
state fields in float64, points in their own dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from physopt_ref.backends import to_numpy

__all__ = ["max_records"]


def max_records(steps: int, record_every: int) -> int:
    """The most records a run of ``steps`` steps can take: the start, every ``record_every``-th
    step and the last step."""
    return 1 + steps // record_every + (1 if steps % record_every else 0)


class _Rows:
    """The records of one quantity: a host buffer filled one record late (module docstring)."""

    __slots__ = ("_buf", "_capacity", "_dtype", "_late", "_n")

    def __init__(self, capacity: int, dtype: Any = None) -> None:
        self._capacity = max(1, capacity)
        self._dtype = dtype  #: ``None``: the records' own dtype
        self._buf: np.ndarray | None = None
        self._n = 0  #: rows written
        self._late: Any = None  #: the last record, not yet copied

    def __len__(self) -> int:
        return self._n + (self._late is not None)

    def append(self, value: Any) -> None:
        """Take a record (a backend array); the one before it is copied now."""
        self._settle()
        self._late = value

    def extend(self, values: Any) -> None:
        """Take several host records at once (a checkpoint's)."""
        for value in values:
            self.append(value)

    def _settle(self) -> None:
        if self._late is None:
            return
        row = np.asarray(to_numpy(self._late), dtype=self._dtype)
        self._late = None
        if self._buf is None:
            self._buf = np.empty((self._capacity, *row.shape), dtype=row.dtype)
        elif self._n == len(self._buf):  # more records than planned: grow (not in run())
            grown = np.empty((2 * len(self._buf), *self._buf.shape[1:]), self._buf.dtype)
            grown[: self._n] = self._buf
            self._buf = grown
        self._buf[self._n] = row
        self._n += 1

    def array(self) -> np.ndarray:
        """The records so far, stacked: shape ``(len(self), *record shape)`` (a view of the
        buffer's first rows)."""
        self._settle()
        assert self._buf is not None, "no records"
        return self._buf[: self._n]


class _Recorder:
    """The records: step numbers, losses, points (optional) and per-run state fields.

    ``fields`` maps each per-run floating field of the optimizer state (batch-shaped arrays)
    to its :class:`_Rows`; ``per_run_fields(state)`` picks them out of a state.
    """

    def __init__(self, capacity: int, record_x: bool, per_run_fields: Any) -> None:
        self.capacity = capacity
        self.record_x = record_x
        self._per_run_fields = per_run_fields
        self.steps: list[int] = []
        self.losses = _Rows(capacity, np.float64)
        self.xs = _Rows(capacity)
        self.fields: dict[str, _Rows] = {}

    @classmethod
    def start(cls, capacity: int, record_x: bool, per_run_fields: Any, f: Any,
              x: Any) -> _Recorder:
        """A fresh recorder with the start's record (step 0: the loss and the point)."""
        rec = cls(capacity, record_x, per_run_fields)
        rec.steps.append(0)
        rec.losses.append(f)
        if record_x:
            rec.xs.append(x)
        return rec

    @classmethod
    def restored(cls, capacity: int, record_x: bool, per_run_fields: Any,
                 saved: dict[str, Any]) -> _Recorder:
        """The recorder of a checkpoint's records (host arrays: ``steps``, ``losses``, ``xs``,
        ``fields``)."""
        rec = cls(max(capacity, len(saved["steps"])), record_x, per_run_fields)
        rec.steps = list(saved["steps"])
        rec.losses.extend(saved["losses"])
        rec.xs.extend(saved["xs"])
        for name, values in saved["fields"].items():
            rec._field(name).extend(values)
        return rec

    def _field(self, name: str) -> _Rows:
        rows = self.fields.get(name)
        if rows is None:
            rows = self.fields[name] = _Rows(self.capacity, np.float64)
        return rows

    def add(self, k: int, f: Any, x: Any, state: Any) -> None:
        """Record step ``k``: the losses ``f``, the point ``x`` (with ``record_x``) and the
        state's per-run fields."""
        self.steps.append(k)
        self.losses.append(f)
        if self.record_x:
            self.xs.append(x)
        for name, value in self._per_run_fields(state).items():
            self._field(name).append(value)

    def field_arrays(self) -> dict[str, np.ndarray]:
        """Every recorded state field, stacked (also those recorded fewer times than steps)."""
        return {name: rows.array() for name, rows in self.fields.items()}

    def host(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
        """Steps, losses, state history and points, as NumPy arrays.

        The state history holds the fields recorded at every record after the start.
        """
        n = len(self.steps)
        history = {name: rows.array() for name, rows in self.fields.items()
                   if len(rows) == n - 1}
        xs = self.xs.array() if self.record_x else None
        return np.asarray(self.steps, dtype=np.int64), self.losses.array(), history, xs
