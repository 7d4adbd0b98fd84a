"""Sweeps on Dask: the spec, planning, bit-identical results, failures, interruption and resume."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("distributed")

from click.testing import CliRunner  # noqa: E402

from mecsim import BasePolicy  # noqa: E402
from mecsim.analysis import load_sweep  # noqa: E402
from mecsim.sweep import SweepError, load_sweep_spec, plan_runs, run_sweep  # noqa: E402
from mecsim.sweep_cli import report, sweep  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class ExplodingPolicy(BasePolicy):
    """A user's policy with a bug: it raises at its first decision (imported by the workers as
    ``tests.test_sweep:ExplodingPolicy``)."""

    name = "exploding"

    def decide(self, state):
        raise RuntimeError("boom in decide")


@pytest.fixture(scope="module")
def client():
    """One 2-worker local cluster for the tests that do not test the embedded one."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def smoke_spec(**over):
    spec = {
        "name": "t",
        "scenario": "smoke-v1",
        "overrides": {"duration_s": 30},
        "policies": ["random", "greedy"],
        "seeds": [1, 2],
    }
    spec.update(over)
    return spec


def drop_wall(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in df.columns if c.endswith("wall_s")])


def plain(df: pd.DataFrame) -> pd.DataFrame:
    """A table as a sweep stores it: categories and object columns as text (every run of a
    dataset then has the same column types)."""
    from mecsim.study.runs import _plain

    return _plain(df)


def run_table(out: Path, table: str, run_id: str) -> pd.DataFrame:
    return pd.read_parquet(out / table / f"run_id={run_id}" / "part-0.parquet")


# ---------------------------------------------------------------------------------------------
# spec and planning


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"seeds": {"count": 0}}, "seeds", "count must be a whole number >= 1"),
        ({"seeds": [1, 1]}, "seeds", "duplicate seed"),
        ({"seeds": None}, "seeds", ""),
        ({"polices": ["greedy"]}, "polices", "unknown field"),
        ({"grid": {"radio.bandwidth_hz": 5e6}}, "grid", "give a list of values"),
        ({"grid": {"duration_s": [10, 20]}}, None, "also in overrides"),
        ({"policies": [{"name": "greedy", "params": 3}]}, "policies.0.params", "valid dictionary"),
        ({"policies": ["random", "no-such-policy"]}, "policies.1.name", "no-such-policy"),
        ({"scenario": "no-such-scenario-v9"}, "scenario", "no-such-scenario-v9"),
    ],
)
def test_spec_errors_name_the_field(change, field, words):
    spec = {k: v for k, v in smoke_spec(**change).items() if v is not None}
    with pytest.raises(SweepError) as info:
        plan_runs(spec)
    msg = str(info.value)
    assert "\n" not in msg
    assert info.value.field == field
    if field:
        assert msg.startswith(f"{field}: ")
    assert words in msg


def test_plan_grid_cases_policies_seeds(tmp_path):
    shutil.copy(ROOT / "scenarios" / "smoke.yaml", tmp_path / "base.yaml")
    sweep_file = tmp_path / "sweeps" / "s.yaml"
    sweep_file.parent.mkdir()
    sweep_file.write_text(
        yaml.safe_dump(
            {
                "name": "plan",
                "scenario": "../base.yaml",
                "overrides": {"duration_s": 20},
                "grid": {"radio.bandwidth_hz": [5.0e6, 20.0e6], "epoch__length_s": [0.25, 1.0]},
                "cases": [{}, {"servers.1.slots": 2}],
                "policies": ["random", {"name": "greedy", "params": {"bandwidth": "sum"}}],
                "seeds": {"count": 3, "start": 5},
            }
        )
    )
    runs = plan_runs(sweep_file)
    assert len(runs) == 4 * 2 * 2 * 3
    assert len({r.run_id for r in runs}) == len(runs)
    assert runs[0].source == str((tmp_path / "base.yaml").resolve())
    assert [r.seed for r in runs[:3]] == [5, 6, 7]
    assert runs[0].overrides == {"duration_s": 20, "radio.bandwidth_hz": 5.0e6, "epoch.length_s": 0.25}
    assert runs[-1].overrides["servers.1.slots"] == 2
    assert runs[3].policy_params == {"bandwidth": "sum"}
    # The plan is a pure function of the spec: the same ids every time.
    assert [r.run_id for r in plan_runs(sweep_file)] == [r.run_id for r in runs]
    # A grid value equal to the default is the same run as the default: planned once.
    with pytest.warns(UserWarning, match="same run"):
        dup = plan_runs(smoke_spec(cases=[{}, {"radio.bandwidth_hz": 10.0e6}]))
    assert len(dup) == 4


def test_invalid_override_is_planned_as_failing():
    runs = plan_runs(smoke_spec(grid={"radio.bandwidth_hz": [-5, 10e6]}))
    bad = [r for r in runs if r.error]
    assert len(bad) == 4 and all(r.overrides["radio.bandwidth_hz"] == -5 for r in bad)
    assert bad[0].error.startswith("ScenarioError: radio.bandwidth_hz: ")


# ---------------------------------------------------------------------------------------------
# running


def test_sweep_on_local_cluster_matches_serial(tmp_path):
    spec = smoke_spec(grid={"radio.bandwidth_hz": [5.0e6, 20.0e6]})
    cat = run_sweep(spec, tmp_path / "out", workers=2, progress=False)  # the embedded cluster
    runs = plan_runs(spec)
    assert len(cat) == len(runs) == 8
    assert (cat["status"] == "done").all(), cat[["status", "error"]]
    assert cat["worker"].nunique() == 2  # both workers ran some
    data = load_sweep(tmp_path / "out")
    tasks = data.tasks()
    for run in runs:
        ref = run.simulate()  # the same call, serially, in this process
        out, rid = tmp_path / "out", run.run_id
        folder = out / "runs" / f"run_id={rid}"
        pd.testing.assert_frame_equal(run_table(out, "tasks", rid), plain(ref.tasks))
        pd.testing.assert_frame_equal(drop_wall(run_table(out, "epochs", rid)), drop_wall(plain(ref.epochs)))
        pd.testing.assert_frame_equal(run_table(out, "servers", rid), plain(ref.servers))
        summary = json.loads((folder / "summary.json").read_text())
        for key in ("latency_mean_s", "latency_p99_s", "tasks_generated", "scenario_digest"):
            assert summary[key] == ref.summary[key]
        # ... and through the one dataset, once the joined catalogue columns are set aside
        own = tasks[tasks["run_id"] == run.run_id].reset_index(drop=True)
        assert (own["policy"] == run.policy).all() and (own["seed"] == run.seed).all()
        joined = ["run_id", "scenario", "policy", "seed", "warmup_s", "duration_s", "radio.bandwidth_hz"]
        pd.testing.assert_frame_equal(own.drop(columns=joined), plain(ref.tasks))


def test_each_table_is_one_parquet_dataset(tmp_path):
    """pandas and Dask read a table of every run at once from its folder; nothing else is in it,
    and columns only some policies write (the QUBO solver's epoch columns) reach every row."""
    dd = pytest.importorskip("dask.dataframe")
    spec = smoke_spec(policies=["greedy", "qubo-sa"], seeds=[1, 2], overrides={"duration_s": 20})
    out = tmp_path / "out"
    cat = run_sweep(spec, out, workers=1, progress=False)
    assert (cat["status"] == "done").all()
    summ = load_sweep(out).summaries().set_index("run_id")
    for table in ("tasks", "epochs", "servers", "faults"):
        files = sorted(p.relative_to(out / table).as_posix() for p in (out / table).rglob("*") if p.is_file())
        assert files == sorted(f"run_id={rid}/part-0.parquet" for rid in cat["run_id"]), files
        whole = pd.read_parquet(out / table)
        lazy = dd.read_parquet(out / table).compute()
        assert len(whole) == len(lazy) and set(whole["run_id"].astype(str)) <= set(cat["run_id"])
        if table == "tasks":
            n = whole.groupby(whole["run_id"].astype(str), observed=True).size()
            assert (n == summ.loc[n.index, "tasks_generated"]).all()
    epochs = pd.read_parquet(out / "epochs")
    assert "solver" in epochs.columns and "bandwidth_rule" in epochs.columns
    qubo_ids = set(cat.loc[cat["policy"] == "qubo-sa", "run_id"])
    is_qubo = epochs["run_id"].astype(str).isin(qubo_ids)
    assert epochs.loc[is_qubo, "solver"].notna().all() and epochs.loc[~is_qubo, "solver"].isna().all()
    # The side files live beside the tables.
    assert {p.name for p in out.iterdir()} == {
        "tasks",
        "epochs",
        "servers",
        "faults",
        "runs",
        "catalogue.parquet",
        "catalogue.csv",
        "sweep.yaml",
    }


def test_failures_are_recorded_and_the_rest_finish(client, tmp_path):
    spec = smoke_spec(
        grid={"radio.bandwidth_hz": [-5, 10e6]}, policies=["round-robin", "tests.test_sweep:ExplodingPolicy"]
    )
    cat = run_sweep(spec, tmp_path / "out", scheduler=client, progress=False).set_index("run_id")
    runs = plan_runs(spec)
    for run in runs:
        row = cat.loc[run.run_id]
        if run.overrides["radio.bandwidth_hz"] == -5:
            assert row["status"] == "failed"
            assert row["error"].startswith("ScenarioError: radio.bandwidth_hz: ")
            assert "(got -5)" in row["error"]
        elif run.policy.endswith("ExplodingPolicy"):
            assert row["status"] == "failed"
            assert "RuntimeError: boom in decide" in row["error"]
        else:
            assert row["status"] == "done", row["error"]
            assert pd.isna(row["error"])
        assert pd.isna(row["error"]) or "\n" not in row["error"]
    assert (cat["status"] == "done").sum() == 2
    # Only finished runs have folders, and nothing is left half-written.
    assert len(list((tmp_path / "out" / "runs").iterdir())) == 2
    assert not (tmp_path / "out" / ".staging").exists()
    csv = pd.read_csv(tmp_path / "out" / "catalogue.csv")
    assert list(csv["status"]) == list(cat["status"])


def _mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/run.json")}


def test_resume_recomputes_nothing_and_matches_an_uninterrupted_sweep(client, tmp_path):
    spec = smoke_spec(seeds={"count": 3})
    part = tmp_path / "part"
    cat1 = run_sweep(spec, part, scheduler=client, progress=False, max_runs=3)
    assert sorted(cat1["status"].value_counts().items()) == [("done", 3), ("pending", 3)]
    first = _mtimes(part)
    finished1 = cat1.set_index("run_id")["finished"]
    assert len(first) == 3

    cat2 = run_sweep(spec, part, scheduler=client, progress=False).set_index("run_id")
    assert (cat2["status"] == "done").all()
    assert (cat2["attempts"] == 1).all()  # nobody ran twice
    after = _mtimes(part)
    assert {k: after[k] for k in first} == first  # the finished folders were not touched
    for rid in first:
        assert cat2.loc[rid.removeprefix("run_id="), "finished"] == finished1[rid.removeprefix("run_id=")]
    # A third call has nothing to do (and starts no cluster).
    t = time.perf_counter()
    run_sweep(spec, part, scheduler="tcp://127.0.0.1:1", progress=False)
    assert time.perf_counter() - t < 5

    whole = tmp_path / "whole"
    cat3 = run_sweep(spec, whole, scheduler=client, progress=False).set_index("run_id")
    same = ["scenario", "digest", "overrides", "policy", "policy_params", "seed", "status"]
    pd.testing.assert_frame_equal(cat2.loc[cat3.index, same], cat3[same])
    a = load_sweep(part).tasks().sort_values(["run_id", "task_id"], kind="stable")
    b = load_sweep(whole).tasks().sort_values(["run_id", "task_id"], kind="stable")
    a["run_id"] = a["run_id"].astype(str)
    b["run_id"] = b["run_id"].astype(str)
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_killed_sweep_resumes(client, tmp_path):
    """SIGKILL a real `sweep` process part-way; the re-run keeps what finished and does the rest."""
    spec = {
        "name": "killed",
        "scenario": "paper-small-v1",
        "overrides": {"duration_s": 1500, "warmup_s": 60},
        "policies": ["least-loaded", "greedy"],
        "seeds": {"count": 4},
    }
    sweep_file = tmp_path / "k.yaml"
    sweep_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mecsim.sweep_cli",
            "sweep",
            str(sweep_file),
            "--workers",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # its own process group: the kill reaches its workers too
    try:
        deadline = time.monotonic() + 60
        while len(_mtimes(out) if (out / "runs").is_dir() else {}) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the sweep did not finish two runs in 60 s"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    before = _mtimes(out)
    assert 2 <= len(before) < 8, "the sweep was not stopped part-way"
    # What finished is readable at once, even if the catalogue had not caught up.
    assert len(load_sweep(out).run_ids) == len(before)

    cat = run_sweep(sweep_file, out, scheduler=client, progress=False).set_index("run_id")
    assert (cat["status"] == "done").all() and (cat["attempts"] == 1).all()
    after = _mtimes(out)
    assert len(after) == 8 and {k: after[k] for k in before} == before
    assert not (out / ".staging").exists()
    # Every run folder, old or new, holds what a serial run gives.
    for run in plan_runs(sweep_file)[::3]:
        ref = run.simulate()
        pd.testing.assert_frame_equal(run_table(out, "tasks", run.run_id), plain(ref.tasks))


# ---------------------------------------------------------------------------------------------
# command line


def test_cli_sweep_and_report(client, tmp_path):
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(
        yaml.safe_dump(smoke_spec(name="cli", seeds=[1, 2, 3], grid={"radio.bandwidth_hz": [-5, 10e6]}))
    )
    address = client.scheduler.address
    runner = CliRunner()
    res = runner.invoke(
        sweep, [str(sweep_file), "--scheduler", address, "--out", str(tmp_path / "out"), "--no-progress"]
    )
    assert res.exit_code == 1, res.output  # some runs failed on purpose
    assert "12 runs: 6 done, 6 failed, 0 pending" in res.stdout
    assert "radio.bandwidth_hz: Input should be greater than 0 (got -5)" in res.stderr

    res = runner.invoke(report, [str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "| policy |" in res.stdout and "greedy" in res.stdout
    rep = tmp_path / "out" / "report"
    for name in (
        "latency.csv",
        "latency.md",
        "breakdown.csv",
        "runs.md",
        "latency_cdf.png",
        "latency_cdf.pdf",
        "seed_spread.png",
        "breakdown.pdf",
        "queue.png",
    ):
        assert (rep / name).is_file(), name
    lat = pd.read_csv(rep / "latency.csv")
    assert set(lat["policy"]) == {"random", "greedy"} and (lat["n_seeds"] == 3).all()

    # Errors in the input: one line naming the field, exit code 2.
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(smoke_spec(seeds={"count": -1})))
    res = runner.invoke(sweep, [str(bad), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0
    assert res.stderr.startswith("mecsim: error: seeds: count must be a whole number >= 1")
    res = runner.invoke(sweep, [str(sweep_file), "--scheduler", address, "--workers", "2"])
    assert res.exit_code == 2 and "--workers" in res.stderr


def test_example_sweep_file_is_valid():
    spec = load_sweep_spec(ROOT / "scenarios" / "sweeps" / "example.yaml")
    runs = plan_runs(spec)
    assert len(runs) == 2 * 2 * 2 * 3 and not any(r.error for r in runs)
    assert np.isclose(runs[0].scenario_obj.radio.bandwidth_hz, 5.0e6)
