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
