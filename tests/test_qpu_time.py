"""Decision time from a QPU time model (``epoch.decision_time.mode: qpu``): the simulated delay of a
QAOA decision on a device target is the QPU time its sampler reports, jobs x (job latency + shots x
(circuit + readout + reset)), with readout and reset from the device's own timing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import mecsim

pytest.importorskip("qiskit_ibm_runtime")

SHOTS = 64


@pytest.fixture(scope="module")
def qpu_run():
    return mecsim.simulate(
        "smoke-v1",
        policy="qubo-qaoa",
        seed=1,
        duration_s=60,
        policy_params={"solver_params": {"target": "fake:FakeManilaV2", "shots": SHOTS}},
        **{"epoch.decision_time.mode": "qpu", "epoch.decision_time.cost.base_s": 0.002},
    )


def test_qpu_delay_is_the_reported_qpu_time_plus_the_classical_part(qpu_run):
    from mecsim.decision.hardware import QPUTimeModel, _readout_s, _rep_delay, get_backend

    ep = qpu_run.epochs
    on_qpu = ep[ep.sampler_qpu_time_s.notna()]
    assert len(on_qpu) >= 1
    np.testing.assert_allclose(on_qpu.decision_delay_s, on_qpu.sampler_qpu_time_s + 0.002, rtol=1e-12)
    # the figure itself: the time model of the device (FakeManilaV2's readout and repetition delay),
    # one job per optimiser evaluation plus the final sampling job
    dev = get_backend("fake:FakeManilaV2")
    for row in on_qpu.itertuples():
        model = QPUTimeModel(row.sampler_circuit_duration_s, _readout_s(dev), _rep_delay(dev))
        assert row.sampler_qpu_time_s == pytest.approx(model.time_s(SHOTS, jobs=row.sampler_evaluations + 1))
    # decisions that fell back to a heuristic (recorded) used no QPU
    fell_back = ep[ep.sampler_qpu_time_s.isna()]
    assert fell_back.fallback.notna().all()
    np.testing.assert_allclose(fell_back.decision_delay_s, 0.002)
    # the delay is simulated latency: a task decided in an epoch with QPU time waits for it
    t = qpu_run.tasks
    first = on_qpu.iloc[0]
    decided = t[t.epoch == first.epoch]
    np.testing.assert_allclose(decided.t_decision - first.t, first.decision_delay_s, rtol=1e-9)


def test_qpu_mode_without_a_qpu_is_a_clear_error():
    cmd = [
        sys.executable,
        "-m",
        "mecsim.cli",
        "run",
        "smoke-v1",
        "--policy",
        "greedy",
        "--duration",
        "60",
        "--set",
        "epoch.decision_time.mode=qpu",
        "--no-progress",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "epoch.decision_time.mode" in out.stderr
    assert "Traceback" not in out.stderr
