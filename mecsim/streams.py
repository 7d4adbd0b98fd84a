"""Named random streams spawned from one seed (no global random state anywhere).

Each concern draws from its own stream, keyed by a fixed name and optional integers, so adding
draws to one concern never shifts another's: the arrivals and channels of a seed are the same
whatever the policy does (common random numbers across policies).

Large device groups: a group of more than :data:`PER_DEVICE_MAX` devices does not get one stream
per device and concern (tens of thousands of generators would cost more than the run). Its Poisson
arrivals are one superposed process per group (see :mod:`mecsim.arrivals`) and its fading blocks
one interleaved stream per group (see :mod:`mecsim.radio`), both keyed by
:func:`group_key`. Groups of at most :data:`PER_DEVICE_MAX` devices keep their per-device streams.

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


#: Device groups of at most this many devices draw from per-device streams (arrivals, workload,
#: jitter, fading); larger groups draw from streams keyed by the group (:func:`group_key`).
PER_DEVICE_MAX = 64

#: Key offset of per-group streams of large groups (trace groups use 1_000_000 + group index).
GROUP_KEY_BASE = 2_000_000


def group_key(group: int) -> int:
    """The stream key of device group ``group`` (index in ``scenario.devices``) when it has more
    than :data:`PER_DEVICE_MAX` devices."""
    return GROUP_KEY_BASE + int(group)


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
