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
