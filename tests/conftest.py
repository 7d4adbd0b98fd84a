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
AZURE = ROOT.parent / "shared" / "data" / "azure-llm-2023"

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
        "devices": [{"count": 3, "arrivals": {"process": "poisson", "rate_per_s": 0.3},
                     "workload": [{"model": "sd15", "steps": 20, "deadline_s": 15}]}],
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


def interrupt_cli_run(out, *extra, wait_s=4.0):
    """Start a long `mecsim run paper-medium-v1 --out OUT` in a subprocess, send it Ctrl-C after
    ``wait_s`` seconds and return ``(returncode, stderr)``."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "mecsim.cli", "run", "paper-medium-v1",
                             "--duration", "500000", "--no-progress", "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(wait_s)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err
