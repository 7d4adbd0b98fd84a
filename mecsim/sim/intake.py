"""Intake: the task source's windows of arrivals into the task table, and arrived tasks onto the
waiting list (buffer rows follow the streaming offset ``_base``, see :mod:`mecsim.sim.core`)."""

from __future__ import annotations

import math

import numpy as np


class IntakeMixin:
    """Arrivals into the task table; part of :class:`~mecsim.sim.core.Simulation`."""

    def _generate_until(self, t: float) -> None:
        """Make sure every task arriving at or before t is in the task table."""
        src = self.source
        while src.t_next <= t and src.t_next < src.duration:
            b = src.next_batch()
            if b is None or len(b) == 0:
                continue
            a, z = self.tasks.append_many(
                device=b.device,
                model=b.model,
                input_bits=b.input_bits,
                output_bits=b.output_bits,
                steps=b.steps,
                deadline=b.t_arrival + b.deadline_rel,
                service_factor=b.jitter,
                t_arrival=b.t_arrival,
                **({"adapter": b.adapter} if self.gpu_mode else {}),
            )
            self._bind_views()
            # service times are known per (task, server) once the server is chosen; store the
            # server-independent parts now
            need = self.tasks.cap
            if len(self.expected_service) < need:
                self.expected_service = np.resize(self.expected_service, need)
                self.actual_service = np.resize(self.actual_service, need)

    def _ingest(self, now: float) -> None:
        self._generate_until(now)
        t_arr = self.tasks.cols["t_arrival"]
        base = self._base
        k = self.n_arrived
        end = base + self.tasks.n
        stop = min(k + 4, end)
        while k < stop and t_arr[k - base] <= now:  # the usual few arrivals, one by one
            k += 1
        if k == stop < end and t_arr[k - base] <= now:  # many: the rest by bisection (sorted)
            k += int(t_arr[k - base : end - base].searchsorted(now, side="right"))
        if k > self.n_arrived:
            self.waiting.extend(range(self.n_arrived, k))
            self.n_arrived = k

    def _next_arrival_time(self) -> float:
        while self.n_arrived >= self._base + self.tasks.n:
            if self.source.t_next >= self.source.duration:
                return math.inf
            self._generate_until(self.source.t_next)
        return float(self.tasks.cols["t_arrival"][self.n_arrived - self._base])
