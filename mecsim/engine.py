"""The engine's historical import path: ``from mecsim.engine import Simulation`` keeps working.

The engine lives in :mod:`mecsim.sim` (run loop, GPU servers, epoch step, faults, streaming).
"""

from mecsim.sim.core import Simulation
from mecsim.sim.server import GPUServer
from mecsim.sim.stream import _sigint_deferred

__all__ = ["Simulation", "GPUServer", "_sigint_deferred"]
