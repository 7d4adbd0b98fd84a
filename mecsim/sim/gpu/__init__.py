"""The GPU-server model: batching, model residency and loads, without SimPy.

A server has ``slots`` GPUs. Each GPU (slot) has its own memory and its own resident set of model
weights ("items": a base model or an adapter such as a LoRA or ControlNet, see models/aigc.yaml).
Tasks are submitted with a *key* (the model a request asks for, with its adapter if any); the key
names the items that must be resident and the batch-1 step time and batch factors on this GPU.

Rules (one place, so the engine, the tests and the decision estimate all use the same ones):

- Queues: one per key, each ordered by the task's ``priority`` tuple then task id (the engine passes
  ``(epoch, expected service)`` for epoch-SPT or ``(arrival time, 0)`` for FIFO).
- Dispatch, whenever a GPU is idle: take the highest-priority head among the keys that still have
  unclaimed tasks (a key is claimed by a GPU loading it or waiting to fill a batch of it, for up to one
  batch). Choose the idle GPU: one where all the key's items are resident (lowest index), else the
  one with the least to load. A warm GPU starts a batch at once; a cold one first loads the missing
  items (evicting as needed) and starts the batch when the load ends (tasks of the key that arrived
  meanwhile join it). With ``batch_timeout_s > 0`` a warm GPU whose batch is not full waits up to
  the timeout for more tasks of the key (the batch starts as soon as it is full).
- Batch: up to ``max_batch`` tasks of the key, in queue order. It runs ``max(steps)`` denoising
  steps at ``seconds_per_step * factor(b)`` per step (static batching: every task of the batch
  ends together), times the jitter factor of its first task. With b = 1 this is exactly the
  engine's ``steps * t_step * factor``.
- Eviction, when a load needs memory: among the GPU's resident items not needed by the key being
  loaded, the least recently used (``lru``), the least frequently used with ties to the least
  recent (``lfu``; counts are per task served and reset on eviction), or the first loaded
  (``fifo``, the recency-blind baseline). A GPU that loads serves nothing meanwhile, so an item in
  use is never evicted.
- Continuous (step-level) batching is not modelled: the profiles (models/gpus.yaml) measure static
  batches of b images only, and no public measurement of the cost of joining a running batch at a
  step boundary was found.

Wiring into the engine (:class:`mecsim.sim.gpu.server.ModelServer`, used when
``service.batching`` or ``service.residency`` is on or requests carry adapters): one model per
server, built by :func:`server_config` from :func:`load_serving_data` and the scenario;
``ModelServer.arrive`` calls :meth:`GPUServerModel.submit`
with ``priority=(epoch, expected)`` (epoch-SPT) or ``(now, 0.0)`` (FIFO) and the task's jitter
factor and deadline; each returned :class:`Timer` becomes ``env.timeout(timer.delay)`` whose
callback calls :meth:`GPUServerModel.fire`; :class:`BatchStart` sets the tasks' service start,
:class:`BatchEnd` finishes them (``pop_record`` gives batch id and size, cold start, load wait),
:class:`Dropped` drops an expired task; ``backlog`` is :meth:`GPUServerModel.fluid_backlog`.
With batching and residency off this reproduces today's start and end times and backlog bit for
bit (tests/test_gpu_model.py).

The model never schedules anything itself. Its methods return *events*: :class:`Timer` objects the
caller must fire back (``fire(timer, now)``) at ``now + timer.delay``, and notices
(:class:`BatchStart`, :class:`BatchEnd`, :class:`LoadStart`, :class:`Dropped`). :func:`replay`
drives a model over a list of arrivals with a plain heap; the engine drives it with SimPy timeouts.

The parts: :mod:`~mecsim.sim.gpu.config` (curves, items, served models, server config),
:mod:`~mecsim.sim.gpu.events` (timers, notices, records), :mod:`~mecsim.sim.gpu.model`
(:class:`GPUServerModel`: submission, batching, dispatch, failure) with
:mod:`~mecsim.sim.gpu.residency` (resident sets, loads, eviction) and
:mod:`~mecsim.sim.gpu.estimate` (backlog, expected wait), :mod:`~mecsim.sim.gpu.data` (serving
data and :func:`server_config`), :mod:`~mecsim.sim.gpu.driver` (:func:`replay`) and
:mod:`~mecsim.sim.gpu.server` (the engine's adapter). Names load lazily (PEP 562): importing the
package, or the engine's adapter, does not import the model; a run imports it only when it
builds GPU-model servers.
"""

from __future__ import annotations

import importlib
from typing import Any

#: the public names, by the part of this package that defines them
_PARTS = {
    "config": ("Eviction", "Item", "ServedModel", "ServerConfig", "StepCurve"),
    "events": ("BatchEnd", "BatchStart", "Dropped", "Event", "LoadStart", "TaskRecord", "Timer", "TimerKind"),
    "model": ("GPUServerModel",),
    "data": ("ServingData", "load_serving_data", "server_config"),
    "driver": ("Arrival", "replay"),
}

__all__ = sorted(name for names in _PARTS.values() for name in names)


def __getattr__(name: str) -> Any:
    """Import the part that defines a public name on its first use, and bind all of its names."""
    for part, names in _PARTS.items():
        if name in names:
            module = importlib.import_module(f"{__name__}.{part}")
            globals().update({n: getattr(module, n) for n in names})
            return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
