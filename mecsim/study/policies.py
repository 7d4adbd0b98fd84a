"""The policies of a comparison: entries from names or mappings, checked against the registry,
and the RL baseline's model (given, reused, or trained here)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mecsim.errors import MecsimError, PolicyError
from mecsim.traces import atomic_write

__all__ = [
    "CompareError",
    "PolicyChoice",
    "parse_policies",
    "resolve_policies",
    "prepare_rl",
    "pretrain_rl",
    "RL_SPEC",
    "DEFAULT_RL_STEPS",
]

#: The spec the RL policy runs under in sweeps: importable in any worker process, whether or not
#: the "rl" name has been registered there.
RL_SPEC = "mecsim.rl.policy:RLPolicy"

#: Default training budget (task decisions) of an RL model trained by a comparison.
DEFAULT_RL_STEPS = 20_000


class CompareError(MecsimError, ValueError):
    """A comparison or study is malformed (bad option, study file or field to vary)."""


@dataclass(frozen=True)
class PolicyChoice:
    """One policy of a comparison.

    Attributes:
        label: the name in tables and figures (``"rl"``, ``"greedy"``, ...).
        name: what the runs use: a registered name or ``"package.module:Object"``.
        params: the policy's parameters.
    """

    label: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)


def _registered() -> list[str]:
    from mecsim.policies import make_policy  # noqa: F401  (registers the shipped policies)
    from mecsim.registry import POLICIES

    try:
        import mecsim.rl.policy  # noqa: F401  (registers "rl"; torch is imported only on use)
    except ImportError:  # pragma: no cover
        pass
    return POLICIES.names()


def parse_policies(policies: str | Iterable[Any]) -> list[Any]:
    """Policy entries from ``"a,b,c"`` or a list of names / ``{name, params, label, optional}``."""
    if isinstance(policies, str):
        items: list[Any] = [p.strip() for p in policies.split(",") if p.strip()]
    else:
        items = list(policies)
    if not items:
        raise CompareError("no policies to compare")
    return items


def _check_policy(name: str) -> None:
    from mecsim.registry import POLICIES

    _registered()
    POLICIES.resolve(name)  # PolicyError for unknown names and broken specs


def resolve_policies(entries: Iterable[Any], notes: list[str]) -> list[PolicyChoice]:
    """Validate policy entries; optional ones that are not registered are skipped with a note.

    The RL policy keeps the label ``rl`` and gets its model later (see :func:`compare`).

    Raises:
        PolicyError: an unknown policy that is not optional.
        CompareError: a malformed entry or a label used twice.
    """
    out: list[PolicyChoice] = []
    for e in entries:
        if isinstance(e, str):
            e = {"name": e}
        if not isinstance(e, Mapping) or not isinstance(e.get("name"), str) or not e["name"].strip():
            raise CompareError(f"a policy is a name or {{name, params, label, optional}}, got {e!r}")
        unknown = set(e) - {"name", "params", "label", "optional"}
        if unknown:
            raise CompareError(f"policy {e['name']!r}: unknown key(s) {sorted(unknown)}")
        name = e["name"].strip()
        params = dict(e.get("params") or {})
        label = str(e.get("label") or name)
        if name == "rl":
            out.append(PolicyChoice(label, RL_SPEC, params))
            continue
        try:
            _check_policy(name)
        except PolicyError:
            if e.get("optional"):
                notes.append(
                    f"{name} skipped: it is not registered in this installation "
                    f"(registered: {', '.join(_registered())})"
                )
                continue
            raise
        out.append(PolicyChoice(label, name, params))
    labels = [p.label for p in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise CompareError(f"policies listed twice: {dup} (give one a different `label`)")
    if not out:
        raise CompareError("no policy left to compare")
    return out


def prepare_rl(
    policies: list[PolicyChoice],
    source: str,
    overrides: dict[str, Any],
    rl_model: str | os.PathLike[str] | None,
    rl_steps: int,
    rl_seed: int,
    rl_duration_s: float | None,
    model_dir: Path,
    notes: list[str],
    progress: bool,
) -> tuple[list[PolicyChoice], dict[str, Any] | None]:
    """Give the RL policy a model: the one given, one trained before with the same settings,
    or a new one. Returns the policies and a description of the model for the report."""
    if not any(p.name == RL_SPEC for p in policies):
        return policies, None
    from mecsim.rl.policy import import_sb3, load_model, model_digest

    import_sb3()  # MissingExtraError before any training or run
    info: dict[str, Any]
    if rl_model is not None:
        path = Path(os.fspath(rl_model)).expanduser().resolve()
        _, cfg = load_model(path)  # PolicyError if it is not a model
        info = {"model": str(path), "trained_here": False, "scenario": cfg.scenario}
    else:
        from mecsim.rl.train import train_rl
        from mecsim.scenario import load_scenario

        train_over = dict(overrides)
        if rl_duration_s is not None:
            train_over["duration_s"] = rl_duration_s
        from mecsim.rl.train import DEFAULT_HYPERPARAMETERS

        sc = load_scenario(source, **train_over)
        # The name holds everything the training depends on, so a model on disk is reused only
        # when it is the one this call would train ("-val": stopped on validation checks).
        hp = hashlib.sha256(json.dumps(DEFAULT_HYPERPARAMETERS, sort_keys=True).encode()).hexdigest()[:6]
        path = (
            model_dir / f"rl-{sc.name}-{sc.digest()}-hp{hp}-upto{rl_steps}-seed{rl_seed}-val.zip"
        ).resolve()
        curve = path.with_name(path.stem + "-curve.csv")
        info = {
            "model": str(path),
            "trained_here": True,
            "steps": rl_steps,
            "seed": rl_seed,
            "train_duration_s": sc.duration_s,
            "scenario": sc.name,
        }
        side = path.with_name(path.stem + "-train.json")
        if path.is_file() and curve.is_file() and side.is_file():
            # Trained by pretrain_rl (a study trains its regimes' models in parallel first) or by
            # an earlier call: the training's own record and note.
            rec = json.loads(side.read_text())
            info.update(rec["info"], reused=True)
            notes.append(rec["note"] + f" (trained before the runs: {path.name})")
        elif path.is_file() and curve.is_file():
            notes.append(f"rl: reused the model trained earlier with the same settings ({path.name})")
            info["reused"] = True
            import pandas as pd

            c = pd.read_csv(curve)
            info.update(
                trained_steps=int(c.attrs.get("steps", c["step"].max())), episodes=len(c), curve=str(curve)
            )
            val = _validation_csv(curve)
            if val.is_file():  # the flatness verdict of the training, from its validation checks
                from mecsim.rl.train import is_flat_validation

                ev = pd.read_csv(val)
                best = int(ev.drop(columns="step").mean(axis=1).idxmax())
                flat = is_flat_validation(ev.drop(columns="step").to_numpy())
                info.update(flat=flat, best_step=int(ev["step"].iloc[best]), validation=str(val))
        else:
            # Trained in chunks until the learning curve is flat, at most rl_steps decisions.
            rep = train_rl(
                source, rl_steps, path, seed=rl_seed, overrides=train_over, progress=progress, until_flat=True
            )
            _write_curve(rep, curve, sc.name)
            info.update(
                wall_s=rep.wall_s,
                episodes=rep.episodes,
                trained_steps=rep.steps,
                flat=rep.flat,
                best_step=rep.best_step,
                checks=len(rep.eval_steps),
                curve=str(curve),
                validation=str(_validation_csv(curve)),
                first_returns=rep.episode_rewards[:3],
                last_returns=rep.episode_rewards[-3:],
            )
            state = {
                True: "flat at the end",
                False: "NOT flat at the end (raise rl.steps)",
                None: "too few validation checks to tell whether it is flat (6 needed)",
            }[rep.flat]
            change = "" if rep.best_step is None else f", kept the best check's policy (at {rep.best_step})"
            note = (
                f"rl: trained MaskablePPO for {rep.steps} decisions (budget {rl_steps}) "
                f"({rep.episodes} runs of {sc.duration_s:g} s, seed {rl_seed}) in "
                f"{rep.wall_s:.0f} s (with {len(rep.eval_steps)} validation checks on "
                f"{len(rep.eval_seeds)} unseen seeds); learning curve: {state}{change} "
                f"(`models/{curve.with_suffix('.png').name}`)"
            )
            notes.append(note)
            rec = {k: v for k, v in info.items() if k not in ("model", "curve", "validation")}
            text = json.dumps({"info": rec, "note": note}, indent=1, default=str)
            atomic_write(side, lambda tmp: Path(tmp).write_text(text))
    digest = model_digest(path)
    info["digest"] = digest
    out = [
        PolicyChoice(p.label, p.name, {**p.params, "model": str(path), "digest": digest})
        if p.name == RL_SPEC
        else p
        for p in policies
    ]
    return out, info


def pretrain_rl(
    source: Any,
    overrides: dict[str, Any],
    rl_steps: int,
    rl_seed: int,
    rl_duration_s: float | None,
    model_dir: str,
) -> str:
    """Train the model :func:`prepare_rl` would train with these settings (a study calls this
    for its regimes at once on the executor's workers; each comparison then finds its model).
    Returns the model's path."""
    _, info = prepare_rl(
        [PolicyChoice("rl", RL_SPEC, {})],
        source,
        overrides,
        None,
        rl_steps,
        rl_seed,
        rl_duration_s,
        Path(model_dir),
        [],
        False,
    )
    return str((info or {}).get("model"))


def _validation_csv(curve: Path) -> Path:
    """Where the validation checks of a learning curve are written (beside its CSV)."""
    return curve.with_name(curve.stem + "-validation.csv")


def _write_curve(rep: Any, csv: Path, scenario: str) -> None:
    """The RL learning curve as CSV and as a figure next to the model: the return per decision
    of each training run (with a moving average) and, when trained until flat, of the
    deterministic policy at each validation check (mean over the fixed validation seeds; the
    flatness test's curve), the validation checks in their own CSV (one column per seed)."""
    import numpy as np
    import pandas as pd

    df = pd.DataFrame(
        {
            "episode": np.arange(1, len(rep.episode_steps) + 1),
            "step": rep.episode_steps,
            "return": rep.episode_rewards,
            "reward_per_step": rep.episode_reward_per_step,
        }
    )
    df.to_csv(csv, index=False)
    ev = None
    if rep.eval_steps:
        ev = pd.DataFrame(rep.eval_reward_per_step, columns=[f"seed_{s}" for s in rep.eval_seeds])
        ev.insert(0, "step", rep.eval_steps)
        ev.to_csv(_validation_csv(csv), index=False)
    try:
        from mecsim.analysis import plots

        fig = plots.figure()
    except MecsimError:  # no matplotlib: the CSV is there
        return
    ax = fig.axes[0]
    ax.plot(
        df["step"],
        df["reward_per_step"],
        ".",
        color="grey",
        alpha=0.6,
        label="one training run (sampled actions)",
    )
    if len(df) >= 4:
        w = max(2, len(df) // 8)
        ax.plot(
            df["step"],
            df["reward_per_step"].rolling(w, min_periods=1).mean(),
            color="C0",
            label=f"moving average of {w} runs",
        )
    low = float(df["reward_per_step"].quantile(0.02)) if len(df) else -1.0
    if ev is not None:
        mean = ev.drop(columns="step").mean(axis=1)
        ax.plot(
            ev["step"],
            mean,
            "o-",
            color="C1",
            label=f"validation (most likely action): mean of {len(rep.eval_seeds)} unseen seeds",
        )
        low = min(low, float(mean.min()))
        if rep.best_step is not None:
            kept = ev["step"] == rep.best_step
            ax.plot(ev["step"][kept], mean[kept], "*", ms=14, color="C3", label="kept (best validation)")
    hidden = int((df["reward_per_step"] < low - 0.1 * abs(low)).sum())
    if hidden:  # a few runs of extreme load would squash the curve
        ax.set_ylim(bottom=low - 0.1 * abs(low))
        ax.plot([], [], " ", label=f"{hidden} training run(s) below the axis")
    ax.set_xlabel("training decisions (environment steps)")
    ax.set_ylabel("return per decision (minus expected latency, scaled)")
    flat = {True: "flat at the end", False: "not flat at the end", None: "too few checks to tell"}[rep.flat]
    ax.set_title(
        f"RL learning curve, {scenario}\n{rep.steps} decisions, {rep.episodes} training runs, "
        f"{rep.wall_s:.0f} s ({flat})",
        fontsize="medium",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    plots.save_figure(fig, csv.with_suffix(""), formats=("png",))
    plots.close(fig)
