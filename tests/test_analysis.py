"""Analysis: loading a sweep as one dataset, latency statistics across seeds, the latency
breakdown, queue time series, Little's law, the report and the plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

import mecsim
from mecsim.analysis import (
    STAGES,
    AnalysisError,
    censored_cdf,
    latency_breakdown,
    latency_stats,
    littles_law,
    load_run,
    load_sweep,
    mean_breakdown,
    per_seed_stats,
    queue_timeseries,
    stability,
    t_interval,
    write_report,
)

SPEC = {
    "name": "an",
    "scenario": "smoke-v1",
    "overrides": {"duration_s": 40, "warmup_s": 5},
    "grid": {"servers.1.slots": [1, 2]},
    "policies": ["random", "greedy"],
    "seeds": {"count": 3},
}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A small finished sweep (12 runs), run on an in-process Dask cluster (starts instantly)."""
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    from mecsim.sweep import run_sweep

    out = tmp_path_factory.mktemp("sweep")
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc,
        Client(lc) as client,
    ):
        cat = run_sweep(SPEC, out, scheduler=client, progress=False)
    assert (cat["status"] == "done").all()
    return out


# ---------------------------------------------------------------------------------------------
# loading


def test_load_sweep_is_one_dataset_joined_with_the_catalogue(sweep_dir):
    sw = load_sweep(sweep_dir)
    assert len(sw.catalogue) == 12 and sw.override_columns == ["servers.1.slots"]
    assert sw.varying() == ["policy", "servers.1.slots"]
    tasks = sw.tasks()
    assert tasks["run_id"].nunique() == 12
    assert {"policy", "seed", "servers.1.slots", "warmup_s"} <= set(tasks.columns)
    sizes = tasks.groupby("run_id", observed=True).size()
    summ = sw.summaries().set_index("run_id")
    assert (sizes == summ.loc[sizes.index.astype(str), "tasks_generated"].to_numpy()).all()
    # Catalogue conditions select runs, the others filter rows; columns are read selectively.
    some = sw.tasks(
        columns=["latency"],
        filters=[
            ("policy", "==", "greedy"),
            ("seed", "in", [0, 2]),
            ("servers.1.slots", "==", 2),
            ("latency", ">", 0.5),
        ],
    )
    assert set(some["policy"]) == {"greedy"} and set(some["seed"]) == {0, 2}
    assert (some["latency"] > 0.5).all() and some["run_id"].nunique() == 2
    assert "t_arrival" not in some.columns
    servers = sw.servers(filters=[("run_id", "==", sw.run_ids[0])])
    assert servers["run_id"].nunique() == 1 and "in_system" in servers.columns
    assert len(sw.epochs()) == int(summ["epochs"].sum())
    with pytest.raises(AnalysisError, match="no column"):
        sw.tasks(columns=["no_such_column"])


def test_load_run_reads_a_run_folder(tmp_path):
    res = mecsim.simulate("smoke-v1", policy="greedy", seed=4, duration_s=30)
    res.save(tmp_path / "one")
    run = load_run(tmp_path / "one")
    t = run.tasks()
    pd.testing.assert_frame_equal(t[res.tasks.columns], res.tasks)
    assert (t["policy"] == "greedy").all() and (t["seed"] == 4).all()
    assert len(run.summaries()) == 1
    with pytest.raises(AnalysisError, match="not a run folder"):
        load_run(tmp_path)


# ---------------------------------------------------------------------------------------------
# latency statistics


def _synthetic(lat_by_seed: dict[tuple[str, int], list[float]]) -> pd.DataFrame:
    rows = []
    for (pol, seed), lats in lat_by_seed.items():
        for k, x in enumerate(lats):
            rows.append(
                {
                    "policy": pol,
                    "seed": seed,
                    "status": "completed",
                    "t_arrival": 10.0 + k,
                    "latency": x,
                    "deadline": 10.0 + k + 3.0,
                    "deadline_met": x <= 3.0,
                }
            )
        # One task of each kind that must be left out of the latency, and said so.
        rows.append(
            {
                "policy": pol,
                "seed": seed,
                "status": "dropped",
                "t_arrival": 20.0,
                "latency": np.nan,
                "deadline": 23.0,
                "deadline_met": False,
            }
        )
        rows.append(
            {
                "policy": pol,
                "seed": seed,
                "status": "in_flight",
                "t_arrival": 21.0,
                "latency": np.nan,
                "deadline": 24.0,
                "deadline_met": pd.NA,
            }
        )
        rows.append(
            {
                "policy": pol,
                "seed": seed,
                "status": "completed",
                "t_arrival": 1.0,
                "latency": 99.0,
                "deadline": np.inf,
                "deadline_met": True,
            }
        )
    df = pd.DataFrame(rows)
    df["deadline_met"] = df["deadline_met"].astype("boolean")
    df["warmup_s"] = 5.0
    return df


def test_latency_stats_ci_across_seeds():
    lat = {
        ("a", 0): [1.0, 2.0, 3.0],
        ("a", 1): [2.0, 4.0],
        ("a", 2): [1.0, 1.0, 1.0, 5.0],
        ("b", 0): [0.5],
        ("b", 1): [0.7, 0.9],
    }
    df = _synthetic(lat)
    out = latency_stats(df, by="policy", ci=0.9).set_index("policy")
    means = np.array([2.0, 3.0, 2.0])
    half = stats.t.ppf(0.95, 2) * means.std(ddof=1) / np.sqrt(3)
    a = out.loc["a"]
    assert a["n_seeds"] == 3
    assert a["mean_s"] == pytest.approx(means.mean())
    assert (a["mean_s_lo"], a["mean_s_hi"]) == pytest.approx((means.mean() - half, means.mean() + half))
    assert a["seed_std_s"] == pytest.approx(means.std(ddof=1))
    p95 = [np.quantile(v, 0.95) for k, v in lat.items() if k[0] == "a"]
    assert a["p95_s"] == pytest.approx(np.mean(p95))
    lo, hi = stats.t.interval(0.9, 2, loc=np.mean(p95), scale=stats.sem(p95))
    assert (a["p95_s_lo"], a["p95_s_hi"]) == pytest.approx((lo, hi))
    # miss rate per seed: latencies above 3 s and the dropped task, among tasks with a deadline
    # (the in-flight and warm-up tasks do not count)
    miss = [1 / 4, 2 / 3, 2 / 5]
    assert a["miss_rate"] == pytest.approx(np.mean(miss))
    # every task is accounted for
    assert a["n_tasks"] == 9 + 3 * 3 and a["n_latency"] == 9
    assert (a["excluded_dropped"], a["excluded_in_flight"], a["excluded_warmup"]) == (3, 3, 3)
    b = out.loc["b"]
    assert b["n_seeds"] == 2 and b["mean_s"] == pytest.approx(np.mean([0.5, 0.8]))
    one = latency_stats(df[df["seed"] == 0], by="policy")
    assert one["mean_s_lo"].isna().all()  # one seed: no interval


def test_latency_stats_from_tasks_and_from_summaries_agree(sweep_dir):
    sw = load_sweep(sweep_dir)
    by = ["policy", "servers.1.slots"]
    a = latency_stats(sw.tasks(), by)
    b = latency_stats(sw.summaries(), by)
    cols = [c for c in a.columns if c not in by]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_dtype=False)
    per = per_seed_stats(sw.tasks(), by)
    assert len(per) == 12 and (per["n_runs"] == 1).all()
    total = a["n_latency"] + a["excluded_dropped"] + a["excluded_in_flight"] + a["excluded_warmup"]
    assert (total == a["n_tasks"]).all()
    assert (a["excluded_warmup"] > 0).all()
    with pytest.warns(UserWarning, match="pool"):
        latency_stats(sw.tasks(), "policy")  # two slot settings per (policy, seed): pooled


# ---------------------------------------------------------------------------------------------
# breakdown, queues, Little's law


def test_breakdown_stages_sum_to_latency():
    res = mecsim.simulate("paper-small-v1", policy="greedy", seed=2, duration_s=300)
    tasks = res.tasks
    br = latency_breakdown(tasks)
    done = tasks["status"] == "completed"
    assert done.sum() > 100
    total = br.loc[done, list(STAGES)].sum(axis=1)
    np.testing.assert_allclose(total, tasks.loc[done, "latency"], rtol=0, atol=1e-9)
    assert (br.loc[done, list(STAGES)] >= -1e-12).all().all()
    assert (br.loc[done, "upload"] > 0).all() and (br.loc[done, "inference"] > 0).all()
    means = mean_breakdown(tasks.assign(policy="greedy", warmup_s=60.0), "policy").iloc[0]
    assert means[list(STAGES)].sum() == pytest.approx(means["latency"])
    assert means["latency"] == pytest.approx(res.summary["latency_mean_s"])
    assert means["n"] == res.summary["latency_n"]


def test_queue_timeseries_is_time_weighted():
    servers = pd.DataFrame(
        {
            "t": [0.0, 1.0, 2.5, 0.5, 0.5, 3.0],
            "server": pd.Categorical(["a", "a", "a", "b", "b", "b"]),
            "queue_len": [2, 0, 1, 5, 1, 0],  # b: two changes at t = 0.5, the last one holds
            "busy_slots": [1, 1, 2, 0, 2, 1],
            "in_transit": [0, 0, 0, 0, 0, 0],
        }
    )
    ts = queue_timeseries(servers, dt=1.0, slots={"a": 2, "b": 4}, t1=4.0)
    a = ts[ts["server"] == "a"]
    np.testing.assert_allclose(a["t"], [0, 1, 2, 3])
    np.testing.assert_allclose(a["queue_len"], [2, 0, 0.5, 1])
    np.testing.assert_allclose(a["busy_slots"], [1, 1, 1.5, 2])
    np.testing.assert_allclose(a["utilisation"], [0.5, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(a["in_system"], a["queue_len"] + a["busy_slots"])
    b = ts[ts["server"] == "b"]
    np.testing.assert_allclose(b["queue_len"], [0.5, 1, 1, 0])
    # A grid that does not divide the span: the last cell is shorter, averages stay exact.
    ts2 = queue_timeseries(servers[servers["server"] == "a"], dt=1.5, t1=4.0)
    np.testing.assert_allclose(ts2["queue_len"], [(2 * 1 + 0 * 0.5) / 1.5, (0 * 1 + 1 * 0.5) / 1.5, 1.0])
    assert ts2["utilisation"].isna().all()


def test_littles_law_on_mm1():
    res = mecsim.simulate("mm1-v1", seed=3, duration_s=5000, warmup_s=100)
    ll = littles_law(res.tasks, res.servers, 100.0, 5000.0)
    assert abs(ll["rel_diff"]) < 0.03
    assert ll["lambda"] == pytest.approx(0.5, rel=0.1)
    assert ll["L"] == pytest.approx(1.0, rel=0.3)  # theory: rho / (1 - rho) = 1
    # The servers table gives the same L through the queue time series.
    ts = queue_timeseries(res.servers, dt=100.0, t0=100.0, t1=5000.0)
    assert ts["in_system"].mean() == pytest.approx(ll["L"])


# ---------------------------------------------------------------------------------------------
# report and plots


def test_report_on_a_sweep(sweep_dir):
    pytest.importorskip("matplotlib")
    from mecsim.sweep_cli import report

    res = CliRunner().invoke(report, [str(sweep_dir), "--dt", "2"])
    assert res.exit_code == 0, res.output
    assert "| policy | servers.1.slots | n_seeds |" in res.stdout
    folder = sweep_dir / "report"
    for stem in ("latency_cdf", "seed_spread", "breakdown", "queue"):
        assert (folder / f"{stem}.png").stat().st_size > 1000
        assert (folder / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
    for table in ("breakdown", "runs"):
        assert (folder / f"{table}.md").read_text().startswith("| ")
    # 3 seeds: the latency table says its intervals cannot be trusted
    lat_md = (folder / "latency.md").read_text()
    assert lat_md.startswith("**Warning: 3 seed(s) only.**") and "\n| policy |" in lat_md
    lat = pd.read_csv(folder / "latency.csv")
    assert len(lat) == 4 and (lat["n_seeds"] == 3).all()


def test_report_on_a_run_folder(tmp_path):
    pytest.importorskip("matplotlib")
    mecsim.simulate("smoke-v1", policy="round-robin", seed=1, duration_s=40).save(tmp_path / "r")
    rep = write_report(tmp_path / "r")
    assert rep["figures_skipped"] is None and rep["by"] == ["policy"]
    ll = pd.read_csv(tmp_path / "r" / "report" / "littles_law.csv")
    assert abs(ll["rel_diff"].iloc[0]) < 0.5  # a short run: edge effects, but the same order
    assert (tmp_path / "r" / "report" / "queue.pdf").is_file()


def test_plots_return_figures_and_save_png_and_pdf(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from mecsim import plots

    res = mecsim.simulate("smoke-v1", policy="greedy", seed=1, duration_s=30)
    tasks = res.tasks.assign(policy="greedy", seed=1)
    fig = plots.latency_cdf(tasks, save=tmp_path / "cdf")
    assert isinstance(fig, Figure)
    assert (tmp_path / "cdf.png").is_file() and (tmp_path / "cdf.pdf").is_file()
    assert isinstance(plots.seed_spread(tasks), Figure)
    assert isinstance(plots.breakdown_bars(tasks), Figure)
    ts = queue_timeseries(res.servers, 1.0, slots=res.scenario)
    fig = plots.queue_plot(ts, value="utilisation")
    assert plots.save_figure(fig, tmp_path / "q.png") == [tmp_path / "q.png", tmp_path / "q.pdf"]


@pytest.mark.parametrize(
    "module",
    ["mecsim.sweep", "mecsim.study.sweep", "mecsim.analysis.stats", "mecsim.analysis.labels", "mecsim.plots"],
)
def test_docstring_examples_run(module):
    import doctest
    import importlib

    if module == "mecsim.plots":
        pytest.importorskip("matplotlib")
    result = doctest.testmod(importlib.import_module(module), verbose=False)
    assert result.failed == 0 and result.attempted > 0


# ---------------------------------------------------------------------------------------------
# stability, censored CDF, the one t-interval, labels


def _queue_tasks(growth_per_s: float, seed: int, n: int = 400, duration: float = 200.0) -> pd.DataFrame:
    """Synthetic tasks of one run: latency 1 s plus noise plus ``growth_per_s`` times the arrival
    time (a stable queue has 0; a queue whose backlog grows linearly has > 0). Tasks whose
    completion falls after the end are in flight."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, duration, n))
    lat = 1.0 + rng.exponential(0.3, n) + growth_per_s * t
    done = t + lat <= duration
    return pd.DataFrame(
        {
            "t_arrival": t,
            "latency": np.where(done, lat, np.nan),
            "t_complete": np.where(done, t + lat, np.nan),
            "status": np.where(done, "completed", "in_flight"),
            "seed": seed,
            "warmup_s": 20.0,
            "duration_s": duration,
        }
    )


def test_stability_flags_a_growing_queue_and_not_a_stable_one():
    stable = pd.concat([_queue_tasks(0.0, s).assign(policy="stable") for s in range(5)])
    growing = pd.concat([_queue_tasks(0.05, s).assign(policy="growing") for s in range(5)])
    st = stability(pd.concat([stable, growing]), "policy").set_index("policy")
    assert not st.loc["stable", "unstable"] and st.loc["stable", "growth_lo"] < 0.2
    assert abs(st.loc["stable", "growth"]) < 0.1
    # Negative control: latency growing 0.05 s per s is flagged, and the in-flight tasks count.
    assert st.loc["growing", "unstable"] and st.loc["growing", "growth_lo"] > 0.2, st
    assert st.loc["growing", "unfinished_frac"] > 0


def test_stability_on_simulated_queues():
    """smoke-v1 at 3x its arrival rate overloads random; greedy copes at the default rate."""
    rows = []
    for seed in range(1, 6):
        for pol, rate in (("greedy", None), ("random", 3.0)):
            over = {"duration_s": 120, "warmup_s": 10}
            if rate:
                sc = mecsim.load_scenario("smoke-v1")
                over["devices.0.arrivals.rate_per_s"] = sc.devices[0].arrivals.rate_per_s * rate
            res = mecsim.simulate("smoke-v1", policy=pol, seed=seed, **over)
            rows.append(res.tasks.assign(policy=pol, seed=seed, warmup_s=10.0, duration_s=120.0))
    st = stability(pd.concat(rows, ignore_index=True), "policy").set_index("policy")
    assert not st.loc["greedy", "unstable"]
    assert st.loc["random", "unstable"], st


def test_censored_cdf_ends_below_one_by_the_dropped_share():
    tasks = pd.concat([_queue_tasks(0.0, s) for s in range(3)], ignore_index=True).assign(policy="p")
    tasks.loc[tasks.index % 10 == 0, "status"] = "dropped"
    cdf = censored_cdf(tasks, "policy", grid=[1e3])
    never = (tasks["status"] != "completed") & (tasks["t_arrival"] >= 20)
    expect = 1 - never[tasks["t_arrival"] >= 20].mean()
    assert cdf["F"].iloc[0] == pytest.approx(expect, abs=0.02) and cdf["F"].iloc[0] < 0.95
    assert cdf["censored"].iloc[0] == pytest.approx(1 - cdf["F"].iloc[0], abs=1e-9)
    assert (cdf["F_lo"] <= cdf["F"]).all() and (cdf["F"] <= cdf["F_hi"]).all()


def test_t_interval_matches_scipy():
    x = np.array([2.0, 3.5, 1.0, 4.0, 2.5])
    lo, hi = stats.t.interval(0.9, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    m, a, b, sd = t_interval(x, 0.9)
    assert (m, sd) == pytest.approx((x.mean(), x.std(ddof=1))) and (a, b) == pytest.approx((lo, hi))
    assert np.isnan(t_interval([1.0], 0.95)[1]) and t_interval([2.0, 2.0])[1:3] == (2.0, 2.0)


def test_axis_labels_have_names_and_units():
    from mecsim.analysis.labels import axis_label

    assert axis_label("devices.0.arrivals.rate_per_s") == "arrival rate per device (1/s)"
    assert axis_label("radio.bandwidth_hz") == "uplink bandwidth (Hz)"
    assert axis_label("servers.2.slots") == "slots of server 2"
    assert axis_label("foo.bar_latency_s") == "bar latency (s)"


def test_analysis_has_no_import_circle_and_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, mecsim.analysis.stats, mecsim.analysis.load, mecsim.analysis.report\n"
        "assert 'mecsim.analysis.plots' not in sys.modules, 'stats/load/report import plots'\n"
        "import mecsim.analysis, mecsim.plots\n"
        "assert 'matplotlib' not in sys.modules and 'dask' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_figures_name_axes_and_mark_what_they_draw():
    pytest.importorskip("matplotlib")
    from mecsim import plots

    key = "devices.0.arrivals.rate_per_s"
    st = pd.DataFrame(
        {
            "policy": ["a", "a", "b", "b"],
            key: [0.1, 1.0, 0.1, 1.0],
            "mean_s": [1.0, 50.0, 1.2, 60.0],
            "mean_s_lo": [np.nan] * 4,
            "mean_s_hi": [np.nan] * 4,
        }
    )
    fig = plots.vary_figure(st, key)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "arrival rate per device (1/s)" and ax.get_yscale() == "log"
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and not any("10^" in t or "times" in t for t in labels), labels  # plain numbers
    # no interval (one seed): lines without error bars, so the legend shows lines
    assert not ax.containers and len(ax.get_legend().get_lines()) == 2
    summ = pd.DataFrame(
        {
            "policy": ["r"] * 4 + ["x"] * 4,
            "seed": list(range(4)) * 2,
            "latency_mean_s": [1.0, 2.0, 3.0, 4.0, 1.5, 2.4, 3.6, 4.5],
        }
    )
    fig = plots.paired_figure(summ, "r", title="t")
    dots = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "o"]
    assert len(dots) == 1 and len(dots[0].get_xdata()) == 4  # one dot per seed
    np.testing.assert_allclose(sorted(dots[0].get_xdata()), [0.4, 0.5, 0.5, 0.6])
