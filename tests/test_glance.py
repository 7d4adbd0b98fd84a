"""The first look at a run (``mecsim run --vs``): decisions and a task-by-task comparison."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np

import mecsim
from mecsim.glance import comparison_text, decisions_text


def _runs():
    a = mecsim.simulate("smoke-v1", policy="qubo-sa", seed=3, duration_s=60)
    b = mecsim.simulate("smoke-v1", policy="random", seed=3, duration_s=60)
    return a, b


def test_comparison_is_task_by_task_on_tasks_both_completed():
    a, b = _runs()
    text = comparison_text([a, b])
    # independent computation: merge the two task tables on task_id (common random numbers: the
    # same tasks), keep the measured tasks both completed, and average the latency difference
    ta, tb = a.tasks, b.tasks
    w = a.summary["warmup_s"]
    m = ta.merge(tb, on="task_id", suffixes=("_a", "_b"))
    m = m[(m.t_arrival_a >= w) & (m.status_a == "completed") & (m.status_b == "completed")]
    expected = float(np.mean(m.latency_a - m.latency_b))
    got = re.search(r"on the (\d+) tasks both completed: mean ([-+]\d+\.\d+) s", text)
    assert got, text
    assert int(got.group(1)) == len(m)
    assert abs(float(got.group(2)) - expected) < 5e-4
    # the same tasks: both runs generated the same arrivals
    assert a.summary["tasks_generated"] == b.summary["tasks_generated"]
    assert np.array_equal(ta.t_arrival.to_numpy(), tb.t_arrival.to_numpy())


def test_decisions_show_the_qubo_and_the_largest_epoch():
    a, _ = _runs()
    text = decisions_text(a)
    assert "QUBO (sa)" in text and "largest epoch" in text
    n_max = int(a.epochs.n_decided.max())
    assert f"max {n_max}" in text


def test_cli_run_vs(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "mecsim.cli",
        "run",
        "smoke-v1",
        "--policy",
        "qubo-sa",
        "--vs",
        "greedy",
        "--duration",
        "60",
        "--no-progress",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "decisions (qubo-sa)" in out.stdout and "qubo-sa minus greedy" in out.stdout
    bad_cmd = [
        sys.executable,
        "-m",
        "mecsim.cli",
        "run",
        "smoke-v1",
        "--vs",
        "no-such-policy",
        "--no-progress",
    ]
    bad = subprocess.run(bad_cmd, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "no-such-policy" in bad.stderr
