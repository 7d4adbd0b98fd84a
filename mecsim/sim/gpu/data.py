"""The GPU-server model from the shipped data (models/gpus.yaml ``serving``, models/aigc.yaml
``weights`` and ``uses``): the serving data, and one server's config from it and the scenario."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mecsim.sim.gpu.config import Eviction, Item, ServedModel, ServerConfig, StepCurve


@dataclass(frozen=True)
class ServingData:
    """The serving sections of models/: per GPU memory, workspace and batch factors; per item
    footprint, load time and base; per model the items it uses."""

    gpus: Mapping[str, Mapping[str, Any]]
    items: Mapping[str, Item]
    uses: Mapping[str, tuple[str, ...]]

    def usable_gib(self, gpu: str) -> float:
        g = self.gpus[gpu]
        return float(g["memory_gib"]) - float(g["workspace_gib"])

    def curve(self, gpu: str, model: str) -> StepCurve:
        return StepCurve.from_table(self.gpus[gpu].get("batch_factor", {}).get(model))


def load_serving_data(overlay: Any = None) -> ServingData:
    """Read the serving sections of models/aigc.yaml and models/gpus.yaml (errors name the field).

    ``overlay``: a scenario's :class:`~mecsim.scenario.Profiles`; its ``serving``, ``weights`` and
    ``uses`` entries replace (or add) the shipped ones of the same name."""
    from mecsim.scenario import _load_yaml_file, data_dir  # light: scenario is always imported

    root = data_dir("models")
    raw_g = dict((_load_yaml_file(root / "gpus.yaml") or {}).get("serving", {}) or {})
    raw_m = dict(_load_yaml_file(root / "aigc.yaml") or {})
    if overlay is not None:
        raw_g.update({k: v.model_dump() for k, v in overlay.serving.items()})
        raw_m["weights"] = {
            **(raw_m.get("weights") or {}),
            **{k: v.model_dump() for k, v in overlay.weights.items()},
        }
        raw_m["uses"] = {**(raw_m.get("uses") or {}), **{k: list(v) for k, v in overlay.uses.items()}}
    items: dict[str, Item] = {}
    for name, v in (raw_m.get("weights") or {}).items():
        try:
            items[name] = Item(name, float(v["memory_gib"]), float(v["load_s"]), v.get("base"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"models/aigc.yaml weights.{name}: needs memory_gib and load_s ({exc})"
            ) from None
    uses = {k: tuple(v) for k, v in (raw_m.get("uses") or {}).items()}
    for k, v in uses.items():
        for i in v:
            if i not in items:
                raise ValueError(f"models/aigc.yaml uses.{k}: unknown weights {i!r}")
    for g, v in raw_g.items():
        for f in ("memory_gib", "workspace_gib"):
            if f not in v:
                raise ValueError(f"models/gpus.yaml serving.{g}.{f}: missing")
        for mname, table in (v.get("batch_factor") or {}).items():
            try:
                StepCurve.from_table(table)
            except ValueError as exc:
                raise ValueError(f"models/gpus.yaml serving.{g}.batch_factor.{mname}: {exc}") from None
    return ServingData(raw_g, items, uses)


def server_config(
    data: ServingData,
    gpu: str,
    slots: int,
    seconds_per_step: Mapping[str, float],
    *,
    batching: bool = False,
    max_batch: int | None = None,
    batch_timeout_s: float = 0.0,
    residency: bool = False,
    eviction: Eviction = "lru",
    preload: Sequence[str] | None = None,
    drop_expired: bool = False,
    extra_keys: Mapping[str, tuple[str, ...]] | None = None,
) -> ServerConfig:
    """A server's config from the shipped data and the scenario's choices.

    With ``batching=False`` and ``residency=False`` (the defaults) it is today's server: batch 1,
    ample memory, every hosted model resident and nothing to load. ``seconds_per_step`` is the
    server's hosted models (the ``gpus`` profile); ``extra_keys`` adds keys such as
    ``"sd15+sd15-lora#3" -> ("sd15", "sd15-lora#3")`` (from :meth:`ModelMix.keys`), whose adapter
    items take the size and load time of their kind (the name before ``#``). With residency and
    no ``preload``, each GPU starts with the hosted models' weights in the listed order, as many as
    fit in ``memory_gib - workspace_gib``.
    """
    if not residency:
        cfg = ServerConfig.simple(slots, seconds_per_step, drop_expired=drop_expired)
        models = dict(cfg.models)
        for key in extra_keys or {}:
            base = key.split("+", 1)[0]
            models[key] = ServedModel(key, (base,), float(seconds_per_step[base]))
        cfg = ServerConfig(slots=slots, models=models, items=cfg.items, drop_expired=drop_expired)
    else:
        items: dict[str, Item] = {}
        models = {}

        def item(name: str) -> Item:
            kind = name.split("#", 1)[0]
            if kind not in data.items:
                raise ValueError(f"weights.{kind}: not in models/aigc.yaml")
            it = data.items[kind]
            return Item(name, it.memory_gib, it.load_s, it.base)

        keys = {m: data.uses.get(m, (m,)) for m in seconds_per_step}
        keys.update(extra_keys or {})
        for key, its in keys.items():
            base = key.split("+", 1)[0]
            for i in its:
                items.setdefault(i, item(i))
            models[key] = ServedModel(key, tuple(its), float(seconds_per_step[base]))
        mem = data.usable_gib(gpu)
        if preload is None:  # the hosted models' weights in the listed order, while they fit
            pre: list[str] = []
            used = 0.0
            for i in dict.fromkeys(i for m in seconds_per_step for i in keys[m]):
                if used + items[i].memory_gib <= mem:
                    pre.append(i)
                    used += items[i].memory_gib
            preload = pre
        cfg = ServerConfig(
            slots=slots,
            models=models,
            items=items,
            memory_gib=mem,
            eviction=eviction,
            drop_expired=drop_expired,
            preload=tuple(preload),
        )
    if batching:
        models = {
            k: ServedModel(k, m.items, m.seconds_per_step, data.curve(gpu, k.split("+", 1)[0]))
            for k, m in cfg.models.items()
        }
        cap = max_batch if max_batch is not None else max(m.curve.max_batch for m in models.values())
        cfg = ServerConfig(
            slots=slots,
            models=models,
            items=cfg.items,
            memory_gib=cfg.memory_gib,
            max_batch=cap,
            batch_timeout_s=batch_timeout_s,
            eviction=cfg.eviction,
            preload=cfg.preload,
            drop_expired=drop_expired,
        )
    return cfg
