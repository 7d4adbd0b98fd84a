"""The benchmark scripts run and print what their docs promise (they are how speed is checked,
so they must not rot); the trace digests agree between two processes (one seed in, identical
traces out) and notice a changed trace. No timing is asserted here: speed is measured by running
the scripts, never by a timed test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "tests" / "benchmarks"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_engine_benchmark_prints_the_four_ratios():
    out = _run(str(BENCH / "engine.py"), "--rounds", "1", "--scale", "0.005")
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-4:]
    for line, target in zip(last, ("0.25", "0.5", "0.03", "1.5"), strict=True):
        m = re.search(r"= ([0-9.]+) \(target [<>]= ([0-9.]+)\)$", line)
        assert m, line
        assert float(m.group(1)) > 0 and m.group(2) == target


def test_engine_benchmark_profile_lists_the_top_ten():
    out = _run(str(BENCH / "engine.py"), "--profile", "greedy", "--scale", "0.02")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("paper-medium-v1 greedy:")
    rows = lines[2:]
    assert len(rows) == 10
    own = [float(r.split()[0]) for r in rows]
    assert own == sorted(own, reverse=True)  # by own time
    assert any("sim/epoch.py" in r for r in rows)  # the engine's epoch step is in the top ten


def test_simpy_floor_prints_its_ratios_and_is_an_mm1():
    """The yardstick for the mm1-v1 target runs, and is a real M/M/1: its mean sojourn matches
    1 / (mu - lambda) (lambda 0.5, mu 1: 2 s; 40,000 customers, the standard error at rho 0.5 is
    about 1%, so 5% is a safe bound). Negative control: the same check on a server twice as
    fast fails."""
    out = _run(str(BENCH / "simpy_floor.py"), "--rounds", "1", "--n", "2000")
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-2:]
    assert all(re.search(r"/ bare SimPy M/M/1 = [0-9.]+$", line) for line in last), last
    sys.path.insert(0, str(BENCH))
    try:
        from simpy_floor import floor_mm1
    finally:
        sys.path.remove(str(BENCH))

    def mean_sojourn(mu: float) -> float:
        rec: dict = {}
        floor_mm1(40000, lam=0.5, mu=mu, seed=7, tables=False, keep=rec)
        assert (rec["state"] == 2).all()  # every task served
        return float((rec["t_service_end"] - rec["t_arrival"]).mean())

    assert abs(mean_sojourn(1.0) / 2.0 - 1) < 0.05
    assert abs(mean_sojourn(2.0) / 2.0 - 1) > 0.05  # 1 / (2 - 0.5) = 0.67 s


def test_trace_digests_agree_between_processes_and_see_a_change(tmp_path):
    ref = tmp_path / "digests.json"
    only = ("--only", "mm1-v1")
    saved = _run(str(BENCH / "trace_digest.py"), "--save", str(ref), *only)
    assert saved.returncode == 0, saved.stderr
    digests = json.loads(ref.read_text())
    assert list(digests) == ["mm1-v1/default"]
    same = _run(str(BENCH / "trace_digest.py"), "--check", str(ref), *only)
    assert same.returncode == 0 and "same" in same.stdout, same.stdout + same.stderr
    # negative control: a digest that differs in one table is reported, and the exit is 1
    digests["mm1-v1/default"]["servers"] = "0" * 16
    ref.write_text(json.dumps(digests))
    diff = _run(str(BENCH / "trace_digest.py"), "--check", str(ref), *only)
    assert diff.returncode == 1 and "DIFFERS: servers" in diff.stdout, diff.stdout
