"""The GPU-server model's configuration: step-time curves, loadable items, the keys a server
serves, and one server's config (checked when it is made)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Eviction = Literal["lru", "lfu", "fifo"]


@dataclass(frozen=True)
class StepCurve:
    """Step time of a batch relative to batch 1, at profiled batch sizes (linear in between).

    Example:
        >>> c = StepCurve.from_table({1: 1.0, 2: 1.593, 4: 2.839})
        >>> c.max_batch, c.factor(1), round(c.factor(3), 3)
        (4, 1.0, 2.216)
    """

    sizes: tuple[int, ...] = (1,)
    factors: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not self.sizes or self.sizes[0] != 1 or self.factors[0] != 1.0:
            raise ValueError(
                f"batch_factor: must start at batch 1 with factor 1.0 (got {self.sizes}, {self.factors})"
            )
        if len(self.sizes) != len(self.factors):
            raise ValueError("batch_factor: sizes and factors differ in length")
        if any(b <= a for a, b in zip(self.sizes, self.sizes[1:], strict=False)):
            raise ValueError(f"batch_factor: batch sizes must increase (got {self.sizes})")
        if any(f <= 0 or not math.isfinite(f) for f in self.factors):
            raise ValueError(f"batch_factor: factors must be positive and finite (got {self.factors})")

    @classmethod
    def from_table(cls, table: Mapping[int, float] | None) -> StepCurve:
        """From a {batch size: factor} mapping (models/gpus.yaml); empty or None: batch 1 only."""
        if not table:
            return cls()
        items = sorted((int(b), float(f)) for b, f in table.items())
        return cls(tuple(b for b, _ in items), tuple(f for _, f in items))

    @property
    def max_batch(self) -> int:
        return self.sizes[-1]

    def factor(self, b: int) -> float:
        """Time of a batch of b relative to batch 1 (exactly 1.0 for b = 1)."""
        if b == 1:
            return 1.0
        if b < 1 or b > self.sizes[-1]:
            raise ValueError(f"batch size {b} outside the profiled 1..{self.sizes[-1]}")
        s, f = self.sizes, self.factors
        for k in range(1, len(s)):
            if b <= s[k]:
                return f[k - 1] + (f[k] - f[k - 1]) * (b - s[k - 1]) / (s[k] - s[k - 1])
        return f[-1]  # pragma: no cover - b == sizes[-1] is caught above


@dataclass(frozen=True)
class Item:
    """Something that can be resident on a GPU: model weights, or an adapter on a ``base``
    (evicting a base evicts its adapters with it: they are useless without it)."""

    name: str
    memory_gib: float
    load_s: float
    base: str | None = None


@dataclass(frozen=True)
class ServedModel:
    """What a task key needs on this server: resident items and its step-time profile."""

    key: str
    items: tuple[str, ...]
    seconds_per_step: float
    curve: StepCurve = StepCurve()


@dataclass(frozen=True)
class ServerConfig:
    """One server's GPU model.

    Args:
        slots: GPUs (each with its own memory and resident set).
        models: the keys served, by name.
        items: the loadable items, by name (every item a model uses must be here).
        memory_gib: memory per GPU for resident weights (``inf``: ample).
        max_batch: a cap on the batch size (1: batching off); the effective maximum of a key is
            ``min(max_batch, curve.max_batch)``.
        batch_timeout_s: how long an idle warm GPU waits to fill a batch (0: start at once).
        eviction: ``"lru"``, ``"lfu"`` or ``"fifo"``.
        preload: items resident on every GPU at time 0 and after a recovery (None: all items, which
            must then fit).
        drop_expired: drop a task whose deadline has passed when its batch would start (the
            engine's ``deadline_action: drop``).
    """

    slots: int
    models: Mapping[str, ServedModel]
    items: Mapping[str, Item] = field(default_factory=dict)
    memory_gib: float = math.inf
    max_batch: int = 1
    batch_timeout_s: float = 0.0
    eviction: Eviction = "lru"
    preload: tuple[str, ...] | None = None
    drop_expired: bool = False

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"slots: must be at least 1 (got {self.slots})")
        if self.max_batch < 1:
            raise ValueError(f"max_batch: must be at least 1 (got {self.max_batch})")
        if not self.batch_timeout_s >= 0:
            raise ValueError(f"batch_timeout_s: must be >= 0 (got {self.batch_timeout_s})")
        if self.eviction not in ("lru", "lfu", "fifo"):
            raise ValueError(f"eviction: must be lru, lfu or fifo (got {self.eviction!r})")
        if not self.memory_gib > 0:
            raise ValueError(f"memory_gib: must be positive (got {self.memory_gib})")
        for it in self.items.values():
            if it.memory_gib < 0 or it.load_s < 0:
                raise ValueError(f"items.{it.name}: memory_gib and load_s must be >= 0")
            if it.base is not None and it.base not in self.items:
                raise ValueError(f"items.{it.name}: unknown base {it.base!r}")
        for m in self.models.values():
            missing = [i for i in m.items if i not in self.items]
            if missing:
                raise ValueError(f"models.{m.key}: unknown item(s) {missing}")
            need = sum(self.items[i].memory_gib for i in m.items)
            if need > self.memory_gib:
                raise ValueError(
                    f"models.{m.key}: needs {need:g} GiB, more than memory_gib {self.memory_gib:g}"
                )
            if not m.seconds_per_step > 0:
                raise ValueError(f"models.{m.key}: seconds_per_step must be positive")
        pre = self.preload_items
        unknown = [i for i in pre if i not in self.items]
        if unknown:
            raise ValueError(f"preload: unknown item(s) {unknown}")
        total = sum(self.items[i].memory_gib for i in pre)
        if total > self.memory_gib:
            raise ValueError(
                f"preload: {total:g} GiB does not fit memory_gib {self.memory_gib:g}"
                + (" (no preload given: all items)" if self.preload is None else "")
            )

    @property
    def preload_items(self) -> tuple[str, ...]:
        return tuple(self.items) if self.preload is None else tuple(self.preload)

    def batch_cap(self, key: str) -> int:
        return min(self.max_batch, self.models[key].curve.max_batch)

    @classmethod
    def simple(cls, slots: int, seconds_per_step: Mapping[str, float], **kw: Any) -> ServerConfig:
        """Each key its own zero-size, instant-load item: today's server (ample memory)."""
        items = {k: Item(k, 0.0, 0.0) for k in seconds_per_step}
        models = {k: ServedModel(k, (k,), float(v)) for k, v in seconds_per_step.items()}
        return cls(slots=slots, models=models, items=items, **kw)
