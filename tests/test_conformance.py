"""Conformance over the registries: every registered policy passes ``check_policy`` and every
registered solver passes ``check_sampler``, parametrised from ``POLICIES`` and ``SOLVERS`` (a new
built-in name is checked without editing this file); the registry lists the built-in names without
importing them, and lists all of them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mecsim.decision.solvers import check_sampler, get_sampler
from mecsim.errors import MissingExtraError
from mecsim.policies import check_policy
from mecsim.registry import POLICIES, SOLVERS

POLICY_NAMES = POLICIES.load_all()
SOLVER_NAMES = SOLVERS.load_all()

#: check_policy settings that keep a check short, with the reason. Names not listed are checked
#: with check_policy's defaults.
POLICY_SETTINGS: dict[str, dict] = {
    # 12-task epochs (48 variables) take HiGHS to the preset's 5 s limit: 21 s for the check, and a
    # time-limited solve need not be reproducible; 8 tasks (32 variables) solve to optimality.
    "qubo-milp": {"sizes": (0, 1, 5, 8)},
}


@pytest.fixture(scope="module")
def rl_model(tmp_path_factory):
    """A tiny trained model for "rl" (64 steps on smoke-v1, 2 servers): the policy needs a model
    file, and check_policy checks the interface and the run, not how well it learnt."""
    pytest.importorskip("sb3_contrib", reason="the 'rl' extra is not installed")
    from mecsim.rl.train import train_rl

    path = tmp_path_factory.mktemp("rl") / "tiny.zip"
    train_rl("smoke-v1", 64, path, seed=0, overrides={"duration_s": 20}, progress=False)
    return path


@pytest.mark.filterwarnings("ignore:rl. the model was trained on servers")
@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_registered_policy_passes_check_policy(name, request):
    kwargs = dict(POLICY_SETTINGS.get(name, {}))
    if name == "rl":  # a model for the 2 servers of smoke-v1, so the test epochs have 2 servers
        kwargs.update(model=str(request.getfixturevalue("rl_model")), servers=(2,))
    try:
        report = check_policy(name, **kwargs)
    except MissingExtraError as exc:  # only outside the dev install (CI has every extra)
        pytest.skip(str(exc))
    assert report["ok"]
    assert report["simulation"]["tasks_generated"] > 0


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_every_registered_solver_passes_check_sampler(name):
    try:
        sampler = get_sampler(name)
    except MissingExtraError as exc:  # pragma: no cover - only outside the dev install
        pytest.skip(str(exc))
    check_sampler(sampler, name=name)


def test_builtin_names_are_listed_without_importing_them_and_all_are_listed():
    """``mecsim list`` and ``names()`` come from the registry's table: no numerical library is
    imported for them, and importing every built-in module adds no name the table lacks (a name
    registered in a module but missing from ``BUILTIN_POLICIES``/``BUILTIN_SOLVERS`` fails here)
    and changes no description."""
    code = (
        "import sys\n"
        "from mecsim.registry import POLICIES, SOLVERS\n"
        "before = (POLICIES.describe(), SOLVERS.describe())\n"
        "assert not [m for m in ('numpy', 'dimod', 'scipy') if m in sys.modules], sys.modules.keys()\n"
        "POLICIES.load_all(); SOLVERS.load_all()\n"
        "after = (POLICIES.describe(), SOLVERS.describe())\n"
        "for b, a in zip(before, after):\n"
        "    assert set(a) == set(b), ('registered but not in the table', set(a) - set(b))\n"
        "    assert a == b, {k: (b[k], a[k]) for k in a if a[k] != b[k]}\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_registry_register_and_resolve():
    """Registering from user code still works (as a decorator), a built-in name cannot be taken
    over, and a name resolves to its factory."""
    from mecsim.errors import PolicyError
    from mecsim.registry import Registry

    reg = Registry("policy", PolicyError, {"builtin": ("mecsim.policies.heuristics:GreedyPolicy", "doc")})
    assert reg.names() == ["builtin"] and reg.describe() == {"builtin": "doc"}

    @reg.register("mine", "my policy")
    def make_mine():
        return "mine"

    assert reg.names() == ["builtin", "mine"] and reg.make("mine") == "mine"
    with pytest.raises(PolicyError, match="registered twice"):
        reg.register("mine")(make_mine)
    with pytest.raises(PolicyError, match="registered twice"):  # not the module of the entry
        reg.register("builtin")(make_mine)
    from mecsim.policies.heuristics import GreedyPolicy

    assert reg.resolve("builtin") is GreedyPolicy
    with pytest.raises(PolicyError, match="unknown policy 'nope'; registered: builtin, mine"):
        reg.resolve("nope")
