"""One executor for every study: runs planned runs serially in this process or on Dask.

:class:`Executor` is what :func:`mecsim.study.sweep.run_sweep` (and through it
:func:`mecsim.study.comparison.compare` and every study) hands its pending runs to. It executes
:func:`mecsim.study.runs.execute_run` for each and reports each catalogue row as the run ends:

* serially, in this process (``workers=1``, or when ``dask.distributed`` is not installed and
  no scheduler is given); the kind is recorded as ``"serial"``;
* on an embedded Dask ``LocalCluster``: one single-threaded worker process per core by default
  (a run is pure Python and holds the GIL), made on first use and kept until :meth:`close`, so a
  study of many sweeps starts its cluster once;
* on a user's cluster: ``scheduler`` is its address or a ``distributed.Client``. Workers write
  the run folders themselves, so the output folder must be on a filesystem they share, at the
  same path.

Worker processes start with SIGINT ignored: Ctrl-C reaches only this process, which cancels
what is outstanding, records what finished and shuts the cluster down.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mecsim.errors import MissingExtraError
from mecsim.study.runs import FAILED, RunSpec, _now, _one_line, execute_run
from mecsim.study.spec import SweepError

__all__ = ["Executor"]


def _has_distributed() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


class Executor:
    """Runs planned runs serially or on Dask (see the module docstring).

    Args:
        workers: 1 runs serially in this process; N > 1 starts a local cluster of N worker
            processes; None: one per core (at most one per pending run), or serially when
            ``dask.distributed`` is not installed.
        scheduler: the address of a running Dask scheduler (``"tcp://host:8786"``) or a
            ``distributed.Client`` to use as is.
        progress: show a progress bar while running.

    Raises:
        SweepError: bad ``workers`` or ``scheduler``.
    """

    def __init__(self, workers: int | None = None, scheduler: Any = None, progress: bool = True) -> None:
        if workers is not None and workers < 1:
            raise SweepError(f"workers must be >= 1, got {workers}")
        if scheduler and workers is not None:
            raise SweepError(
                "--workers sizes the embedded local cluster; a cluster at an address has the workers it has"
            )
        self.workers = workers
        self.scheduler = scheduler
        self.progress = progress
        self.serial = scheduler is None and (workers == 1 or not _has_distributed())
        self._client: Any = None
        self._cluster: Any = None
        self._owns = False

    @property
    def kind(self) -> str:
        """``"serial"`` or ``"dask"``: how the runs are executed (recorded in reports)."""
        return "serial" if self.serial else "dask"

    def client(self, n_pending: int = 1) -> Any:
        """The Dask client (made on first use)."""
        if self._client is not None:
            return self._client
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise MissingExtraError("dask[distributed]", "dist") from None
        sched = self.scheduler
        if sched is not None and not isinstance(sched, str):
            if not isinstance(sched, Client):
                raise SweepError(
                    f"scheduler must be an address or a distributed.Client, got {type(sched).__name__}"
                )
            self._client = sched
            return sched
        if sched:
            try:
                self._client = Client(sched, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise SweepError(
                    f"cannot connect to the Dask scheduler at {sched!r}: {' '.join(str(exc).split())}"
                ) from None
            self._owns = True
            return self._client
        n = self.workers if self.workers is not None else min(os.cpu_count() or 1, max(n_pending, 1))
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:  # the spawned workers inherit SIGINT ignored
            self._cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
        self._client = Client(self._cluster)
        self._owns = True
        return self._client

    def slots(self) -> int:
        """How many runs execute at once."""
        if self.serial:
            return 1
        return max(sum(self.client().nthreads().values()), 1)

    def map(
        self,
        runs: Sequence[RunSpec],
        out: Path,
        attempts: dict[str, int],
        on_row: Callable[[RunSpec, dict[str, Any]], None],
    ) -> None:
        """Execute ``runs`` into ``out`` and call ``on_row(run, row)`` as each one ends.

        A run that fails is a row with status ``failed`` (never an exception); a worker that
        dies is recorded the same way. On an interruption the outstanding runs are cancelled
        and the exception propagates.
        """
        if not runs:
            return
        if self.serial:
            for run in runs:
                on_row(run, execute_run(run, str(out), attempts[run.run_id] + 1))
            return
        client = self.client(len(runs))
        from distributed import as_completed

        # A fresh suffix per submission: a long-lived cluster must never hand back the result of
        # an earlier sweep's task with the same key.
        token = uuid.uuid4().hex[:8]
        futures = [
            client.submit(
                execute_run,
                run,
                str(out),
                attempts[run.run_id] + 1,
                key=f"mecsim-run-{run.run_id}-{token}",
                pure=False,
            )
            for run in runs
        ]
        by_key = {f.key: run for f, run in zip(futures, runs, strict=True)}
        try:
            for fut in as_completed(futures):
                run = by_key[fut.key]
                try:
                    row = fut.result()
                except Exception as exc:  # the worker died (KilledWorker) or the task was lost
                    row = run.base_row()
                    row.update(
                        status=FAILED,
                        error=_one_line(exc),
                        finished=_now(),
                        attempts=attempts[run.run_id] + 1,
                    )
                fut.release()
                on_row(run, row)
        except BaseException:
            client.cancel(futures)
            raise

    def close(self) -> None:
        """Shut down what this executor started (a client given to it stays open)."""
        if self._owns and self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None
        self._owns = False

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
