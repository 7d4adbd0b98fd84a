"""Studies: several comparisons from one study file, one report; ``mecsim reproduce``.

A study file (``scenarios/studies/*.yaml``) names scenarios (registered names, or paths relative to
the file), the policies to compare on each, the fields to vary, the RL training budget, named
override sets (``modes``, e.g. decision time free and charged) and a ``quick`` variant.
:func:`run_study` runs one :func:`~mecsim.study.comparison.compare` per scenario and mode on one
shared executor (a Dask cluster is started once) and writes ``report.md`` with an overview across
scenarios: per regime, whether the hybrid beats RL and the heuristics on latency (paired
intervals) and on stability, and where its gain over greedy comes from.
:func:`reproduce` runs the shipped regime study (``scenarios/studies/regimes.yaml``).

A mode's overrides apply to every run of its comparison; the RL model is trained once per
scenario (in the first mode) and reused in the others; varied fields are run in the first mode
only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mecsim.analysis.report import _ci, _safe, report_header, scenario_section, seed_warning, to_markdown
from mecsim.study.comparison import DEFAULT_POLICIES, Comparison, compare
from mecsim.study.executor import Executor
from mecsim.study.policies import DEFAULT_RL_STEPS, CompareError
from mecsim.traces import atomic_write

__all__ = [
    "Study",
    "load_study",
    "is_study_file",
    "run_study",
    "reproduce",
    "overview",
    "verdicts",
    "REGIMES_STUDY",
    "PAPER_STUDY",
]


def _studies_dir() -> Path:
    from mecsim.scenario import data_dir  # the packaged scenarios (a wheel has no checkout)

    return data_dir("scenarios") / "studies"


_STUDIES = _studies_dir()

#: The regime study that ``mecsim reproduce`` runs.
REGIMES_STUDY = _STUDIES / "regimes.yaml"

#: The earlier paper-style study (paper-small-v1 and paper-medium-v1 only).
PAPER_STUDY = _STUDIES / "paper.yaml"


@dataclass
class Study:
    """The outcome of :func:`run_study`: one :class:`Comparison` per scenario and mode, and the report."""

    name: str
    out_dir: Path
    comparisons: list[Comparison]
    report: Path
    settings: dict[str, Any]


_STUDY_KEYS = {
    "name",
    "description",
    "seeds",
    "vary_seeds",
    "duration_s",
    "warmup_s",
    "overrides",
    "rl",
    "reference",
    "quick",
    "studies",
    "ci",
    "modes",
    "hybrid",
}
_ENTRY_KEYS = {
    "scenario",
    "policies",
    "vary",
    "overrides",
    "reference",
    "rl_model",
    "seeds",
    "vary_seeds",
    "duration_s",
    "warmup_s",
    "modes",
    "title",
}
_QUICK_KEYS = {
    "seeds",
    "vary_seeds",
    "duration_s",
    "warmup_s",
    "rl_steps",
    "vary_values",
    "rl_duration_s",
    "studies",
    "modes",
}


def is_study_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a study file (a YAML mapping with a ``studies`` list)."""
    from mecsim.errors import MecsimError
    from mecsim.scenario import _load_yaml_file  # the one bounded YAML reader (size, nodes, aliases)

    p = Path(os.fspath(path))
    if not p.is_file() or p.suffix.lower() not in (".yaml", ".yml"):
        return False
    try:
        data = _load_yaml_file(p)
    except MecsimError:
        return False
    return isinstance(data, dict) and "studies" in data


def load_study(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Load and check a study file (see ``scenarios/studies/paper.yaml``).

    Raises:
        CompareError: one line naming the field.
    """

    base_dir = None
    if isinstance(source, Mapping):
        data: Any = dict(source)
    else:
        from mecsim.scenario import _load_yaml_file

        p = Path(os.fspath(source))
        if not p.is_file():
            raise CompareError(f"no such study file: {p}")
        data = _load_yaml_file(p, CompareError, "study file")
        base_dir = p.resolve().parent
    if not isinstance(data, dict):
        raise CompareError("a study must be a mapping of fields")
    bad = set(data) - _STUDY_KEYS
    if bad:
        raise CompareError(f"{sorted(bad)[0]}: unknown field (use {sorted(_STUDY_KEYS)})")
    studies = data.get("studies")
    if not isinstance(studies, list) or not studies:
        raise CompareError("studies: give a list of {scenario, policies, vary, ...}")
    for i, e in enumerate(studies):
        if not isinstance(e, dict) or "scenario" not in e:
            raise CompareError(f"studies.{i}: needs at least `scenario`")
        bad = set(e) - _ENTRY_KEYS
        if bad:
            raise CompareError(f"studies.{i}.{sorted(bad)[0]}: unknown field (use {sorted(_ENTRY_KEYS)})")
        src = str(e["scenario"])
        if base_dir is not None and not Path(src).is_absolute() and (base_dir / src).exists():
            e["scenario"] = str((base_dir / src).resolve())
    quick = data.get("quick") or {}
    if not isinstance(quick, dict) or set(quick) - _QUICK_KEYS:
        raise CompareError(f"quick: a mapping with some of {sorted(_QUICK_KEYS)}")
    rl = data.get("rl") or {}
    if not isinstance(rl, dict) or set(rl) - {"steps", "seed", "duration_s"}:
        raise CompareError("rl: a mapping with some of steps, seed, duration_s")
    data.setdefault("name", "study")
    return data


def _thin(values: Sequence[Any], k: int | None) -> list[Any]:
    """At most k values, evenly spread and keeping the first and the last."""
    vals = list(values)
    if k is None or len(vals) <= k:
        return vals
    if k <= 1:
        return vals[:1]
    idx = sorted({round(i * (len(vals) - 1) / (k - 1)) for i in range(k)})
    return [vals[i] for i in idx]


def _modes(
    study: Mapping[str, Any], entry: Mapping[str, Any], quick: Mapping[str, Any]
) -> dict[str, tuple[dict[str, Any], list[str] | None]]:
    """name -> (overrides, the policies to run in it or None for all). A mode is a mapping of
    overrides, or ``{set: {overrides}, policies: [labels]}`` to run only some policies in it."""
    modes = entry.get("modes") or study.get("modes") or {"": {}}
    if not isinstance(modes, Mapping):
        raise CompareError("modes: a mapping of name -> overrides, e.g. {free: {}, charged: {...}}")
    keep = quick.get("modes")
    out: dict[str, tuple[dict[str, Any], list[str] | None]] = {}
    for k, v in modes.items():
        if keep is not None and k not in keep:
            continue
        v = dict(v or {})
        if set(v) and set(v) <= {"set", "policies"}:
            pols = v.get("policies")
            if pols is not None and not (isinstance(pols, list) and all(isinstance(p, str) for p in pols)):
                raise CompareError(f"modes.{k}.policies: a list of policy labels")
            out[str(k)] = (dict(v.get("set") or {}), pols)
        else:
            out[str(k)] = (v, None)
    return out or {"": ({}, None)}


def _pretrain(
    study: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    q: Mapping[str, Any],
    out: Path,
    steps: int,
    rl_models: Mapping[str, str] | None,
    ex: Executor,
) -> None:
    """Train the RL models of the regimes at once, one per worker, before the comparisons (each
    comparison finds its model on disk, with the training's record; trained one after the other
    inside the comparisons, they would leave all workers but one idle). The folder and settings
    are those the comparison of the entry's first mode uses. Serially: nothing to gain, left to
    the comparisons."""
    from mecsim.scenario import load_scenario
    from mecsim.study.comparison import _scenario_source
    from mecsim.study.policies import pretrain_rl

    if ex.serial:
        return
    rl = study.get("rl") or {}
    jobs, used = [], set()
    for entry in entries:
        name = load_scenario(entry["scenario"]).name
        title = entry.get("title") or name
        folder = _safe(name) if _safe(name) not in used else _safe(title)
        used.add(folder)
        if (rl_models or {}).get(name) or entry.get("rl_model"):
            continue
        modes = _modes(study, entry, q)
        mode, (mode_over, only) = next(iter(modes.items()))
        pols = [_label(p) for p in (entry.get("policies") or DEFAULT_POLICIES)]
        if "rl" not in pols or (only is not None and "rl" not in only):
            continue
        over = {**dict(study.get("overrides") or {}), **dict(entry.get("overrides") or {}), **mode_over}
        over = {str(k).replace("__", "."): v for k, v in over.items()}
        dur = q.get("duration_s") or entry.get("duration_s") or study.get("duration_s")
        warm = q.get("warmup_s", entry.get("warmup_s", study.get("warmup_s")))
        if dur is not None:
            over["duration_s"] = float(dur)
        if warm is not None:
            over["warmup_s"] = float(warm)
        sub = out / folder / _safe(mode) if len(modes) > 1 else out / folder
        jobs.append(
            (
                _scenario_source(entry["scenario"]),
                over,
                steps,
                int(rl.get("seed", 0)),
                q.get("rl_duration_s") or rl.get("duration_s"),
                str(sub / "models"),
            )
        )
    if len(jobs) < 2:
        return
    client = ex.client(len(jobs))
    futures = [client.submit(pretrain_rl, *job, pure=False) for job in jobs]
    client.gather(futures)  # an error here is the training's own (it would fail the same way later)


def _label(p: Any) -> str:
    return str(p) if isinstance(p, str) else str(p.get("label") or p.get("name"))


def run_study(
    source: str | os.PathLike[str] | Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    *,
    quick: bool = False,
    seeds: int | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    rl_models: Mapping[str, str] | None = None,
    rl_steps: int | None = None,
    figures: bool = True,
    progress: bool = True,
    command: str = "mecsim compare STUDY",
) -> Study:
    """Run every comparison of a study file into ``out_dir/<scenario>[/<mode>]/`` and write
    ``out_dir/report.md`` (and ``overview.csv``, ``verdicts.csv``, ``study.json``).

    Args:
        source: the study file (or its dict).
        out_dir: the output folder.
        quick: use the study's ``quick`` settings (fewer seeds, shorter runs, a small RL budget,
            fewer varied values, possibly fewer scenarios and modes).
        seeds: seeds per comparison, over the study's.
        workers: as :func:`~mecsim.study.comparison.compare`.
        scheduler: as :func:`~mecsim.study.comparison.compare`.
        rl_models: scenario name -> a model for its ``rl`` policy (else one is trained).
        rl_steps: training decisions of the RL models trained here, over the study's.
        figures: write the figures.
        progress: show progress bars.
        command: the command named in the report.

    Returns:
        A :class:`Study`.
    """
    from mecsim.scenario import load_scenario

    study = load_study(source)
    out = Path(os.fspath(out_dir))
    q = (study.get("quick") or {}) if quick else {}
    rl = study.get("rl") or {}
    n_seeds = seeds or q.get("seeds") or study.get("seeds") or 10
    steps = rl_steps or q.get("rl_steps") or rl.get("steps") or DEFAULT_RL_STEPS
    entries = study["studies"]
    if q.get("studies"):
        entries = [
            e
            for e in entries
            if str(e["scenario"]).rsplit("/", 1)[-1] in set(q["studies"])
            or Path(str(e["scenario"])).stem in set(q["studies"])
        ]
    ex = Executor(workers, scheduler, progress)
    comps: list[Comparison] = []
    used: set[str] = set()
    t0 = time.perf_counter()
    try:
        _pretrain(study, entries, q, out, steps, rl_models, ex)
        for entry in entries:
            over = {**dict(study.get("overrides") or {}), **dict(entry.get("overrides") or {})}
            dur = q.get("duration_s") or entry.get("duration_s") or study.get("duration_s")
            warm = q.get("warmup_s", entry.get("warmup_s", study.get("warmup_s")))
            vary = {k: _thin(v, q.get("vary_values")) for k, v in (entry.get("vary") or {}).items()}
            name = load_scenario(entry["scenario"]).name
            model = (rl_models or {}).get(name) or entry.get("rl_model")
            modes = _modes(study, entry, q)
            title = entry.get("title") or name
            # One folder per entry: the scenario's name, or its title when the name is taken.
            folder = _safe(name) if _safe(name) not in used else _safe(title)
            if folder in used:
                raise CompareError(f"studies: two entries of {name!r} need different titles")
            used.add(folder)
            for k, (mode, (mode_over, only)) in enumerate(modes.items()):
                pols = list(entry.get("policies") or DEFAULT_POLICIES)
                if only is not None:
                    pols = [p for p in pols if _label(p) in set(only)]
                sub = out / folder / _safe(mode) if len(modes) > 1 else out / folder
                cmp = compare(
                    entry["scenario"],
                    pols,
                    seeds=(
                        entry.get("seeds")
                        if seeds is None and not q.get("seeds") and entry.get("seeds")
                        else n_seeds
                    ),
                    out_dir=sub,
                    duration_s=dur,
                    warmup_s=warm,
                    overrides={**over, **mode_over},
                    vary=vary if k == 0 else None,
                    vary_seeds=q.get("vary_seeds") or entry.get("vary_seeds") or study.get("vary_seeds"),
                    rl_model=model,
                    rl_steps=steps,
                    rl_seed=int(rl.get("seed", 0)),
                    rl_duration_s=q.get("rl_duration_s") or rl.get("duration_s"),
                    reference=entry.get("reference") or study.get("reference"),
                    ci=float(study.get("ci", 0.95)),
                    figures=figures,
                    progress=progress,
                    title=f"{title}, decision time {mode}" if mode else title,
                    executor=ex,
                )
                cmp.settings["mode"] = mode
                cmp.settings["regime"] = title
                comps.append(cmp)
                if model is None and cmp.settings.get("rl"):
                    model = cmp.settings["rl"]["model"]  # one model per scenario, reused in other modes
    finally:
        ex.close()
    hybrid = str(study.get("hybrid") or study.get("reference") or "qubo-sa")
    settings = {
        "name": study["name"],
        "quick": quick,
        "seeds": n_seeds,
        "rl_steps": steps,
        "wall_s": time.perf_counter() - t0,
        "executor": ex.kind,
        "hybrid": hybrid,
    }
    ov, vd = overview(comps, hybrid), verdicts(comps, hybrid)
    out.mkdir(parents=True, exist_ok=True)
    ov.to_csv(out / "overview.csv", index=False)
    vd.to_csv(out / "verdicts.csv", index=False)
    text = report_header(f"mecsim study: {study['name']}" + (" (quick)" if quick else ""), command)
    if study.get("description"):
        text += " ".join(str(study["description"]).split()) + "\n\n"
    text += (
        f"{len(comps)} comparisons, {sum(c.settings['runs'] for c in comps)} runs, "
        f"{settings['wall_s']:.0f} s wall in all ({ex.kind}).\n\n"
    )
    warn = seed_warning(min((len(c.seeds) for c in comps), default=0))
    if warn:
        text += warn + "\n\n"
    text += f"## Does the hybrid ({hybrid}) win? Per regime\n\n" + _verdict_text(vd, hybrid) + "\n"
    text += "## Overview: every policy in every regime\n\n" + to_markdown(_overview_md(ov)) + "\n\n"
    for c in comps:
        text += scenario_section(c, out, level=2)
    report = out / "report.md"
    atomic_write(report, lambda p: Path(p).write_text(text))
    record = {"settings": settings, "scenarios": [c.settings for c in comps]}
    atomic_write(out / "study.json", lambda p: Path(p).write_text(json.dumps(record, indent=2, default=str)))
    return Study(name=study["name"], out_dir=out, comparisons=comps, report=report, settings=settings)


def overview(comps: Sequence[Comparison], hybrid: str = "qubo-sa") -> pd.DataFrame:
    """One row per (regime, mode, policy): mean and p95 latency with intervals, miss rate,
    spread of the seed means, and the stability verdict."""
    rows = []
    for c in comps:
        for r in c.table.to_dict("records"):
            rows.append(
                {
                    "regime": c.settings.get("regime") or c.scenario,
                    "mode": c.settings.get("mode", ""),
                    "policy": r["policy"],
                    "n_seeds": r["n_seeds"],
                    "unstable": bool(r.get("unstable")),
                    "growth": r.get("growth"),
                    **{
                        k: r[k]
                        for k in (
                            "mean_s",
                            "mean_s_lo",
                            "mean_s_hi",
                            "p95_s",
                            "p95_s_lo",
                            "p95_s_hi",
                            "miss_rate",
                            "miss_rate_lo",
                            "miss_rate_hi",
                            "seed_std_s",
                            "decision_ms_per_epoch",
                        )
                    },
                }
            )
    return pd.DataFrame(rows)


def _overview_md(ov: pd.DataFrame) -> pd.DataFrame:
    if ov.empty:
        return ov
    rows = []
    for r in ov.to_dict("records"):
        bad = r["unstable"]
        rows.append(
            {
                "regime": r["regime"],
                "decision time": r["mode"] or "-",
                "policy": r["policy"],
                "mean (s) [CI]": "unstable" if bad else _ci(r["mean_s"], r["mean_s_lo"], r["mean_s_hi"]),
                "p95 (s) [CI]": "unstable" if bad else _ci(r["p95_s"], r["p95_s_lo"], r["p95_s_hi"]),
                "miss rate [CI]": _ci(r["miss_rate"], r["miss_rate_lo"], r["miss_rate_hi"]),
                "std of seed means (s)": (f"{r['seed_std_s']:.3g}" if np.isfinite(r["seed_std_s"]) else "-"),
                "unstable": "YES" if bad else "no",
            }
        )
    return pd.DataFrame(rows)


def verdicts(comps: Sequence[Comparison], hybrid: str = "qubo-sa") -> pd.DataFrame:
    """Per regime and mode: the hybrid against RL and against the best stable heuristic, on mean
    latency (paired t-interval, from the comparison's paired table when the hybrid is its
    reference) and on stability."""
    from mecsim.analysis.report import _verdict

    rows = []
    for c in comps:
        t = c.table
        if hybrid not in set(t["policy"]):
            continue
        unstable = set(
            t.loc[t.get("unstable", pd.Series(False, index=t.index)).fillna(False).astype(bool), "policy"]
        )
        p = c.paired.set_index("policy") if c.reference == hybrid and not c.paired.empty else None
        row: dict[str, Any] = {
            "regime": c.settings.get("regime") or c.scenario,
            "mode": c.settings.get("mode", ""),
            "hybrid_stable": hybrid not in unstable,
            "unstable": ", ".join(sorted(unstable)),
        }
        heur = [
            x
            for x in t["policy"]
            if x != hybrid and x != "rl" and not str(x).startswith("qubo") and x not in unstable
        ]
        best = t[t["policy"].isin(heur)].sort_values("mean_s").head(1)
        for who, name in (
            ("rl", "rl" if "rl" in set(t["policy"]) else None),
            ("heuristic", best["policy"].iloc[0] if len(best) else None),
        ):
            row[f"{who}"] = name
            if name is None or p is None or name not in p.index:
                row.update(
                    {
                        f"{who}_minus_hybrid_s": np.nan,
                        f"{who}_lo": np.nan,
                        f"{who}_hi": np.nan,
                        f"{who}_verdict": "-",
                    }
                )
                continue
            d, lo, hi = (float(p.loc[name, k]) for k in ("mean_s_diff", "mean_s_diff_lo", "mean_s_diff_hi"))
            verdict = _verdict(d, lo, hi, hybrid, name)
            if name in unstable:
                verdict = f"{name} is unstable"
            row.update(
                {f"{who}_minus_hybrid_s": d, f"{who}_lo": lo, f"{who}_hi": hi, f"{who}_verdict": verdict}
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _verdict_text(vd: pd.DataFrame, hybrid: str) -> str:
    if vd.empty:
        return f"{hybrid} was not compared in any regime.\n"

    def cell(r: Mapping[str, Any], who: str) -> str:
        if r[who] is None or pd.isna(r[who]):
            return "-"
        diff = _ci(r[f"{who}_minus_hybrid_s"], r[f"{who}_lo"], r[f"{who}_hi"])
        return f"{r[who]}: {diff} ({r[f'{who}_verdict']})"

    rows = []
    for r in vd.to_dict("records"):
        rows.append(
            {
                "regime": r["regime"],
                "decision time": r["mode"] or "-",
                f"RL minus {hybrid}, mean latency (s) [CI]": cell(r, "rl"),
                f"best stable heuristic minus {hybrid} (s) [CI]": cell(r, "heuristic"),
                f"{hybrid} unstable": "no" if r["hybrid_stable"] else "YES",
                "unstable policies": r["unstable"] or "none",
            }
        )
    return (
        "Positive differences mean the hybrid is faster (paired over the same seeds). Stability: see "
        "the header; an unstable policy gets no mean and no verdict on latency.\n\n"
        + to_markdown(pd.DataFrame(rows))
        + "\n"
    )


def reproduce(
    out_dir: str | os.PathLike[str] = "runs/reproduce",
    *,
    quick: bool = False,
    study: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Study:
    """Run the shipped regime study (``scenarios/studies/regimes.yaml``, or ``study``); see
    :func:`run_study`."""
    cmd = "mecsim reproduce" + (" --quick" if quick else "") + (f" --study {study}" if study else "")
    return run_study(study or REGIMES_STUDY, out_dir, quick=quick, command=cmd, **kwargs)
