"""Stepping: a run that pauses at each decision and resumes with the caller's decision.

The scheduler process builds the snapshot and then waits on an event instead of calling the
policy; :meth:`SteppingMixin.next_decision` advances the SimPy environment one event at a time
until such a pause, :meth:`SteppingMixin.apply` triggers the event with the decision. No thread,
no queue: the caller and the engine take turns in one thread.
"""

from __future__ import annotations

import time
from typing import Any

from mecsim.state import Decision, EpochState


class SteppingMixin:
    """``start`` / ``next_decision`` / ``apply``; part of :class:`~mecsim.sim.core.Simulation`."""

    def start(self) -> Any:
        """Start a run that pauses at every decision instead of calling ``policy.decide``.

        Drive it with :meth:`next_decision` and :meth:`apply`; the run is the one :meth:`run`
        would make with a policy that decides the same (same events in the same order; the
        policy's ``reset`` hook still gets its stream). The RL environment uses this.

        Example:
            >>> from mecsim.scenario import load_scenario
            >>> from mecsim.policies import make_policy
            >>> greedy = make_policy("greedy")
            >>> from mecsim.engine import Simulation
            >>> sim = Simulation(load_scenario("smoke-v1", duration_s=20), greedy, seed=1).start()
            >>> while (state := sim.next_decision()) is not None:
            ...     sim.apply(greedy.decide(state))
            >>> sim.complete
            True
        """
        self._stepping = True
        self._bar = None
        self._launch()
        self.wall_s = 0.0
        return self

    def next_decision(self) -> EpochState | None:
        """Run until the engine needs a decision and return its snapshot; None once the run is
        over (the records are then complete, as after :meth:`run`)."""
        if not self._stepping:
            raise RuntimeError("call start() before next_decision()")
        if self._pending is not None:
            return self._pending
        env = self.env
        t0 = time.perf_counter()
        try:
            while self._pending is None:
                if env.peek() >= self.t_end:
                    env.run(until=self.t_end)  # moves the clock to the end (no event left before)
                    if not self.complete:
                        self._wrap_up()
                    return None
                env.step()
        finally:
            self.wall_s += time.perf_counter() - t0
        return self._pending

    def apply(self, decision: Decision) -> None:
        """Hand in the decision for the snapshot :meth:`next_decision` returned (checked as a
        policy's would be); the run goes on at the next :meth:`next_decision`."""
        if self._pending is None:
            raise RuntimeError("no decision is pending: call next_decision() first")
        self._pending = None
        self._resume.succeed(decision)
