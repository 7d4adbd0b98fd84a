"""Named random streams spawned from one seed (no global random state anywhere).

Each concern draws from its own stream, keyed by a fixed name and optional integers, so adding
draws to one concern never shifts another's: the arrivals and channels of a seed are the same
whatever the policy does (common random numbers across policies).

Example:
    >>> from mecsim.streams import Streams
    >>> a = Streams(7).get("arrivals").random()
    >>> a == Streams(7).get("arrivals").random()
    True
"""

from __future__ import annotations

import numpy as np

#: Fixed ids of the named streams. Never renumber: that would change every seeded result.
STREAM_IDS = {
    "arrivals": 1,
    "workload": 2,
    "placement": 3,
    "shadowing": 4,
    "fading": 5,
    "mobility": 6,
    "jitter": 7,
    "policy": 8,
    "solver": 9,
    "faults": 10,
}


class Streams:
    """Factory of independent generators for one run seed."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._cache: dict[str, np.random.Generator] = {}

    def keyed(self, name: str, *keys: int) -> np.random.Generator:
        """A fresh generator for (seed, name, *keys)."""
        ss = np.random.SeedSequence(self.seed, spawn_key=(STREAM_IDS[name], *map(int, keys)))
        return np.random.Generator(np.random.PCG64(ss))

    def get(self, name: str) -> np.random.Generator:
        """The run's single generator for a name (created on first use)."""
        gen = self._cache.get(name)
        if gen is None:
            gen = self._cache[name] = self.keyed(name)
        return gen
