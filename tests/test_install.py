"""The package finds its data (profiles, ready scenarios, the shipped trace) through
importlib.resources, not through the checkout, so a wheel install works from any folder.

The full check (build the wheel, install it into a fresh venv, run `mecsim list` and `mecsim run`
from a temporary folder) is in .ci/run; these are the fast, in-process parts of it.
"""

from __future__ import annotations

import importlib.resources
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mecsim
from mecsim.scenario import base_profiles, data_dir, load_scenario, registered_scenarios

ROOT = Path(__file__).resolve().parent.parent
READY = {"smoke-v1", "mm1-v1", "paper-small-v1", "paper-medium-v1", "azure-conv-v1", "azure-code-v1"}


def test_data_dirs_are_package_resources():
    pkg = importlib.resources.files("mecsim._data")
    for kind in ("models", "scenarios"):
        d = data_dir(kind)
        assert d == Path(str(pkg / kind))
        assert d.is_dir()
        # the package's copy, whatever the working folder: below mecsim's own folder
        assert d.is_relative_to(Path(mecsim.__file__).parent)
    assert (pkg / "models" / "aigc.yaml").is_file()


def test_registered_scenarios_come_from_the_package():
    reg = registered_scenarios()
    assert READY <= set(reg), sorted(reg)
    assert "azure-trace-v1" not in reg  # replaced: it read a folder outside the package
    for path in reg.values():
        assert path.is_relative_to(data_dir("scenarios"))


def test_base_profiles_load():
    models, gpus = base_profiles()
    assert {"sd15", "sdxl"} <= set(models)
    assert {"a100", "rtx3060"} <= set(gpus)


@pytest.mark.parametrize("name,rows,cv_low,cv_high", [("conv", 19366, 0.9, 1.3), ("code", 8819, 12.0, 14.5)])
def test_shipped_trace_opens_and_has_the_documented_burstiness(name, rows, cv_low, cv_high):
    """Row counts and inter-arrival CVs as stated in the trace's NOTICE.md and the scenarios
    (measured on the Azure files: conv 1.09, code 13.2 over the whole hour)."""
    res = importlib.resources.files("mecsim._data") / "scenarios" / "data" / "azure-llm-2023"
    assert "CC BY 4.0" in (res / "NOTICE.md").read_text() and "Splitwise" in (res / "NOTICE.md").read_text()
    with importlib.resources.as_file(res / f"{name}.csv.gz") as path:
        df = pd.read_csv(path)
    assert len(df) == rows
    assert list(df.columns) == ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
    t = np.sort(pd.to_datetime(df.TIMESTAMP).astype("int64").to_numpy() / 1e9)
    gaps = np.diff(t)
    assert cv_low < gaps.std() / gaps.mean() < cv_high


@pytest.mark.parametrize("name", ["azure-conv-v1", "azure-code-v1"])
def test_ready_trace_scenarios_read_only_inside_the_package(name):
    from mecsim.arrivals import check_traces

    sc = load_scenario(name)
    for grp in sc.devices:
        assert sc.resolve_path(grp.arrivals.path).resolve().is_relative_to(data_dir("scenarios").resolve())
    assert check_traces(sc) > 8000


def test_every_ready_scenario_validates_from_another_folder(tmp_path):
    """`mecsim validate` on every registered name, run from a folder that is not the checkout."""
    proc = subprocess.run(
        [sys.executable, "-m", "mecsim.cli", "validate", *sorted(READY)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(": ok (") == len(READY)


def test_registered_names_follow_changed_files(tmp_path, monkeypatch):
    # the names are parsed once per version of a file (mtime, size): an edited, added or removed
    # file shows at the next lookup, and a file that is not a ready scenario is left out
    import mecsim.scenario as scn

    monkeypatch.setattr(scn, "data_dir", lambda kind: tmp_path)
    body = (ROOT / "scenarios" / "smoke.yaml").read_text()
    (tmp_path / "a.yaml").write_text(body.replace("name: smoke-v1", "name: first-v1", 1))
    (tmp_path / "notes.yaml").write_text("title: not a scenario\n")
    assert scn.registered_scenarios() == {"first-v1": tmp_path / "a.yaml"}
    assert scn.registered_scenarios() == {"first-v1": tmp_path / "a.yaml"}  # from the cache
    (tmp_path / "a.yaml").write_text(body.replace("name: smoke-v1", "name: second-longer-v1", 1))
    assert scn.registered_scenarios() == {"second-longer-v1": tmp_path / "a.yaml"}
    (tmp_path / "b.yaml").write_text(body)
    assert set(scn.registered_scenarios()) == {"second-longer-v1", "smoke-v1"}
    (tmp_path / "a.yaml").unlink()
    assert scn.registered_scenarios() == {"smoke-v1": tmp_path / "b.yaml"}
