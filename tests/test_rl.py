"""The RL baseline: the gymnasium environment, training, the "rl" policy and train-rl."""

from __future__ import annotations

import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("gymnasium")
pytest.importorskip("sb3_contrib")

import mecsim  # noqa: E402
from mecsim.errors import MissingExtraError, PolicyError  # noqa: E402
from mecsim.rl.env import MecEnv  # noqa: E402
from mecsim.rl.policy import EncoderConfig, EpochEncoder, import_sb3, model_digest  # noqa: E402
from mecsim.rl.train import evaluate_rewards, make_model, train_rl  # noqa: E402
from mecsim.testing import random_epoch_state  # noqa: E402
from tests.conftest import tiny_scenario  # noqa: E402

SHORT = {"duration_s": 30}


def _greedy_action(env: MecEnv, obs: np.ndarray) -> int:
    """The action greedy would take: the smallest regret (the third per-server block)."""
    m = env.config.n_servers
    return int(np.argmin(np.where(env.action_masks(), obs[2 * m : 3 * m], np.inf)))


def test_env_passes_gymnasium_checker():
    from gymnasium.utils.env_checker import check_env

    env = MecEnv("smoke-v1", overrides=SHORT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no spec, cannot test render modes": we render nothing
        check_env(env)
    env.close()


def test_env_is_registered_with_gymnasium():
    import gymnasium

    from mecsim.rl.env import ENV_ID

    env = gymnasium.make(ENV_ID, scenario="smoke-v1", overrides=SHORT)
    assert isinstance(env.unwrapped, MecEnv)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    env.close()
    # the module:id form imports mecsim.rl.env first, as a fresh process needs
    code = (
        "import gymnasium\nenv = gymnasium.make('mecsim.rl.env:mecsim/MecEnv-v0', scenario='smoke-v1',"
        " overrides={'duration_s': 10})\nenv.reset(seed=0)\nprint(type(env.unwrapped).__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "MecEnv", proc.stderr


def test_env_holds_no_thread():
    import threading

    before = threading.active_count()
    env = MecEnv("smoke-v1", overrides=SHORT)
    env.reset(seed=1)
    env.step(0)
    assert threading.active_count() == before
    env.close()


def test_env_simulates_the_same_system_as_simulate():
    """Driving the environment with greedy's choices gives greedy's run, task for task."""
    env = MecEnv("paper-small-v1", overrides={"duration_s": 120})
    obs, info = env.reset(seed=4)
    assert info["run_seed"] == 4
    steps, term = 0, False
    while not term:
        obs, r, term, trunc, info = env.step(_greedy_action(env, obs))
        assert not trunc and r < 0
        steps += 1
    got = env.last_result.tasks
    ref = mecsim.simulate("paper-small-v1", policy="greedy", seed=4, duration_s=120).tasks
    assert steps == int((ref["epoch"] >= 0).sum())  # one step per decided task
    for col in ("t_arrival", "input_bits", "steps", "device", "server_index", "t_complete"):
        np.testing.assert_array_equal(got[col].to_numpy(), ref[col].to_numpy(), err_msg=col)
    assert info["latency_mean_s"] == pytest.approx(
        mecsim.simulate("paper-small-v1", policy="greedy", seed=4, duration_s=120).summary["latency_mean_s"]
    )
    env.close()


def test_env_seeding_and_restart():
    env = MecEnv("smoke-v1", overrides=SHORT)
    a, _ = env.reset(seed=11)
    env.step(0)
    b, _ = env.reset(seed=11)  # mid-episode: the old run is stopped
    np.testing.assert_array_equal(a, b)
    env.reset(seed=3)
    s1 = env.reset()[1]["run_seed"]
    env.reset(seed=3)
    s2 = env.reset()[1]["run_seed"]
    assert s1 == s2 and s1 != 3  # unseeded resets draw from the seeded generator
    env.close()
    env.close()  # twice is fine
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_env_masks_and_maps_infeasible_actions():
    sc = tiny_scenario(
        devices=[
            {
                "count": 2,
                "arrivals": {"process": "poisson", "rate_per_s": 0.5},
                "workload": [{"model": "sdxl", "steps": 20}],
            }
        ]
    )
    env = MecEnv(sc, overrides=SHORT, invalid_action_penalty=5.0)
    env.reset(seed=1)
    mask = env.action_masks()
    assert mask.tolist() == [True, False]  # server b does not host sdxl
    _, r, _, _, info = env.step(1)
    assert info["invalid_action"] and info["server"] == 0
    assert r < -5.0
    env.close()


def test_reward_is_a_faithful_latency_proxy():
    """The expected latencies the reward is made of track the realised ones."""
    env = MecEnv("paper-small-v1", overrides={"duration_s": 200})
    obs, _ = env.reset(seed=2)
    term = False
    while not term:
        obs, _, term, _, _ = env.step(_greedy_action(env, obs))
    est = np.array(env.expected_latencies())
    real = env.last_result.tasks["latency"].to_numpy()[: len(est)]  # decided oldest first
    ok = np.isfinite(real)
    assert ok.sum() > 100
    assert np.corrcoef(est[ok], real[ok])[0, 1] > 0.8
    assert abs(est[ok].mean() - real[ok].mean()) < 0.15 * real[ok].mean()
    env.close()


def test_encoder_observation_is_bounded_and_places_tasks():
    state = random_epoch_state(5, 3, seed=4, host_probability=0.6)
    cfg = EncoderConfig(n_servers=3)
    enc = EpochEncoder(cfg, state, state.equal_share())
    for i in range(5):
        obs, mask = enc.observe(i)
        assert obs.shape == (cfg.dim,) and obs.dtype == np.float32
        assert np.all(np.abs(obs) <= 10.0)
        np.testing.assert_array_equal(mask, state.feasible[i])
        before = enc.avail.copy()
        j = enc.fallback(i)
        assert mask[j]
        enc.place(i, j)
        assert enc.avail[j] > before[j] or enc.avail[j] >= state.service_s[i, j] / state.slots[j]
    with pytest.raises(PolicyError, match="servers"):
        EpochEncoder(EncoderConfig(n_servers=4), state, state.equal_share())


def test_training_improves_on_an_untrained_policy(tmp_path):
    over = {"duration_s": 120, "warmup_s": 0}
    rep = train_rl("paper-small-v1", 3000, tmp_path / "m.zip", seed=0, overrides=over, progress=False)
    assert rep.path.is_file() and rep.steps >= 3000 and rep.episodes > 5
    seeds = [100, 101, 102]
    untrained = make_model(MecEnv("paper-small-v1", overrides=over), seed=0)
    before = evaluate_rewards(untrained, "paper-small-v1", seeds, overrides=over)
    after = evaluate_rewards(rep.path, "paper-small-v1", seeds, overrides=over)
    assert np.mean(after["rewards"]) > np.mean(before["rewards"])
    assert np.mean(after["latency_mean_s"]) < 0.7 * np.mean(before["latency_mean_s"])
    # the registered policy decides as the environment rolled it out (same encoding, deterministic)
    res = mecsim.simulate(
        "paper-small-v1", policy="rl", policy_params={"model": str(rep.path)}, seed=seeds[0], **over
    )
    assert res.summary["latency_mean_s"] == pytest.approx(after["latency_mean_s"][0])
    assert res.summary["policy"] == "rl"


def test_training_is_reproducible(tmp_path):
    import torch

    from mecsim.rl.policy import load_model

    over = {"duration_s": 40}
    r1 = train_rl("smoke-v1", 400, tmp_path / "a.zip", seed=3, overrides=over, progress=False)
    r2 = train_rl("smoke-v1", 400, tmp_path / "b.zip", seed=3, overrides=over, progress=False)
    r3 = train_rl("smoke-v1", 400, tmp_path / "c.zip", seed=4, overrides=over, progress=False)
    assert r1.episode_rewards == r2.episode_rewards
    assert r1.digest == r2.digest != r3.digest
    w1, w2 = load_model(r1.path)[0].policy.state_dict(), load_model(r2.path)[0].policy.state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_learning_curve_and_training_until_flat(tmp_path):
    """The flatness tests: a curve that levels off is flat, a rising one is not (negative
    control), and the paired test is not fooled by the load of the runs (a level that differs
    from seed to seed cancels); training until flat stops within its budget, records one point
    per training run and one validation check per chunk, and stops early only on a flat check."""
    import doctest

    import mecsim.rl.train as train

    assert doctest.testmod(train).failed == 0
    assert train.is_flat([-5.0] * 8 + [-1.0] * 16) is True
    assert train.is_flat(np.linspace(-10, -1, 20)) is False
    assert train.is_flat([-1.0, -1.0]) is None
    # Seeds of very different load (levels -0.2 .. -6): a policy that moves by +-5% around a
    # level is flat; one still improving by 3% per check, with the same wobble, is not.
    levels = np.array([-0.2, -0.5, -1.0, -6.0])
    wobble = [1.0, 0.95, 1.05, 0.97, 1.03, 0.96, 1.04, 1.0]
    assert train.is_flat_validation([levels * w for w in wobble]) is True
    assert train.is_flat_validation([levels * w * 0.97**k for k, w in enumerate(wobble)]) is False
    assert train.is_flat_validation([levels] * 5) is None
    rep = train_rl(
        "smoke-v1",
        4096,
        tmp_path / "f.zip",
        seed=0,
        overrides={"duration_s": 40},
        progress=False,
        until_flat=True,
        n_validation=2,
    )
    assert 3072 <= rep.steps <= 4096  # checks every 512 decisions, judged from the sixth on
    assert len(rep.episode_steps) == len(rep.episode_reward_per_step) == rep.episodes > 0
    assert rep.episode_steps == sorted(rep.episode_steps)
    assert len(rep.eval_seeds) == 2 and not set(rep.eval_seeds) & set(range(100))
    assert rep.eval_steps == sorted(rep.eval_steps) and rep.eval_steps[-1] == rep.steps
    assert all(len(e) == 2 for e in rep.eval_reward_per_step)
    assert rep.flat == train.is_flat_validation(rep.eval_reward_per_step)
    means = np.mean(rep.eval_reward_per_step, axis=1)
    assert rep.best_step == rep.eval_steps[int(np.argmax(means))]
    assert rep.flat is not None
    if rep.steps < 4096:  # it stopped early only because the validation curve was flat
        assert rep.flat
    with pytest.raises(train.RLError, match="check_every"):
        train_rl("smoke-v1", 64, tmp_path / "g.zip", progress=False, until_flat=True, check_every=0)


def test_rl_policy_errors(tmp_path):
    with pytest.raises(PolicyError, match="no such model"):
        mecsim.simulate("smoke-v1", policy="rl", policy_params={"model": str(tmp_path / "no.zip")})
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("hello.txt", "not a model")
    with pytest.raises(PolicyError, match="cannot load"):
        mecsim.simulate("smoke-v1", policy="rl", policy_params={"model": str(bad)})
    rep = train_rl("smoke-v1", 64, tmp_path / "s.zip", overrides={"duration_s": 20}, progress=False)
    with pytest.raises(PolicyError, match="trained for 2 servers"):
        mecsim.simulate("paper-small-v1", policy="rl", policy_params={"model": str(rep.path)}, duration_s=70)
    with pytest.raises(PolicyError, match="digest"):
        mecsim.simulate(
            "smoke-v1", policy="rl", duration_s=10, policy_params={"model": str(rep.path), "digest": "0" * 16}
        )
    assert model_digest(rep.path) == rep.digest


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "sb3_contrib", None)
    with pytest.raises(MissingExtraError, match=r"mecsim\[rl\]"):
        import_sb3()


def test_imports_stay_light():
    code = (
        "import sys, mecsim, mecsim.rl, mecsim.rl.policy, mecsim.compare, mecsim.compare_cli\n"
        "heavy = [m for m in ('torch', 'gymnasium', 'stable_baselines3', 'sb3_contrib') "
        "if m in sys.modules]\nassert not heavy, heavy\n"
        "from mecsim.registry import POLICIES\nassert 'rl' in POLICIES.names()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def _cli(*args):
    from mecsim.compare_cli import _standalone

    return CliRunner().invoke(_standalone, list(args))


def test_train_rl_cli(tmp_path):
    out = tmp_path / "m.zip"
    r = _cli(
        "train-rl",
        "smoke-v1",
        "--steps",
        "200",
        "--out",
        str(out),
        "--duration",
        "30",
        "--eval-seeds",
        "1",
        "--no-progress",
    )
    assert r.exit_code == 0, r.output
    assert out.is_file() and "wrote" in r.output and "greedy" in r.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train-rl", "no-such-scenario", "--steps", "10", "--out", "x.zip"], "no-such-scenario"),
        (["train-rl", "smoke-v1", "--steps", "10", "--out", "x.zip", "--set", "servers.0.slots=0"], "slots"),
        (["train-rl", "smoke-v1", "--steps", "10", "--out", "x.zip", "--hp", "n_epochs=-1"], "n_epochs"),
        (
            ["train-rl", "smoke-v1", "--steps", "10", "--out", "x.zip", "--hp", "no_such_knob=1"],
            "no_such_knob",
        ),
    ],
)
def test_train_rl_cli_errors(args, needle, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mecsim.compare_cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr
