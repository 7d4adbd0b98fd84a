"""Which model, and which adapter, each request asks for: popularity skew for realistic caches.

A request picks a model from the workload's list (Zipf over the listed order, or explicit weights),
then, for a model with an adapter catalogue, an adapter with the catalogue's probability (Zipf over
the catalogue's ranks), or none. Production text-to-image traces record base model, LoRA and
ControlNet per request and show a heavy-tailed adapter popularity (Katz, the ModelScope trace in
REFERENCES.md), which is what makes an adapter cache of a few entries hit or miss.

Zipf(s) over n ranks: P(rank k) = k^-s / sum_{j=1..n} j^-s (s = 0 is uniform). Draws take a seeded
``numpy.random.Generator`` and return arrays; the same generator state gives the same draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

NO_ADAPTER = -1


def zipf_weights(n: int, s: float) -> np.ndarray:
    """Probabilities of ranks 1..n under Zipf(s), summing to 1.

    Example:
        >>> zipf_weights(3, 1.0).round(3).tolist()
        [0.545, 0.273, 0.182]
    """
    if n < 1:
        raise ValueError(f"count: must be at least 1 (got {n})")
    if not (math.isfinite(s) and s >= 0):
        raise ValueError(f"zipf_s: must be finite and >= 0 (got {s})")
    w = np.arange(1, n + 1, dtype=float) ** -s
    return w / w.sum()


@dataclass(frozen=True)
class AdapterCatalogue:
    """``count`` adapters of one ``kind`` (an item of models/aigc.yaml ``weights``, e.g.
    ``sd15-lora``) for one base model; a request carries one with ``probability``."""

    kind: str
    count: int
    zipf_s: float = 1.0
    probability: float = 1.0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"adapters.{self.kind}.count: must be at least 1 (got {self.count})")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"adapters.{self.kind}.probability: must be in [0, 1] (got {self.probability})")
        zipf_weights(1, self.zipf_s)  # validates zipf_s

    def name(self, k: int) -> str:
        """The item name of adapter k (rank k + 1)."""
        return f"{self.kind}#{k}"


@dataclass(frozen=True)
class MixDraw:
    model: np.ndarray  # index into ModelMix.models
    adapter: np.ndarray  # index into that model's catalogue, NO_ADAPTER (-1) for none


@dataclass(frozen=True)
class ModelMix:
    """The request mix of one device group.

    Args:
        models: the models, most popular first when ``zipf_s`` is set.
        zipf_s: Zipf exponent over ``models``' order; None uses ``weights``.
        weights: relative weights (None with ``zipf_s`` None: equal).
        adapters: per model name, its adapter catalogue (models without one never carry adapters).

    Example:
        >>> mix = ModelMix(("sd15", "sdxl"), zipf_s=1.0,
        ...                adapters={"sd15": AdapterCatalogue("sd15-lora", 10, 1.0, 0.5)})
        >>> d = mix.sample(np.random.default_rng(7), 5)
        >>> [mix.key(int(m), int(a)) for m, a in zip(d.model, d.adapter)]
        ['sd15', 'sdxl', 'sdxl', 'sd15', 'sd15+sd15-lora#0']
    """

    models: tuple[str, ...]
    zipf_s: float | None = None
    weights: tuple[float, ...] | None = None
    adapters: Mapping[str, AdapterCatalogue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models: at least one model is needed")
        if self.weights is not None:
            if len(self.weights) != len(self.models):
                raise ValueError(f"weights: {len(self.weights)} weights for {len(self.models)} models")
            if any(not (math.isfinite(w) and w > 0) for w in self.weights):
                raise ValueError(f"weights: must be positive and finite (got {self.weights})")
        unknown = [m for m in self.adapters if m not in self.models]
        if unknown:
            raise ValueError(f"adapters: model(s) {unknown} not in the mix")
        self.probabilities()  # validates zipf_s

    def probabilities(self) -> np.ndarray:
        """P(model) in the order of ``models``."""
        if self.zipf_s is not None:
            return zipf_weights(len(self.models), self.zipf_s)
        w = np.ones(len(self.models)) if self.weights is None else np.asarray(self.weights, float)
        return w / w.sum()

    def sample(self, rng: np.random.Generator, n: int) -> MixDraw:
        """n requests: a model each, then an adapter or none (vectorised; draws the models first,
        then one uniform per request for 'has an adapter', then the adapters' ranks)."""
        if n < 0:
            raise ValueError(f"n: must be >= 0 (got {n})")
        model = rng.choice(len(self.models), size=n, p=self.probabilities()).astype(np.int64)
        adapter = np.full(n, NO_ADAPTER, dtype=np.int64)
        if not self.adapters or n == 0:
            return MixDraw(model, adapter)
        u = rng.random(n)
        for k, name in enumerate(self.models):
            cat = self.adapters.get(name)
            if cat is None:
                continue
            sel = np.flatnonzero((model == k) & (u < cat.probability))
            if sel.size:
                adapter[sel] = rng.choice(cat.count, size=sel.size, p=zipf_weights(cat.count, cat.zipf_s))
        return MixDraw(model, adapter)

    def key(self, model: int, adapter: int) -> str:
        """The GPU-model key of a request: ``"sd15"`` or ``"sd15+sd15-lora#3"``."""
        name = self.models[model]
        if adapter == NO_ADAPTER:
            return name
        return f"{name}+{self.adapters[name].name(adapter)}"

    def keys(self, base_items: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
        """Every key this mix can produce, with the items it needs resident (``base_items``: the
        ``uses`` table of models/aigc.yaml)."""
        out: dict[str, tuple[str, ...]] = {}
        for k, name in enumerate(self.models):
            base = tuple(base_items[name])
            out[name] = base
            cat = self.adapters.get(name)
            if cat is not None:
                for a in range(cat.count):
                    out[self.key(k, a)] = base + (cat.name(a),)
        return out
