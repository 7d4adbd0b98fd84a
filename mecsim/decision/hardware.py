"""Hardware realism for QAOA: a real device's ``Target``, its noise, and what a run would cost.

* :func:`get_backend` resolves ``"fake:<Name>"`` (e.g. ``"fake:FakeSherbrooke"``, the snapshots of
  IBM devices shipped by qiskit-ibm-runtime's ``fake_provider``: coupling map, basis gates, gate
  durations and error rates) or passes a ``BackendV2`` through (a real one included).
* :func:`device_metrics` transpiles a circuit to the backend's ``Target`` (routing on its coupling
  map, its basis gates) and reports depth, two-qubit gates and the estimated duration of one
  execution (qiskit's ``QuantumCircuit.estimate_duration`` from the target's gate durations).
* :class:`QPUTimeModel` turns that into the time a decision would take on the device:
  ``jobs x job_latency_s + shots x (circuit_s + readout_s + reset_s)`` per job. ``readout_s`` is
  the target's measurement duration, ``reset_s`` the backend's default repetition delay (IBM
  devices: 250 us when the backend does not say), and ``job_latency_s`` a stated assumption
  (queueing excluded; default 1 s of per-job overhead). A QAOA decision with ``k`` optimiser
  evaluations is ``k + 1`` jobs of ``shots`` each (on hardware every evaluation is estimated
  from shots); fixed angles are one job.

The QAOA sampler uses these with ``target="fake:<Name>"`` (or a backend object),
``noise_model="backend"`` (sample on ``AerSimulator.from_backend``: the device's noise) and
``primitive=`` any qiskit ``SamplerV2`` (a runtime primitive on a real device plugs in
unchanged; tested with qiskit's local ``StatevectorSampler``). Needs the ``qaoa`` extra
(qiskit-ibm-runtime for the fake devices).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mecsim.errors import MissingExtraError

__all__ = ["DEFAULT_JOB_LATENCY_S", "DEFAULT_RESET_S", "QPUTimeModel", "device_metrics", "get_backend"]

#: Per-job overhead assumed by :class:`QPUTimeModel` (s): compilation, loading and result
#: transfer of one job, queueing excluded. An assumption, not a measurement; set your own.
DEFAULT_JOB_LATENCY_S = 1.0

#: Repetition delay between shots when the backend does not state one (s): IBM's default
#: ``rep_delay`` of 250 us.
DEFAULT_RESET_S = 250e-6


def get_backend(spec: Any) -> Any:
    """A ``BackendV2`` from ``"fake:<Name>"`` (qiskit-ibm-runtime's fake devices) or as given.

    Raises:
        ValueError: an unknown fake device name.
        MissingExtraError: qiskit-ibm-runtime is not installed.
    """
    if not isinstance(spec, str):
        if not hasattr(spec, "target"):
            raise ValueError(f"target must be a name or a qiskit BackendV2, got {type(spec).__name__}")
        return spec
    if not spec.startswith("fake:"):
        raise ValueError(f"a device target is 'fake:<Name>' (e.g. 'fake:FakeSherbrooke'), got {spec!r}")
    name = spec.split(":", 1)[1]
    try:
        from qiskit_ibm_runtime import fake_provider
    except ImportError as exc:
        raise MissingExtraError("qiskit-ibm-runtime", "qaoa") from exc
    cls = getattr(fake_provider, name, None)
    if cls is None or not isinstance(cls, type):
        raise ValueError(
            f"qiskit-ibm-runtime has no fake device {name!r} (e.g. FakeSherbrooke, FakeBrisbane)"
        )
    return cls()


def _rep_delay(backend: Any) -> float:
    for getter in (lambda b: b.default_rep_delay, lambda b: b.configuration().default_rep_delay):
        try:
            value = getter(backend)
        except Exception:  # not every backend has a configuration or the attribute
            continue
        if value:
            v = float(value)
            return v * 1e-6 if v > 1e-2 else v  # some report microseconds
    return DEFAULT_RESET_S


def _readout_s(backend: Any) -> float:
    target = backend.target
    try:
        props = target["measure"]
    except KeyError:
        return 0.0
    durations = [p.duration for p in props.values() if p is not None and p.duration]
    return float(max(durations)) if durations else 0.0


@dataclass(frozen=True)
class QPUTimeModel:
    """Time of QAOA jobs on a device (see the module docstring).

    Attributes:
        circuit_s: one execution of the circuit (scheduled duration).
        readout_s: measurement.
        reset_s: reset / repetition delay between shots.
        job_latency_s: fixed overhead per job.
    """

    circuit_s: float
    readout_s: float
    reset_s: float = DEFAULT_RESET_S
    job_latency_s: float = DEFAULT_JOB_LATENCY_S

    @classmethod
    def from_backend(
        cls, backend: Any, circuit_s: float, job_latency_s: float = DEFAULT_JOB_LATENCY_S
    ) -> QPUTimeModel:
        """Readout and reset from the backend's timing; ``circuit_s`` from :func:`device_metrics`."""
        return cls(float(circuit_s), _readout_s(backend), _rep_delay(backend), float(job_latency_s))

    def per_shot_s(self) -> float:
        """One shot: the circuit, its readout and the reset before the next."""
        return self.circuit_s + self.readout_s + self.reset_s

    def time_s(self, shots: int, jobs: int = 1) -> float:
        """``jobs`` jobs of ``shots`` shots each."""
        return jobs * (self.job_latency_s + shots * self.per_shot_s())


def device_metrics(circuit: Any, backend: Any, seed: int = 0) -> dict[str, Any]:
    """Transpile to the backend's ``Target``: depth, two-qubit gates, one execution's duration.

    Returns:
        ``{"circuit_depth", "two_qubit_gates", "circuit_duration_s", "readout_s", "reset_s",
        "target"}``; the duration is ``nan`` when the target has no gate durations.
    """
    from qiskit import transpile

    tqc = transpile(circuit, target=backend.target, optimization_level=1, seed_transpiler=seed)
    twoq = sum(1 for inst in tqc.data if inst.operation.num_qubits == 2)
    try:
        duration = float(tqc.estimate_duration(backend.target, unit="s"))
    except Exception:  # a target without durations
        duration = float("nan")
    return {
        "circuit_depth": int(tqc.depth()),
        "two_qubit_gates": int(twoq),
        "circuit_duration_s": duration,
        "readout_s": _readout_s(backend),
        "reset_s": _rep_delay(backend),
        "target": f"{getattr(backend, 'name', type(backend).__name__)} (Target, optimization_level=1)",
        "transpiled": tqc,
    }
