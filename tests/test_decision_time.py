"""Measured decision time (mecsim.decision.timing): the model is charged, runs stay reproducible,
bad files are one-line errors naming the field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

import mecsim
from mecsim.decision.timing import FIELD, TimingEntry, TimingModel, default_file, load_timing_model
from mecsim.errors import ScenarioError

SLOW = {
    "models": {
        "sa": {"size": "variables", "form": "power", "a_s": 0.2, "b_s": 0.01, "c": 1.0},
        "greedy": {"size": "tasks", "form": "piecewise", "points": [[1, 0.05], [3, 0.25]]},
    }
}


def _file(tmp_path, content) -> str:
    p = tmp_path / "timing.yaml"
    p.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
    return str(p)


def _measured(tmp_path, content=SLOW, **kw):
    return {"epoch.decision_time": {"mode": "measured", "file": _file(tmp_path, content)}, **kw}


def test_entry_forms_by_hand():
    power = TimingEntry("variables", "power", a_s=0.01, b_s=0.002, c=1.5)
    assert power.time(16) == pytest.approx(0.01 + 0.002 * 64)
    pw = TimingEntry("tasks", "piecewise", points=((2.0, 1.0), (4.0, 2.0), (8.0, 2.5)))
    assert pw.time(1) == 1.0  # held below the first point
    assert pw.time(3) == pytest.approx(1.5)  # interpolated
    assert pw.time(6) == pytest.approx(2.25)
    assert pw.time(12) == pytest.approx(3.0)  # extended along the last segment


def test_measured_mode_charges_the_model_for_a_slow_solver(tmp_path):
    ov = _measured(tmp_path)
    res = mecsim.simulate("smoke-v1", policy="qubo-sa", seed=3, **ov)
    ep = res.epochs
    expected = 0.2 + 0.01 * ep.variables.astype(float)
    assert np.allclose(ep.decision_delay_s, expected)
    assert np.allclose(ep.t_decision - ep.t, expected)  # the tasks wait for the decision
    t = res.tasks
    sent = t[t.t_decision.notna()]
    assert (sent.t_upload_start >= sent.t_decision).all()
    # Against the same run with decisions free (negative control: no delay, lower latency).
    free = mecsim.simulate("smoke-v1", policy="qubo-sa", seed=3)
    assert (free.epochs.decision_delay_s == 0).all()
    assert res.summary["latency_mean_s"] > free.summary["latency_mean_s"] + 0.2


def test_heuristics_are_charged_by_policy_name_and_tasks(tmp_path):
    res = mecsim.simulate("smoke-v1", policy="greedy", seed=3, **_measured(tmp_path))
    ep = res.epochs
    entry = TimingModel.from_dict(SLOW).entries["greedy"]
    assert np.allclose(ep.decision_delay_s, [entry.time(k) for k in ep.n_decided])
    assert np.allclose(ep.decision_delay_s[ep.n_decided == 1], 0.05)


def test_measured_runs_are_reproducible(tmp_path):
    ov = _measured(tmp_path)
    a = mecsim.simulate("smoke-v1", policy="qubo-sa", seed=5, **ov)
    b = mecsim.simulate("smoke-v1", policy="qubo-sa", seed=5, **ov)
    pd.testing.assert_frame_equal(a.tasks, b.tasks)
    wall = [c for c in a.epochs.columns if c.endswith("wall_s")]
    pd.testing.assert_frame_equal(a.epochs.drop(columns=wall), b.epochs.drop(columns=wall))


def test_a_policy_without_a_model_is_a_one_line_error(tmp_path):
    with pytest.raises(ScenarioError) as err:
        mecsim.simulate("smoke-v1", policy="least-loaded", seed=1, **_measured(tmp_path))
    msg = str(err.value)
    assert msg.startswith(f"{FIELD}:") and "\n" not in msg and "least-loaded" in msg
    # a 'default' model covers every other key
    ok = {
        "models": {
            **SLOW["models"],
            "default": {"size": "tasks", "form": "power", "a_s": 0.1, "b_s": 0.0, "c": 1.0},
        }
    }
    res = mecsim.simulate("smoke-v1", policy="least-loaded", seed=1, **_measured(tmp_path, ok))
    assert np.allclose(res.epochs.decision_delay_s, 0.1)


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "no such timing file"),
        ("models: [unclosed", "not valid YAML"),
        ({"models": {}}, "non-empty mapping"),
        ({"models": {"sa": {"form": "power", "a_s": 0.1, "b_s": -1, "c": 1}}}, "models.sa.b_s"),
        ({"models": {"sa": {"form": "cubic"}}}, "models.sa.form"),
        ({"models": {"sa": {"size": "qubits", "a_s": 0, "b_s": 0, "c": 1}}}, "models.sa.size"),
        ({"models": {"sa": {"form": "piecewise", "points": [[5, 1], [2, 3]]}}}, "increasing"),
        ({"models": {"sa": {"form": "power", "a_s": 0.1, "b_s": 0.1, "c": 1, "speed": 2}}}, "unknown field"),
    ],
)
def test_bad_timing_file_is_one_line_naming_the_field(tmp_path, content, words):
    f = str(tmp_path / "missing.yaml") if content is None else _file(tmp_path, content)
    with pytest.raises(ScenarioError) as err:
        mecsim.scenario.load_scenario("smoke-v1", **{"epoch.decision_time": {"mode": "measured", "file": f}})
    msg = str(err.value)
    assert msg.startswith(f"{FIELD}:"), msg
    assert "\n" not in msg and words in msg


def test_file_without_measured_mode_is_an_error(tmp_path):
    with pytest.raises(ScenarioError, match=f"^{FIELD}: is read only with mode: measured"):
        mecsim.scenario.load_scenario(
            "smoke-v1", **{"epoch.decision_time": {"mode": "zero", "file": "x.yaml"}}
        )


def test_relative_file_is_read_beside_the_scenario(tmp_path):
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(SLOW), encoding="utf-8")
    sc = yaml.safe_load(open(mecsim.scenario.registered_scenarios()["smoke-v1"], encoding="utf-8"))
    sc["epoch"] = {"length_s": 0.5, "decision_time": {"mode": "measured", "file": "t.yaml"}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sc), encoding="utf-8")
    res = mecsim.simulate(str(path), policy="qubo-sa", seed=1, duration_s=20)
    assert (res.epochs.decision_delay_s >= 0.2).all()


def test_shipped_model_covers_the_solvers_and_heuristics():
    model = load_timing_model(default_file())
    for key in (
        "sa",
        "tabu",
        "exact",
        "qaoa",
        "greedy-ls",
        "greedy",
        "least-loaded",
        "random",
        "round-robin",
        "nearest",
    ):
        assert key in model.entries, key
    for key, entry in model.entries.items():
        # the fit reproduces its own measured medians within a factor 2 (on a shared machine)
        for size, secs in entry.points:
            assert 0.5 * secs <= entry.time(size) <= 2.0 * secs + 1e-4, (key, size)
    sa, exact = model.entries["sa"], model.entries["exact"]
    assert exact.time(20) > 10 * sa.time(20)  # brute force over 2^20 states is the slow one
    # the default mode: measured scenario loads it
    sc = mecsim.scenario.load_scenario("smoke-v1", **{"epoch.decision_time.mode": "measured"})
    assert sc.epoch.decision_time.file is None
