"""``--workers N`` and ``--scheduler ADDRESS``: the Dask cluster that runs the chunks of a command.

``--workers N`` starts a ``distributed.LocalCluster`` of N worker processes with one thread each
(so each worker runs one chunk at a time and holds at most one chunk's memory budget) for the
duration of the command; ``--scheduler ADDRESS`` connects to a running cluster (its workers must
be able to import ``physopt_ref``). Both need the ``distributed`` extra
(``pip install "physopt_ref[distributed]"``). The options are validated before anything starts:
a bad value is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from physopt_ref.cli.args import UsageError
from physopt_ref.cli.output import Progress

__all__ = [
    "ChunkProgress",
    "check_cluster_options",
    "cluster_client",
    "local_cluster",
    "worker_environ",
]

_INSTALL = 'pip install "physopt_ref[distributed]"'


def _workers(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"--workers must be an integer >= 1, got {text!r}")
    return value


def _check_address(address: str) -> str:
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import backends

    scheme, location = parse_address(address)
    if scheme not in backends:
        raise UsageError(f"--scheduler {address!r}: unknown protocol {scheme!r}; "
                         f"expected one of {sorted(backends)} (e.g. tcp://HOST:8786)")
    if scheme != "inproc":
        try:
            _, port = parse_host_port(location)
        except ValueError as exc:
            raise UsageError(f"--scheduler {address!r}: {exc} (expected e.g. tcp://HOST:8786)"
                             ) from exc
        if not 1 <= port <= 65535:
            raise UsageError(f"--scheduler {address!r}: port {port} is not in 1..65535")
    return address


def check_cluster_options(args: argparse.Namespace) -> tuple[int | None, str | None]:
    """``(workers, scheduler)`` from ``--workers`` / ``--scheduler``, validated."""
    workers = _workers(getattr(args, "workers", None))
    scheduler = getattr(args, "scheduler", None)
    if workers is not None and scheduler is not None:
        raise UsageError("give --workers (a local cluster) or --scheduler (a running cluster), "
                         "not both")
    if workers is None and scheduler is None:
        return None, None
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"--workers and --scheduler need dask.distributed: {_INSTALL}") from exc
    if scheduler is not None:
        _check_address(scheduler)
    return workers, scheduler


@contextlib.contextmanager
def cluster_client(args: argparse.Namespace) -> Iterator[Any]:
    """A ``distributed.Client`` for the command's options (None without them), closed after."""
    workers, scheduler = check_cluster_options(args)
    if workers is None and scheduler is None:
        yield None
        return
    from distributed import Client

    if scheduler is not None:
        try:
            client = Client(scheduler)
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"cannot reach the scheduler at {scheduler}: {exc}") from exc
        with client:
            yield client
        return
    assert workers is not None  # check_cluster_options: workers or a scheduler
    with local_cluster(workers) as cluster, Client(cluster) as client:
        yield client


def worker_environ() -> dict[str, Any]:
    """Dask's environment for new worker processes, without its ``MALLOC_*`` settings.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand freed memory back
    to the system). Setting it also fixes glibc's mmap threshold at 128 KiB, so every NumPy
    array above that size is a fresh mapping, page-faulted in on every step: measured here,
    heavy ball on 50 000 2-D Ackley starts took 5.6 s instead of 2.8 s for 100 steps. A chunk
    allocates the same few sizes at every step, which glibc's default (adaptive) threshold
    serves from the heap.
    """
    import dask

    environ = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    return {k: v for k, v in environ.items() if not k.startswith("MALLOC_")}


@contextlib.contextmanager
def local_cluster(workers: int) -> Iterator[Any]:
    """A ``LocalCluster`` of ``workers`` processes, one thread each, glibc's default malloc.

    The dashboard takes a free port (no clash with another cluster on 8787); logs below ERROR
    are silenced.
    """
    import dask
    from distributed import LocalCluster

    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ()}),
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                     dashboard_address=":0", silence_logs=logging.ERROR) as cluster,
    ):
        yield cluster


class ChunkProgress:
    """The progress bar over completed chunks: ``run_chunked(progress=...)``.

    ``label`` is shown next to the bar (the command sets it, e.g. to the cell of ``compare``).
    """

    def __init__(self, progress: Progress, label: str = "") -> None:
        self.progress = progress
        self.label = label

    def __call__(self, done: int, total: int) -> None:
        self.progress(done, total, f"chunks {self.label}".rstrip())

    def cells(self) -> Callable[[int, int, str], None]:
        """A ``compare(progress=...)`` callback that labels the chunk bar with the cell count."""

        def update(done: int, total: int, label: str) -> None:
            self.label = f"(cells done {done}/{total}, last {label})"

        return update
