"""Policy comparisons: common random numbers, tables, figures, the study and the CLI errors."""

from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

pytest.importorskip("matplotlib")

from mecsim.compare import (  # noqa: E402
    PAPER_STUDY,
    REGIMES_STUDY,
    compare,
    load_study,
    paired_differences,
    parse_vary,
)
from mecsim.compare_cli import _standalone  # noqa: E402
from mecsim.errors import MecsimError, PolicyError, ScenarioError  # noqa: E402


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def smoke_cmp(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    return compare(
        "smoke-v1",
        "greedy,random,round-robin",
        seeds=3,
        out_dir=out,
        duration_s=40,
        vary={"devices.0.count": [2, 3, 5]},
        vary_seeds=2,
        workers=1,
        progress=False,
    )


def test_common_random_numbers(smoke_cmp):
    """Every policy sees the same tasks on one seed: arrivals, devices, models, sizes, deadlines."""
    tasks = smoke_cmp.tasks()
    assert set(tasks["policy"]) == {"greedy", "random", "round-robin"}
    cols = ["t_arrival", "device", "model", "input_bits", "output_bits", "steps", "deadline"]
    moved = False
    for seed, g in tasks.groupby("seed"):
        ref = g[g["policy"] == "greedy"].sort_values("task_id")
        assert len(ref) > 5
        for pol in ("random", "round-robin"):
            other = g[g["policy"] == pol].sort_values("task_id")
            for c in cols:
                np.testing.assert_array_equal(
                    other[c].astype(str).to_numpy(),
                    ref[c].astype(str).to_numpy(),
                    err_msg=f"{pol} seed {seed} {c}",
                )
            moved |= not np.array_equal(other["server"].astype(str), ref["server"].astype(str))
    assert moved  # ... while the policies do decide differently
    # different seeds are different samples
    a = tasks[(tasks["policy"] == "greedy") & (tasks["seed"] == 0)]["t_arrival"].to_numpy()
    b = tasks[(tasks["policy"] == "greedy") & (tasks["seed"] == 1)]["t_arrival"].to_numpy()
    assert len(a) != len(b) or not np.allclose(a, b)


def test_tables(smoke_cmp):
    t = smoke_cmp.table
    assert t["policy"].tolist() == ["greedy", "random", "round-robin"]  # the order given
    for col in (
        "mean_s",
        "mean_s_lo",
        "mean_s_hi",
        "p95_s",
        "p95_s_lo",
        "p99_s",
        "p99_s_hi",
        "miss_rate",
        "seed_std_s",
        "decision_ms_per_epoch",
        "energy_tx_j_per_task",
        "energy_server_j_per_task",
    ):
        assert col in t.columns
    assert (t["n_seeds"] == 3).all()
    assert ((t["mean_s_lo"] <= t["mean_s"]) & (t["mean_s"] <= t["mean_s_hi"])).all()
    assert (t["decision_ms_per_epoch"] > 0).all() and (t["energy_server_j_per_task"] > 0).all()
    # the numbers are the runs' own summaries
    s = smoke_cmp.summaries()
    g = s[s["policy"] == "greedy"]
    assert t.loc[0, "mean_s"] == pytest.approx(g["latency_mean_s"].mean())
    assert t.loc[0, "seed_std_s"] == pytest.approx(g["latency_mean_s"].std(ddof=1))
    on_disk = pd.read_csv(smoke_cmp.out_dir / "comparison.csv")
    assert on_disk["policy"].tolist() == t["policy"].tolist()
    md = (smoke_cmp.out_dir / "comparison.md").read_text()
    assert "mean latency (s) [95% CI]" in md and "round-robin" in md
    p = smoke_cmp.paired
    assert p["policy"].tolist() == ["random", "round-robin"] and (p["reference"] == "greedy").all()
    report = (smoke_cmp.out_dir / "report.md").read_text()
    assert "## smoke-v1" in report and "Findings" in report and "figures/latency_cdf.png" in report
    # 3 seeds: every table says its intervals cannot be trusted
    assert "**Warning: 3 seed(s) only.**" in report and md.startswith("**Warning: 3 seed(s)")
    assert {"growth", "growth_lo", "unstable"} <= set(t.columns)
    assert "backlog growth" in md


def test_paired_differences_are_per_seed():
    summ = pd.DataFrame(
        {
            "policy": ["a"] * 3 + ["b"] * 3,
            "seed": [0, 1, 2] * 2,
            "latency_mean_s": [1.0, 2.0, 3.0, 1.5, 2.5, 3.5],
            "latency_p95_s": [2.0, 3.0, 4.0, 2.0, 3.0, 4.0],
        }
    )
    p = paired_differences(summ, "a")
    row = p.iloc[0]
    assert row["mean_s_diff"] == pytest.approx(0.5) and row["mean_s_diff_lo"] == pytest.approx(0.5)
    assert row["ref_better_mean_s"] == 3 and row["ties_p95_s"] == 3


def test_vary_tables_reuse_the_main_runs(smoke_cmp):
    st = smoke_cmp.vary["devices.0.count"]
    assert sorted(st["devices.0.count"].unique().tolist()) == [2, 3, 5]
    assert (st["n_seeds"] == 2).all()
    # the base value (3 devices) is the main comparison's seeds 0 and 1
    s = smoke_cmp.summaries()
    base = st[(st["devices.0.count"] == 3) & (st["policy"] == "greedy")]["mean_s"].iloc[0]
    main = s[(s["policy"] == "greedy") & s["seed"].isin([0, 1])]
    assert base == pytest.approx(main["latency_mean_s"].mean())
    assert smoke_cmp.settings["runs"] == 3 * 3 + 2 * 3 * 2
    assert (smoke_cmp.out_dir / "vary_devices_0_count.csv").is_file()


def test_figures(smoke_cmp):
    figs = smoke_cmp.out_dir / "figures"
    for stem in ("paired", "latency_cdf", "seed_spread", "breakdown", "vs_devices_0_count"):
        png, pdf = figs / f"{stem}.png", figs / f"{stem}.pdf"
        assert png.stat().st_size > 5000, stem
        assert pdf.read_bytes()[:5] == b"%PDF-"
        w, h = _png_size(png)
        assert w >= 900 and h >= 350, (stem, w, h)
    assert _png_size(figs / "latency_cdf.png") == (960, 600)  # 6.4 x 4 in at 150 dpi
    assert _png_size(figs / "vs_devices_0_count.png") == (960, 600)


def test_rerun_reuses_finished_runs(smoke_cmp, monkeypatch):
    import mecsim.study.executor
    import mecsim.study.sweep

    def boom(*a, **k):  # pragma: no cover - must not be called
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(mecsim.study.executor, "execute_run", boom)
    monkeypatch.setattr(mecsim.study.sweep, "execute_run", boom)
    again = compare(
        "smoke-v1",
        "greedy,random,round-robin",
        seeds=3,
        out_dir=smoke_cmp.out_dir,
        duration_s=40,
        vary={"devices.0.count": [2, 3, 5]},
        vary_seeds=2,
        workers=1,
        progress=False,
        figures=False,
    )
    pd.testing.assert_frame_equal(again.table, smoke_cmp.table)


def test_rl_is_trained_at_each_varied_point(tmp_path):
    pytest.importorskip("sb3_contrib")
    cmp = compare(
        "smoke-v1",
        "greedy,rl",
        seeds=2,
        out_dir=tmp_path,
        duration_s=30,
        rl_steps=200,
        vary={"devices.0.count": [2, 3]},
        vary_seeds=1,
        workers=1,
        progress=False,
        figures=False,
    )
    models = sorted((tmp_path / "models").glob("*.zip"))
    assert len(models) == 2  # the compared point (3 devices) and the varied one (2 devices)
    st = cmp.vary["devices.0.count"]
    assert set(st.loc[st["policy"] == "rl", "devices.0.count"]) == {2, 3}
    assert cmp.settings["rl"]["per_point"] is True
    assert "a model of its own trained at each varied point" in (tmp_path / "report.md").read_text()


def test_one_policy_under_two_labels_stays_apart(tmp_path):
    """An ablation given as the same policy with other params and its own label is its own row."""
    cmp = compare(
        "smoke-v1",
        [
            "qubo-sa",
            {"name": "qubo-sa", "label": "qubo-sa-nols", "params": {"local_search": False, "candidates": 1}},
            "greedy",
        ],
        seeds=2,
        out_dir=tmp_path,
        duration_s=30,
        workers=1,
        progress=False,
        figures=False,
    )
    assert cmp.table["policy"].tolist() == ["qubo-sa", "qubo-sa-nols", "greedy"]
    s = cmp.summaries()
    assert s.groupby("policy").size().to_dict() == {"greedy": 2, "qubo-sa": 2, "qubo-sa-nols": 2}
    nols = s[s["policy"] == "qubo-sa-nols"]["policy_params"].astype(str)
    assert nols.str.contains('"local_search": false').all()


def test_compare_errors(tmp_path):
    with pytest.raises(PolicyError, match="no-such-policy"):
        compare("smoke-v1", "greedy,no-such-policy", seeds=1, out_dir=tmp_path, workers=1)
    with pytest.raises(ScenarioError):
        compare("no-such-scenario", "greedy", seeds=1, out_dir=tmp_path, workers=1)
    with pytest.raises(ScenarioError, match="devices.0.count"):
        compare("smoke-v1", "greedy", seeds=1, out_dir=tmp_path, workers=1, vary=["devices.0.count=0,2"])
    with pytest.raises(MecsimError, match="twice"):
        compare("smoke-v1", "greedy,greedy", seeds=1, out_dir=tmp_path, workers=1)
    with pytest.raises(MecsimError, match="FIELD=V1"):
        parse_vary(["devices.0.count"])
    assert parse_vary(["radio.bandwidth_hz=5e6,1.0e+7"]) == {"radio.bandwidth_hz": [5e6, 1e7]}


def test_study_files_are_valid():
    study = load_study(PAPER_STUDY)
    names = [e["scenario"] for e in study["studies"]]
    assert names == ["paper-small-v1", "paper-medium-v1"]
    for e in study["studies"]:
        pols = [p if isinstance(p, str) else p["name"] for p in e["policies"]]
        for p in ("qubo-sa", "rl", "random", "round-robin", "least-loaded", "greedy"):
            assert p in pols
    assert study["seeds"] == 10 and study["quick"]["seeds"] == 2
    # The regime study (its scenario and policy names are checked when it runs).
    reg = load_study(REGIMES_STUDY)
    assert [e["scenario"] for e in reg["studies"]] == [
        "radio-limited-v1",
        "hetero-load-v1",
        "deadline-v1",
        "batch-v1",
        "azure-code-v1",
        "paper-small-v1",
        "paper-medium-v1",
    ]
    for e in reg["studies"]:
        pols = [p if isinstance(p, str) else p["name"] for p in e["policies"]]
        assert {
            "qubo-sa",
            "greedy",
            "greedy-ls",
            "least-loaded",
            "random",
            "round-robin",
            "rl",
            "qubo-sa-nols",
            "qubo-random",
        } <= set(pols)
    assert set(reg["modes"]) == {"free", "charged"} and reg["seeds"] >= 5


def _cli(*args):
    return CliRunner().invoke(_standalone, list(args))


#: A study as small as a study gets (seconds): the same machinery as the regime study.
TINY_STUDY = {
    "name": "tiny",
    "seeds": 2,
    "duration_s": 40,
    "warmup_s": 5,
    "reference": "qubo-sa",
    "hybrid": "qubo-sa",
    "rl": {"steps": 300, "seed": 0},
    "modes": {
        "free": {},  # charged: only some policies (a mode with `set` and `policies`)
        "charged": {
            "set": {"epoch.decision_time.mode": "fixed", "epoch.decision_time.fixed_s": 0.3},
            "policies": ["qubo-sa", "greedy", "rl"],
        },
    },
    "studies": [
        {
            "scenario": "smoke-v1",
            "title": "smoke-v1 (tiny)",
            "policies": ["qubo-sa", "greedy", "random", {"name": "rl", "optional": True}],
        },
        # random overloads its servers at this rate (its backlog grows), qubo-sa copes
        {
            "scenario": "smoke-v1",
            "title": "smoke-v1 overloaded",
            "policies": ["qubo-sa", "random"],
            "overrides": {"devices.0.arrivals.rate_per_s": 0.5},
            "duration_s": 150,
            "seeds": 5,
            "modes": {"free": {}},
        },
    ],
    "quick": {"modes": ["free", "charged"]},
}


def test_reproduce_quick(tmp_path):
    pytest.importorskip("sb3_contrib")
    study = tmp_path / "tiny.yaml"
    study.write_text(yaml.safe_dump(TINY_STUDY, sort_keys=False))
    out = tmp_path / "rep"
    r = _cli(
        "reproduce", "--quick", "--study", str(study), "--out", str(out), "--workers", "1", "--no-progress"
    )
    assert r.exit_code == 0, r.output
    report = (out / "report.md").read_text()
    assert "## Does the hybrid (qubo-sa) win? Per regime" in report and "## Overview" in report
    assert "**Warning: 2 seed(s) only.**" in report
    for mode in ("free", "charged"):
        assert f"## smoke-v1 (tiny), decision time {mode}" in report
        t = pd.read_csv(out / "smoke-v1" / mode / "comparison.csv")
        assert set(t["policy"]) == {"qubo-sa", "greedy", "rl"} | ({"random"} if mode == "free" else set())
        assert (t["n_seeds"] == 2).all() and t["mean_s"].notna().all()
        for stem in ("paired", "latency_cdf", "breakdown"):
            assert (out / "smoke-v1" / mode / "figures" / f"{stem}.png").stat().st_size > 0
        c = pd.read_csv(out / "smoke-v1" / mode / "contrasts.csv")
        assert {"total: hybrid (qubo-sa) against greedy", "hybrid against RL"} <= set(c["contrast"])
    # Decision time charged costs latency: qubo-sa's wait stage grows by the fixed 0.3 s per epoch.
    free = pd.read_csv(out / "smoke-v1" / "free" / "comparison.csv").set_index("policy")
    charged = pd.read_csv(out / "smoke-v1" / "charged" / "comparison.csv").set_index("policy")
    assert charged.loc["qubo-sa", "mean_s"] > free.loc["qubo-sa", "mean_s"] + 0.1
    # One RL model per scenario, trained once and reused in the charged mode.
    models = list((out / "smoke-v1" / "free" / "models").glob("*.zip"))
    assert len(models) == 1 and not (out / "smoke-v1" / "charged" / "models").exists()
    curve = pd.read_csv(models[0].with_name(models[0].stem + "-curve.csv"))  # the learning curve
    assert len(curve) > 0 and curve["step"].is_monotonic_increasing
    assert models[0].with_name(models[0].stem + "-curve.png").stat().st_size > 0
    assert "learning curve" in report
    vd = pd.read_csv(out / "verdicts.csv")
    assert len(vd) == 3 and set(vd["mode"]) == {"free", "charged"}
    # Negative control of the stability test: random is unstable when overloaded, and gets no mean.
    ov = pd.read_csv(out / "overview.csv")
    over = ov[ov["regime"] == "smoke-v1 overloaded"].set_index("policy")
    assert over.loc["random", "unstable"] and not over.loc["qubo-sa", "unstable"], over
    assert "unstable: no mean" in (out / "smoke-v1_overloaded" / "comparison.md").read_text()
    assert "mean latency (s) [95% CI]" in r.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["compare", "smoke-v1", "--policies", "greedy,nope", "--seeds", "1"], "nope"),
        (["compare", "does/not/exist.yaml", "--seeds", "1"], "does/not/exist.yaml"),
        (["compare", "smoke-v1", "--seeds", "1", "--vary", "devices.0.count"], "--vary"),
        (["compare", "smoke-v1", "--seeds", "1", "--set", "radio.bandwidth_hz=-1"], "bandwidth_hz"),
        (
            ["compare", "smoke-v1", "--seeds", "1", "--reference", "random", "--policies", "greedy"],
            "reference",
        ),
        (["compare", "smoke-v1", "--seeds", "1", "--quick"], "--quick"),
        (["reproduce", "--rl-model", "model.zip"], "SCENARIO=PATH"),
    ],
)
def test_cli_errors_are_one_line(args, needle, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mecsim.compare_cli", *args, "--out", str(tmp_path / "o"), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_study_file(tmp_path):
    bad = tmp_path / "study.yaml"
    entry = {"scenario": "smoke-v1", "polices": ["greedy"]}  # a typo
    bad.write_text(yaml.safe_dump({"name": "x", "studies": [entry]}))
    r = _cli("compare", str(bad), "--out", str(tmp_path / "o"), "--workers", "1")
    assert r.exit_code == 2 and "polices" in r.output


def test_study_pretrains_rl_in_parallel_with_the_model_a_serial_study_trains(tmp_path):
    """On Dask, a study trains its regimes' RL models at once before the comparisons; each
    comparison then finds its model (no second training) with the training's record, and the
    model is the very one the serial study (which trains inside each comparison) makes."""
    pytest.importorskip("sb3_contrib")
    pytest.importorskip("distributed")
    from mecsim.study import run_study

    study = {
        "name": "pretrain",
        "seeds": 1,
        "duration_s": 30,
        "warmup_s": 5,
        "reference": "greedy",
        "hybrid": "greedy",
        "rl": {"steps": 600, "seed": 0},
        "studies": [
            {"scenario": "smoke-v1", "policies": ["greedy", "rl"]},
            {"scenario": "paper-small-v1", "policies": ["greedy", "rl"]},
        ],
    }
    par = run_study(study, tmp_path / "par", workers=2, figures=False, progress=False)
    ser = run_study(study, tmp_path / "ser", workers=1, figures=False, progress=False)
    for name in ("smoke-v1", "paper-small-v1"):
        models = list((tmp_path / "par" / name / "models").glob("*.zip"))
        assert len(models) == 1 and models[0].with_name(models[0].stem + "-train.json").is_file()
        report = (tmp_path / "par" / name / "report.md").read_text()
        assert "rl: trained MaskablePPO for" in report and "trained before the runs" in report
        assert "trained before the runs" not in (tmp_path / "ser" / name / "report.md").read_text()
    digests = [[c.settings["rl"]["digest"] for c in s.comparisons] for s in (par, ser)]
    assert digests[0] == digests[1] and len(set(digests[0])) == 2
