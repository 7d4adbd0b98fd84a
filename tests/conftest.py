"""Shared test helpers."""

from __future__ import annotations

import os

# One BLAS thread: the machine has 2 shared cores, and scipy's reference solvers otherwise spawn
# threads that slow every test when the machine is busy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# hypothesis: deterministic, no deadline (the machine is shared and noisy)
try:
    from hypothesis import settings

    settings.register_profile("mecsim", deadline=None, derandomize=True, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mecsim"))
except ImportError:  # pragma: no cover
    pass


def tiny_scenario(**over):
    """A small valid scenario dict to modify in tests."""
    sc = {
        "name": "tiny",
        "seed": 1,
        "duration_s": 60.0,
        "radio": {"bandwidth_hz": 10e6},
        "devices": [
            {
                "count": 3,
                "arrivals": {"process": "poisson", "rate_per_s": 0.3},
                "workload": [{"model": "sd15", "steps": 20, "deadline_s": 15}],
            }
        ],
        "servers": [
            {"name": "a", "gpu": "a100", "models": ["sd15", "sdxl"]},
            {"name": "b", "gpu": "rtx3060", "slots": 2, "models": ["sd15"]},
        ],
        "epoch": {"length_s": 0.5},
    }
    sc.update(over)
    return sc


@pytest.fixture
def tiny():
    return tiny_scenario()


def uniform_random_sampler():
    """A null sampler for negative controls: uniform random reads, seeded (``seed`` and
    ``num_reads`` parameters, as SA's), so a control fails the same way on every run.
    (:class:`dimod.RandomSampler` does the same but takes no seed.)"""
    import dimod
    import numpy as np

    class UniformRandomSampler(dimod.Sampler):
        parameters = {"num_reads": [], "seed": []}
        properties: dict = {}

        def sample(self, bqm, num_reads=8, seed=None, **kwargs):
            rng = np.random.default_rng(seed)
            bits = rng.integers(0, 2, (int(num_reads), bqm.num_variables))
            if bqm.vartype is dimod.SPIN:
                bits = 2 * bits - 1
            return dimod.SampleSet.from_samples_bqm((bits, list(bqm.variables)), bqm)

    return UniformRandomSampler()


READY_LINE = "mecsim-test: simulation running"


class SignalWhenRunning:
    """A policy plug-in for the Ctrl-C tests (``--policy tests.conftest:SignalWhenRunning``).

    It decides as the registered policy ``inner`` and, at the first epoch at or after ``after_s``
    simulated seconds, writes :data:`READY_LINE` to stderr: the simulation loop is running and has
    produced tasks, so an interrupt from then on must leave a consistent, incomplete output.
    """

    def __init__(self, inner: str = "greedy", after_s: float = 5.0) -> None:
        from mecsim.policies import make_policy

        self.inner = make_policy(inner)
        self.name = self.inner.name
        self.after_s = after_s
        self._told = False

    def bind(self, info):
        if hasattr(self.inner, "bind"):
            self.inner.bind(info)

    def reset(self, rng):
        if hasattr(self.inner, "reset"):
            self.inner.reset(rng)

    def decide(self, state):
        if not self._told and state.now >= self.after_s:
            import sys

            print(READY_LINE, file=sys.stderr, flush=True)
            self._told = True
        return self.inner.decide(state)


def interrupt_cli_run(out, *extra, timeout_s=300.0):
    """Start a long `mecsim run paper-medium-v1 --out OUT` in a subprocess, send it Ctrl-C as soon
    as it says that its simulation loop runs (:class:`SignalWhenRunning`; no fixed sleep, so a
    busy machine only makes the test slower) and return ``(returncode, stderr)``."""
    import signal
    import subprocess
    import sys
    import threading

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mecsim.cli",
            "run",
            "paper-medium-v1",
            "--duration",
            "500000",
            "--no-progress",
            "--out",
            str(out),
            "--policy",
            "tests.conftest:SignalWhenRunning",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
        # as a user's terminal would have it: a child started from a background job inherits an
        # ignored SIGINT (POSIX), and Python then keeps ignoring Ctrl-C; reset it to the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    watchdog = threading.Timer(timeout_s, proc.kill)  # a child that never gets ready fails the test
    watchdog.start()
    try:
        lines = []
        for line in proc.stderr:  # blocks until the child writes a line or exits
            lines.append(line)
            if line.strip() == READY_LINE:
                proc.send_signal(signal.SIGINT)
                break
        else:
            raise AssertionError("the run ended before it said it was running:\n" + "".join(lines))
        _, err = proc.communicate(timeout=timeout_s)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(lines) + err
