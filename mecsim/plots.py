"""Figures for latency studies: moved to :mod:`mecsim.analysis.plots` (this name stays)."""

from mecsim.analysis.plots import *  # noqa: F403
from mecsim.analysis.plots import __all__, __doc__  # noqa: F401
