"""The time-domain engine, in parts: :mod:`~mecsim.sim.core` (the run loop and wiring),
:mod:`~mecsim.sim.devices` (placement and trajectories), :mod:`~mecsim.sim.intake` (arrivals
into the task table), :mod:`~mecsim.sim.server` (GPU servers), :mod:`~mecsim.sim.epoch` (admit,
snapshot, decision), :mod:`~mecsim.sim.dispatch` (uploads, records, arrival at the server),
:mod:`~mecsim.sim.faults`, :mod:`~mecsim.sim.stream` (streamed writing),
:mod:`~mecsim.sim.stepping` (pause at each decision), :mod:`~mecsim.sim.uplink` (the reallocated
uplink) and :mod:`~mecsim.sim.gpu` (the GPU-server model)."""

from mecsim.sim.core import Simulation
from mecsim.sim.server import GPUServer

__all__ = ["Simulation", "GPUServer"]
