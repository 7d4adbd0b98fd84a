"""The command line: runs, outputs, and one-line errors (exit 2, no traceback) on bad input."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from mecsim.cli import main
from tests.conftest import tiny_scenario

REQUIRED_TASK_COLUMNS = [
    "task_id",
    "device",
    "model",
    "input_bits",
    "output_bits",
    "steps",
    "server",
    "bandwidth_hz",
    "t_arrival",
    "t_decision",
    "t_upload_start",
    "t_upload_end",
    "t_server_arrival",
    "t_service_start",
    "t_service_end",
    "t_complete",
    "latency",
    "status",
    "deadline_met",
    "energy_tx_j",
]


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_run_writes_outputs(tmp_path):
    out = tmp_path / "run"
    r = _run("run", "smoke-v1", "--seed", "3", "--duration", "30", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "latency (s)" in r.output and "p95" in r.output and "utilisation" in r.output
    tasks = pd.read_parquet(out / "tasks.parquet")
    assert set(REQUIRED_TASK_COLUMNS) <= set(tasks.columns)
    assert len(pd.read_parquet(out / "epochs.parquet")) > 0
    assert len(pd.read_parquet(out / "servers.parquet")) > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 3 and summary["tasks_generated"] == len(tasks)
    resolved = yaml.safe_load((out / "scenario.yaml").read_text())
    assert resolved["duration_s"] == 30


def test_run_policy_params_and_sets(tmp_path):
    """--param reaches the policy (its bandwidth rule, recorded per epoch, and the shares it gives)
    and --set reaches the scenario (the resolved scenario.yaml and the epochs' budget)."""
    base, changed = tmp_path / "base", tmp_path / "changed"
    r = _run("run", "smoke-v1", "--policy", "greedy", "--duration", "20", "--out", str(base))
    assert r.exit_code == 0, r.output
    r = _run(
        "run",
        "smoke-v1",
        "--policy",
        "greedy",
        "--param",
        "bandwidth=minmax",
        "--set",
        "radio.bandwidth_hz=5e6",
        "--duration",
        "20",
        "--out",
        str(changed),
    )
    assert r.exit_code == 0, r.output
    ep0, ep1 = (pd.read_parquet(d / "epochs.parquet") for d in (base, changed))
    assert set(ep0.bandwidth_rule) == {"equal"} and set(ep1.bandwidth_rule) == {"minmax"}
    assert (ep0.bandwidth_budget_hz == 10e6).all() and (ep1.bandwidth_budget_hz == 5e6).all()
    sc0, sc1 = (yaml.safe_load((d / "scenario.yaml").read_text()) for d in (base, changed))
    assert sc0["radio"]["bandwidth_hz"] == 10e6 and sc1["radio"]["bandwidth_hz"] == 5e6
    t0, t1 = (pd.read_parquet(d / "tasks.parquet") for d in (base, changed))
    assert t1.bandwidth_hz.max() <= 5e6 < t0.bandwidth_hz.max()
    # the override is in the scenario digest, so the two runs cannot be mistaken for each other
    s0, s1 = (json.loads((d / "summary.json").read_text()) for d in (base, changed))
    assert s0["scenario_digest"] != s1["scenario_digest"]


def test_import_and_help_stay_light():
    """`import mecsim` and `mecsim --help` import no numerical library (they load when used)."""
    heavy = ("scipy.optimize", "pandas", "dimod", "qiskit", "torch", "dask", "matplotlib", "pyarrow")
    check = f"import sys; print([m for m in {heavy!r} if m in sys.modules])"
    for code in (
        "import mecsim; mecsim.__version__",
        "import sys, runpy; sys.argv = ['mecsim', '--help']\n"
        "try: runpy.run_module('mecsim.cli', run_name='__main__')\n"
        "except SystemExit as e: assert e.code == 0, e.code",
    ):
        proc = subprocess.run(
            [sys.executable, "-c", f"{code}\n{check}"], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == "[]", (code, proc.stdout)
    # the negative control: the same check sees the heavy modules once a simulation has run
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import mecsim; mecsim.simulate('smoke-v1', policy='qubo-sa', duration_s=5)\n{check}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    loaded = set(ast.literal_eval(proc.stdout.strip().splitlines()[-1]))
    # (scipy.optimize is not among them: a qubo-sa run never needs it, see test_qubo_policy.py)
    assert {"pandas", "dimod"} <= loaded, proc.stderr


def test_list_and_validate():
    r = _run("list")
    assert r.exit_code == 0
    for name in ("paper-small-v1", "paper-medium-v1", "greedy", "round-robin", "least-loaded"):
        assert name in r.output
    r = _run("validate", "scenarios/smoke.yaml", "paper-small-v1")
    assert r.exit_code == 0, r.output


def _write(tmp_path, data, name="bad.yaml"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(p)


BAD = {
    "unknown field": (lambda sc: sc.update(colour="blue"), "colour"),
    "negative rate": (
        lambda sc: sc["devices"][0]["arrivals"].update(rate_per_s=-1),
        "devices.0.arrivals.rate_per_s",
    ),
    "model nobody hosts": (
        lambda sc: (
            sc["devices"][0]["workload"][0].update(model="sdxl") or sc["servers"][0].update(models=["sd15"])
        ),
        "devices.0.workload.0.model",
    ),
    "unknown gpu": (lambda sc: sc["servers"][1].update(gpu="h900"), "servers.1.gpu"),
    "string for number": (lambda sc: sc.update(duration_s="long"), "duration_s"),
    "bmin above budget": (lambda sc: sc["radio"].update(min_bandwidth_hz=1e9), "radio"),
    "warmup after end": (lambda sc: sc.update(warmup_s=100.0, duration_s=10.0), "warmup_s"),
    "bad arrival process": (
        lambda sc: sc["devices"][0]["arrivals"].update(process="pareto"),
        "devices.0.arrivals",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_scenarios_give_one_line_naming_the_field(tmp_path, case):
    mutate, field = BAD[case]
    sc = tiny_scenario()
    mutate(sc)
    path = _write(tmp_path, sc)
    for cmd in (["validate", path], ["run", path]):
        proc = subprocess.run(
            [sys.executable, "-m", "mecsim.cli", *cmd], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        assert field in lines[0], lines[0]


@pytest.mark.parametrize("content", ["", "just a string", "[1, 2]", "a: [unclosed", "\x00\x01\x02"])
def test_malformed_files(tmp_path, content):
    path = _write(tmp_path, content)
    r = _run("validate", path)
    assert r.exit_code == 2
    assert "error" in r.output and "Traceback" not in r.output


def test_unknown_policy_and_missing_file():
    r = _run("run", "smoke-v1", "--policy", "no-such-policy")
    assert r.exit_code == 2 and "no-such-policy" in r.output
    r = _run("run", "does/not/exist.yaml")
    assert r.exit_code == 2 and "does/not/exist.yaml" in r.output
    r = _run("run", "smoke-v1", "--policy", "nosuchmodule.x:Y")
    assert r.exit_code == 2 and "nosuchmodule" in r.output


def test_run_summary_shows_the_gpu_model_only_when_it_is_on(tmp_path):
    # residency-v1 runs the GPU-server model (residency and adapters): cold starts, batches, loads
    r = _run("run", "residency-v1", "--duration", "120", "--set", "warmup_s=0", "--out", str(tmp_path / "a"))
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if x.startswith("GPU model"))
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert f"over {s['batches']} batches" in line and f"{s['loads']} weight loads" in line
    r = _run("run", "paper-small-v1", "--duration", "60", "--set", "warmup_s=0", "--out", str(tmp_path / "b"))
    assert r.exit_code == 0, r.output
    assert "GPU model" not in r.output  # the plain servers: no such line
