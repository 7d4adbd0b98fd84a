"""The GPU-server model's resident sets: which weights each GPU holds, what a key misses, loads
and eviction (the rules are in :mod:`mecsim.sim.gpu`); part of
:class:`~mecsim.sim.gpu.GPUServerModel`."""

from __future__ import annotations

import math

from mecsim.sim.gpu.events import _IDLE, _LOADING, Event, LoadStart, TimerKind, _Slot


class ResidencyMixin:
    """Resident sets, loads and eviction of :class:`~mecsim.sim.gpu.GPUServerModel`."""

    def resident(self, slot: int) -> tuple[str, ...]:
        return tuple(self.slots[slot].resident)

    def warm(self, key: str) -> bool:
        """Some GPU holds every item the key needs (loaded, or loading)."""
        return any(not self._missing(s, key) for s in self.slots)

    def load_cost(self, key: str) -> float:
        """Load time of the key's items missing on the GPU that misses the least (0 if warm)."""
        return min(self._missing_load(s, key) for s in self.slots)

    def _next_tick(self) -> int:
        self._tick += 1
        return self._tick

    def _reset_residency(self, now: float) -> None:
        for s in self.slots:
            s.resident = {}
            s.used_gib = 0.0
            for name in self.cfg.preload_items:
                s.resident[name] = [0.0, 0.0, float(self._next_tick())]
                s.used_gib += self.cfg.items[name].memory_gib

    def _missing(self, s: _Slot, key: str) -> list[str]:
        return [i for i in self.cfg.models[key].items if i not in s.resident]

    def _missing_load(self, s: _Slot, key: str) -> float:
        return sum(self.cfg.items[i].load_s for i in self._missing(s, key))

    def _warm_idle_slot(self, key: str) -> int | None:
        if self._always_warm:
            for j, s in enumerate(self.slots):
                if s.state == _IDLE:
                    return j
            return None
        for j, s in enumerate(self.slots):
            if s.state == _IDLE and not self._missing(s, key):
                return j
        return None

    def _victim(self, s: _Slot, protect: set[str]) -> str:
        cands = [i for i in s.resident if i not in protect]
        if not cands:  # pragma: no cover - excluded by the config check (the key fits alone)
            raise RuntimeError("no evictable item")
        r = s.resident
        if self.cfg.eviction == "lru":
            return min(cands, key=lambda i: (r[i][0], r[i][2]))
        if self.cfg.eviction == "lfu":
            return min(cands, key=lambda i: (r[i][1], r[i][0], r[i][2]))
        return min(cands, key=lambda i: r[i][2])

    def _start_load(self, j: int, key: str, now: float, out: list[Event]) -> None:
        cfg = self.cfg
        s = self.slots[j]
        need = self._missing(s, key)
        protect = set(cfg.models[key].items)
        add = sum(cfg.items[i].memory_gib for i in need)
        evicted: list[str] = []
        while s.used_gib + add > cfg.memory_gib + 1e-9:
            v = self._victim(s, protect)
            for w in [v] + [i for i in s.resident if cfg.items[i].base == v and i not in protect]:
                s.used_gib -= cfg.items[w].memory_gib
                del s.resident[w]
                evicted.append(w)
                self.evictions.append((now, j, w))
        tick = float(self._next_tick())
        for i in need:  # reserved now; 'loaded at' set when the load ends
            s.resident[i] = [tick, 0.0, math.nan]
        s.used_gib += add
        delay = sum(cfg.items[i].load_s for i in need)
        s.state, s.key, s.load_start = _LOADING, key, now
        self._n_claiming += 1
        ev = LoadStart(j, key, tuple(need), tuple(evicted), now, now + delay)
        self.loads.append(ev)
        out.append(ev)
        self._set_timer(j, TimerKind.LOAD_END, now, delay, out)
