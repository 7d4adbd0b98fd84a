"""The time-domain engine, in parts: :mod:`~mecsim.sim.core` (the run loop and wiring),
:mod:`~mecsim.sim.server` (GPU servers), :mod:`~mecsim.sim.epoch` (admit, snapshot, decision),
:mod:`~mecsim.sim.dispatch` (uploads, records, arrival at the server), :mod:`~mecsim.sim.faults`
and :mod:`~mecsim.sim.stream` (streamed writing)."""

from mecsim.sim.core import Simulation
from mecsim.sim.server import GPUServer

__all__ = ["Simulation", "GPUServer"]
