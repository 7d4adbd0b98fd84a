"""Streamed writing: final task rows, server events and epochs go to Parquet in chunks during the
run (see :mod:`mecsim.sim.core` for the buffer layout), and Ctrl-C never cuts a write in half."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

import numpy as np

from mecsim.traces import DROPPED, SERVED, EpochLog, TraceWriter, faults_frame, servers_frame, tasks_frame


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C back until the block is done (writing rows out and dropping them from the
    buffers must not be cut in the middle); it is raised right after. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    try:
        old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got:
            signal.raise_signal(signal.SIGINT)


class StreamMixin:
    """Writing the tables out as the run goes; part of :class:`~mecsim.sim.core.Simulation`."""

    def _stream_tick(self, now: float) -> None:
        """At an epoch of a streamed run: write out what is final once there is enough of it."""
        st = self._stream
        assert st is not None
        if self.n_arrived >= self._flush_at:
            self._flush_tasks(now)
        if self.server_log.n >= self._chunk:
            with _sigint_deferred():
                st.write_servers(servers_frame(self.server_log.view(), self.server_names))
                self.server_log.n = 0  # monitor() writes every field of a row
        if len(self.epoch_log) >= st.epoch_chunk:
            with _sigint_deferred():
                st.write_epochs(self.epoch_log)
                self.epoch_log = EpochLog()

    def _flush_tasks(self, now: float) -> None:
        """Write the longest prefix of final task rows if it has ``chunk_rows`` rows, and drop it
        from the buffers; otherwise look again after ``chunk_rows / 4`` more arrivals."""
        c = self.tasks.cols
        lim = self.n_arrived - self._base  # tasks not arrived yet are WAITING
        p = self._final_upto
        if p < lim:
            st = c["state"][p:lim]
            fin = (st == DROPPED) | ((st == SERVED) & (c["t_complete"][p:lim] <= now))
            p = lim if fin.all() else p + int(np.argmin(fin))
            self._final_upto = p
        if p < self._chunk:  # a straggler holds the prefix back
            self._flush_at = self.n_arrived + max(self._chunk // 4, 1)
            return
        # final rows' times are all <= now, so the NaN-masking of tasks_frame changes nothing
        # and status/latency come out as they would at the end
        rows = {k: v[:p] for k, v in c.items()}
        df = tasks_frame(
            rows,
            self.model_names,
            self.server_names,
            now,
            first_id=self._base,
            adapter_names=self.adapter_names,
        )
        with _sigint_deferred():  # written rows must be dropped, and the buffers stay whole
            self._stream.write_tasks(df)
            self._drop_rows(p)
        self._flush_at = self._base + self._chunk

    def _drop_rows(self, k: int) -> None:
        """Forget buffer rows [0, k): task ids [_base, _base + k)."""
        m = self.tasks.n - k
        self.tasks.drop_front(k, min_capacity=2 * self._chunk)
        cap = self.tasks.cap
        for name in ("expected_service", "actual_service"):
            a = getattr(self, name)
            if len(a) == cap:
                a[:m] = a[k : k + m]
            else:
                new = np.zeros(cap)
                new[:m] = a[k : k + m]
                setattr(self, name, new)
        self._base += k
        self._final_upto = max(self._final_upto - k, 0)
        self._bind_views()

    def close_stream(self) -> None:
        """Write every row still held and close the streamed files (tasks, servers, epochs,
        faults). A stopped run keeps the tasks that had arrived by ``env.now``, as
        :func:`~mecsim.results.collect` does. Does nothing without ``stream_to`` or when closed."""
        st = self._stream
        if st is None or st.closed:
            return
        with _sigint_deferred():
            self._close_stream(st)

    def _close_stream(self, st: TraceWriter) -> None:
        try:
            t_end = self.t_end if self.complete else float(self.env.now)
            c = self.tasks.cols
            n = self.tasks.n
            if not self.complete:  # tasks generated ahead of a stop had not arrived yet
                n = int(np.searchsorted(c["t_arrival"][:n], t_end, side="right"))
            st.write_tasks(
                tasks_frame(
                    {k: v[:n] for k, v in c.items()},
                    self.model_names,
                    self.server_names,
                    t_end,
                    first_id=self._base,
                    adapter_names=self.adapter_names,
                )
            )
            st.write_servers(servers_frame(self.server_log.view(), self.server_names))
            self.server_log.n = 0
            st.write_epochs(self.epoch_log)
            self.epoch_log = EpochLog()
            if self.gpu_mode and self.sc.service.residency.enabled:  # small: written once
                from mecsim.traces import atomic_write, loads_frame

                df = loads_frame([getattr(s, "model", None) for s in self.servers], self.server_names)
                atomic_write(st.out / "loads.parquet", lambda p: df.to_parquet(p, index=False))
        finally:
            st.close(faults_frame(self.fault_log.view(), self.server_names))
