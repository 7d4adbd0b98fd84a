"""The README's set-up commands match .ci/run, and its Python examples run."""

from __future__ import annotations

import re

import mecsim
from tests.conftest import ROOT


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = _bash_blocks(readme)
    test_cmd = blocks[1].strip()
    assert "pytest" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in [ln.strip() for ln in ci]
    assert "mecsim run" in blocks[0]


def _check_quickstart(ns):
    """The first example: the summary's p95 is that of the latencies it says it uses, the
    per-server means name the scenario's servers, and save() wrote the same run."""
    import json

    import numpy as np
    import pandas as pd

    res = ns["res"]
    s, tasks = res.summary, res.tasks
    assert s["scenario"] == "paper-small-v1" and s["seed"] == 1 and s["policy"] == "greedy"
    assert s["tasks_generated"] == len(tasks) > 0
    assert s["latency_basis"] == "completed tasks arriving after warmup_s"
    used = tasks[(tasks.status == "completed") & (tasks.t_arrival >= s["warmup_s"])]
    assert len(used) == s["latency_n"] > 0
    assert s["latency_p95_s"] == np.percentile(used.latency, 95)
    by_server = tasks.groupby("server", observed=True).latency.mean()
    assert set(by_server.index) <= {sv.name for sv in mecsim.load_scenario("paper-small-v1").servers}
    assert (by_server > 0).all()
    saved = pd.read_parquet("runs/greedy/tasks.parquet")
    pd.testing.assert_series_equal(saved.groupby("server", observed=True).latency.mean(), by_server)
    written = json.loads(open("runs/greedy/summary.json").read())
    assert written.pop("complete") is True  # save() adds whether the run ended normally
    assert written == json.loads(json.dumps(s))


def _check_policy_example(ns):
    """The plug-in example sends every task to the feasible server with the fewest queued tasks
    per slot (README: "ShortestQueue")."""
    import numpy as np

    from mecsim.testing import random_epoch_state

    state = random_epoch_state(8, 4, seed=3, host_probability=0.7)
    d = ns["ShortestQueue"]().decide(state)
    load = np.where(state.feasible, state.queued / state.slots, np.inf)
    assert (load[np.arange(8), d.server] == load.min(axis=1)).all()
    assert state.feasible[np.arange(8), d.server].all()
    np.testing.assert_allclose(d.bandwidth_hz, state.equal_share())


def _check_analysis(ns):
    """The analysis example over the example sweep (2 policies x 2 bandwidths x 2 cases x 3 seeds):
    one row per group with 3 seeds and an interval around the mean; per-stage means add up to the
    mean latency; greedy beats random, as the sweep's description sets out to show."""
    import numpy as np

    stats, stages = ns["stats"], ns["stages"]
    assert len(stats) == 8 and (stats.n_seeds == 3).all()
    assert set(stats.policy) == {"random", "greedy"}
    assert set(stats["radio.bandwidth_hz"]) == {5e6, 20e6}
    assert ((stats.mean_s_lo <= stats.mean_s) & (stats.mean_s <= stats.mean_s_hi)).all()
    assert list(stages.policy) == ["greedy", "random"]
    parts = stages[["wait", "upload", "backhaul", "queue", "inference", "return"]].sum(axis=1)
    np.testing.assert_allclose(parts, stages.latency, rtol=1e-9)
    lat = stages.set_index("policy").latency
    assert lat["greedy"] < lat["random"]


def _check_residency(ns):
    """The server-model example: the cold-start rate is the share of completed tasks that waited
    for weights (recomputed from the tasks table), batches hold at least one task, and the loads
    table has one row per load the summary counts."""
    import numpy as np

    r = ns["r"]
    t = r.tasks[r.tasks.status == "completed"]
    assert r.summary["cold_start_rate"] == t.cold_start.astype(bool).mean()
    assert 0 < r.summary["cold_start_rate"] < 1
    sizes = t.groupby("batch_id").batch_size.first()  # batches of the measured (completed) tasks
    np.testing.assert_allclose(r.summary["mean_batch_size"], sizes.mean())
    assert r.summary["mean_batch_size"] >= 1
    assert len(r.loads) == r.summary["loads"] > 0


README_CHECKS = {
    "residency-v1": _check_residency,
    "res = mecsim.simulate(": _check_quickstart,
    "class ShortestQueue": _check_policy_example,
    "analysis.load_sweep": _check_analysis,
}


def test_readme_python_examples_run(tmp_path, monkeypatch):
    """Every Python example in the README runs and gives what the README says (each example has
    a check in README_CHECKS; a new example without one fails this test)."""
    readme = (ROOT / "README.md").read_text()
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 3
    for block in blocks:
        checks = [check for marker, check in README_CHECKS.items() if marker in block]
        assert len(checks) == 1, f"a README example without a check in README_CHECKS:\n{block}"
        if "runs/example" in block:  # the analysis example reads the example sweep's output
            from mecsim.sweep import run_sweep

            run_sweep(
                ROOT / "scenarios" / "sweeps" / "example.yaml", "runs/example", workers=1, progress=False
            )
        ns: dict = {}
        exec(compile(block, "README.md", "exec"), ns)
        checks[0](ns)


def test_readme_policy_example_passes_check_policy():
    readme = (ROOT / "README.md").read_text()
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "class ShortestQueue" in b
    )
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    import mecsim

    assert mecsim.check_policy(ns["ShortestQueue"])["ok"]
