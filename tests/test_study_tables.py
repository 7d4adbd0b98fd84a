"""tests/benchmarks/study_tables.py: the README's study tables come from a reproduce folder."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).parent / "benchmarks" / "study_tables.py"


@pytest.fixture
def tables():
    return runpy.run_path(str(SCRIPT))


def _folder(tmp_path: Path) -> Path:
    rows = [
        ("r1 (uploads)", "free", "qubo-sa", False, 3.0, 2.25, 3.75),
        ("r1 (uploads)", "free", "random", True, 9.0, 1.0, 17.0),
        ("r1 (uploads)", "charged", "qubo-sa", False, 3.5, 3.0, 4.0),
    ]
    pd.DataFrame(
        rows, columns=["regime", "mode", "policy", "unstable", "mean_s", "mean_s_lo", "mean_s_hi"]
    ).to_csv(tmp_path / "overview.csv", index=False)
    v = {
        "regime": "r1 (uploads)",
        "mode": "free",
        "rl_minus_hybrid_s": 0.125,
        "rl_lo": -0.19,
        "rl_hi": 0.44,
        "heuristic": "greedy-ls",
        "heuristic_minus_hybrid_s": -0.3,
        "heuristic_lo": -0.46,
        "heuristic_hi": -0.14,
    }
    pd.DataFrame([v]).to_csv(tmp_path / "verdicts.csv", index=False)
    rl = {"steps": 150000, "trained_steps": 45056, "episodes": 117, "wall_s": 127.4, "flat": True}
    study = {
        "settings": {"seeds": 5, "rl_steps": 150000, "wall_s": 888.0, "executor": "dask"},
        "scenarios": [
            {"scenario": "r1", "mode": "free", "runs": 55, "rl": {**rl, "best_step": 28672, "checks": 11}},
            {"scenario": "r1", "mode": "charged", "runs": 30, "rl": {**rl, "reused": True}},
        ],
    }
    (tmp_path / "study.json").write_text(json.dumps(study))
    return tmp_path


def test_tables_from_a_folder(tables, tmp_path, capsys):
    assert tables["main"]([str(_folder(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "2 comparisons, 85 runs (5 seeds" in out and "flat in 1 of 1 regimes" in out
    assert "wall 14 min 48 s" in out
    # the free mode only, the regime's short name, "unstable" instead of a mean, empty cells
    assert "| r1 | 3.00 [2.25, 3.75] |  |  |  |  |  | unstable |" in out
    assert "3.50" not in out
    assert "| r1 | free | +0.125 [-0.190, +0.440] | greedy-ls: -0.300 [-0.460, -0.140] |" in out
    assert "| r1 | 45,056 (150,000) | 117 | 11 | 28,672 | 127 | yes |" in out


def test_missing_folder_is_one_line(tables, tmp_path, capsys):
    assert tables["main"]([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("study_tables: cannot read") and err.count("\n") == 1
