"""Streamed runs (``stream_to``): the files equal the in-memory path's, memory is released as the
run goes, and a run that stops early leaves readable files marked incomplete."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import mecsim
from mecsim.engine import Simulation
from mecsim.errors import RunError
from mecsim.policies import make_policy
from mecsim.results import StreamedResult, collect
from mecsim.scenario import load_scenario
from mecsim.state import Decision
from tests.test_engine import _check_invariants

WALL = ("decision_wall_s_total", "run_wall_s")
OUTAGE = {"servers": [{"server": "a100", "down_s": [100.0, 300.0], "up_s": [150.0]}]}
# frequent random failures on two servers of paper-small-v1, and a channel outage
FLAKY = {
    "servers": [
        {"server": "a100", "mtbf_s": 80.0, "mttr_s": 20.0},
        {"server": "eat", "mtbf_s": 150.0, "mttr_s": 30.0},
    ],
    "channels": [{"device": 1, "start_s": 200.0, "end_s": 260.0}],
}


def _read(d, name):
    return pd.read_parquet(d / f"{name}.parquet")


def _assert_same_output(mem_dir, st_dir):
    """The files of a streamed run equal what Result.save wrote for the in-memory run."""
    pd.testing.assert_frame_equal(_read(st_dir, "tasks"), _read(mem_dir, "tasks"))
    pd.testing.assert_frame_equal(_read(st_dir, "servers"), _read(mem_dir, "servers"))
    pd.testing.assert_frame_equal(_read(st_dir, "faults"), _read(mem_dir, "faults"))
    a, b = _read(st_dir, "epochs"), _read(mem_dir, "epochs")
    wall = [c for c in b.columns if c.endswith("wall_s")]
    pd.testing.assert_frame_equal(a.drop(columns=wall), b.drop(columns=wall))
    sa = json.loads((st_dir / "summary.json").read_text())
    sb = json.loads((mem_dir / "summary.json").read_text())
    assert {k: v for k, v in sa.items() if k not in WALL} == {k: v for k, v in sb.items() if k not in WALL}
    assert (st_dir / "scenario.yaml").read_text() == (mem_dir / "scenario.yaml").read_text()
    assert not list(st_dir.glob(".*"))  # no temporary or part files left


def _both(tmp_path, scenario, chunk_rows=500, **kw):
    mem = mecsim.simulate(scenario, **kw)
    mem.save(tmp_path / "mem")
    st = mecsim.simulate(scenario, stream_to=tmp_path / "st", chunk_rows=chunk_rows, **kw)
    _assert_same_output(tmp_path / "mem", tmp_path / "st")
    return mem, st


def test_streamed_equals_in_memory_paper_medium(tmp_path):
    mem, st = _both(tmp_path, "paper-medium-v1", policy="greedy", seed=4, duration_s=2000)
    assert isinstance(st, StreamedResult) and st.complete
    assert pq.ParquetFile(tmp_path / "st" / "tasks.parquet").num_row_groups > 5  # many flushes
    # the lazily loaded tables equal the in-memory DataFrames themselves
    pd.testing.assert_frame_equal(st.tasks, mem.tasks)
    pd.testing.assert_frame_equal(st.servers, mem.servers)
    assert st.summary["tasks_generated"] == len(mem.tasks) > 5000
    st.save(tmp_path / "copy")  # file to file
    _assert_same_output(tmp_path / "mem", tmp_path / "copy")


@pytest.mark.parametrize("action,epoch", [("redispatch", 0.5), ("drop", 0.5), ("redispatch", 0.0)])
def test_streamed_equals_in_memory_with_faults_and_deadline_drops(tmp_path, action, epoch):
    mem, st = _both(
        tmp_path,
        "paper-small-v1",
        chunk_rows=50,
        policy="least-loaded",
        seed=2,
        duration_s=1500,
        faults=dict(FLAKY, on_server_failure=action),
        deadline_action="drop",
        **{"epoch.length_s": epoch},
    )
    t = st.tasks
    assert pq.ParquetFile(tmp_path / "st" / "tasks.parquet").num_row_groups > 10
    reasons = t.loc[t.status == "dropped", "drop_reason"].astype(str).value_counts()
    assert reasons.get("deadline_expired_waiting", 0) + reasons.get("deadline_expired_queue", 0) > 5
    if action == "redispatch":
        assert (t.redispatches > 0).sum() > 5
    else:
        assert reasons.get("server_failure", 0) > 5
    _check_invariants(st)


class _VaryingInfo:
    """Greedy, with epoch info keys that come and go and change type."""

    name = "varying-info"

    def __init__(self):
        self.inner = make_policy("greedy")

    def decide(self, state):
        dec = self.inner.decide(state)
        k = state.epoch
        info = dict(dec.info)
        if k % 7 == 0:
            info["sometimes_int"] = k
        info["flag"] = bool(k % 3) if k % 5 else None
        info["num"] = k if k < 400 else k + 0.5
        if k > 450:
            info["late_label"] = "odd" if k % 2 else None
        return Decision(server=dec.server, bandwidth_hz=dec.bandwidth_hz, info=info)


def test_epoch_schema_that_grows(tmp_path):
    sc = load_scenario("paper-small-v1", duration_s=1000)
    mem = collect(Simulation(sc, _VaryingInfo(), 3).run())
    mem.save(tmp_path / "mem")
    sim = Simulation(sc, _VaryingInfo(), 3, stream_to=tmp_path / "st", chunk_rows=100).run()
    assert len(sim._stream._parts) > 2  # the schema changed: several parts were merged
    st = collect(sim)
    assert len(mem.epochs) > 600
    _assert_same_output(tmp_path / "mem", tmp_path / "st")
    assert {"sometimes_int", "flag", "num", "late_label"} <= set(st.epochs.columns)


def test_memory_is_released_as_the_run_goes(tmp_path):
    # about 17,000 tasks in chunks of 500: the buffers keep their first capacity (an in-memory
    # run grows them to 32,768 rows), and a few hundred rows at most are held at the end
    sc = load_scenario("paper-medium-v1", duration_s=6000)
    sim = Simulation(sc, make_policy("greedy"), 1, stream_to=tmp_path, chunk_rows=500).run()
    total = sim.n_arrived
    assert total > 15_000
    assert sim.tasks.n < 2000 and sim.tasks.cap <= 4096  # rows held at the end
    assert sim._base > total - 2000 and len(sim.epoch_log) == 0 and sim.server_log.n == 0
    res = collect(sim)
    # n_arrived counts the arrivals inside the event loop; the few tasks that arrive after its
    # last event (before duration_s) are added at the end (2 here)
    assert total <= res.summary["tasks_generated"] <= total + 10
    total = res.summary["tasks_generated"]
    assert pq.ParquetFile(tmp_path / "tasks.parquet").metadata.num_rows == total
    assert "tasks" not in res._loaded  # nothing loaded until asked for
    _check_invariants(res)
    assert (res.tasks.task_id.to_numpy() == np.arange(total)).all()
    epochs = res.epochs
    assert len(epochs) == res.summary["epochs"]
    assert (epochs.epoch.to_numpy() == np.arange(len(epochs))).all()


class _Failing:
    name = "fails-late"

    def __init__(self, after):
        self.inner = make_policy("greedy")
        self.after = after

    def decide(self, state):
        if state.epoch >= self.after:
            raise RuntimeError("boom")
        return self.inner.decide(state)


def test_failed_streamed_run_leaves_readable_incomplete_files(tmp_path):
    kw = dict(duration_s=3000, faults=OUTAGE, deadline_action="drop")
    with pytest.raises(RunError) as mem_err:
        mecsim.simulate("paper-small-v1", policy=_Failing(800), seed=1, **kw)
    mem_err.value.result.save(tmp_path / "mem")
    with pytest.raises(RunError) as st_err:
        mecsim.simulate(
            "paper-small-v1", policy=_Failing(800), seed=1, stream_to=tmp_path / "st", chunk_rows=100, **kw
        )
    part = st_err.value.result
    assert isinstance(part, StreamedResult) and not part.complete
    summary = json.loads((tmp_path / "st" / "summary.json").read_text())
    assert summary["complete"] is False and summary["stopped_at_s"] > 0
    tasks = _read(tmp_path / "st", "tasks")
    assert len(tasks) == summary["tasks_generated"] > 500
    assert (tasks.t_arrival <= summary["stopped_at_s"]).all()
    _check_invariants(part)
    _assert_same_output(tmp_path / "mem", tmp_path / "st")


def test_cli_stream_and_ctrl_c(tmp_path):

    from click.testing import CliRunner

    from mecsim.cli import main

    r = CliRunner().invoke(main, ["run", "smoke-v1", "--duration", "60", "--stream"])
    assert r.exit_code == 2 and "--stream needs --out" in r.output
    out = tmp_path / "ok"
    r = CliRunner().invoke(
        main, ["run", "smoke-v1", "--seed", "3", "--duration", "60", "--stream", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "latency (s)" in r.output
    assert json.loads((out / "summary.json").read_text())["complete"] is True

    out = tmp_path / "interrupted"
    from tests.conftest import interrupt_cli_run

    returncode, err = interrupt_cli_run(out, "--stream")
    assert returncode == 130, err
    assert "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["stopped_at_s"] > 0
    tasks = _read(out, "tasks")
    assert len(tasks) == summary["tasks_generated"] > 0
    assert (tasks.t_arrival <= summary["stopped_at_s"]).all()
    assert (tasks.task_id.to_numpy() == np.arange(len(tasks))).all()
    assert len(_read(out, "epochs")) == summary["epochs"]
    assert not list(out.glob(".*"))


def test_ctrl_c_is_held_back_while_rows_are_written_out():
    import signal

    from mecsim.engine import _sigint_deferred

    done = []
    # Ctrl-C as in a terminal, whatever this process inherited (a background job ignores SIGINT)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with _sigint_deferred():
                signal.raise_signal(signal.SIGINT)
                done.append(1)  # the block runs to its end, then the interrupt is raised
        assert done == [1]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)
