"""Fuzzing the inputs: malformed scenario files fed to `mecsim validate` and `mecsim run`.

Every case must end with exit code 2 and exactly one line on stderr that starts with
"mecsim: error:", never a traceback and never a hang (each case has a time limit).
"""

from __future__ import annotations

import copy
import random
import signal
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from mecsim.cli import main
from tests.conftest import tiny_scenario

JUNK_VALUES = ["abc", "20 MHz", "23dBm", -1, -1e308, 1e308, float("nan"), float("inf"), [],
               {"x": 1}, None, True, "", [1, 2, 3]]


def _paths(node, prefix=()):
    """Every leaf and inner path of a nested dict/list."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _set(node, path, value):
    for p in path[:-1]:
        node = node.setdefault(p, {}) if isinstance(node, dict) else node[p]
    node[path[-1]] = value


def _delete(node, path):
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]


REQUIRED = [("devices",), ("servers",), ("devices", 0, "arrivals"), ("devices", 0, "workload"),
            ("devices", 0, "arrivals", "rate_per_s"), ("devices", 0, "workload", 0, "model"),
            ("servers", 0, "name"), ("servers", 0, "gpu"), ("servers", 1, "models")]

# (path, value) pairs that are wrong for sure: bad type, out of range, beyond the limits
OUT_OF_RANGE = [
    (("duration_s",), 0), (("duration_s",), -5), (("seed",), -1), (("radio", "bandwidth_hz"), 0),
    (("radio", "bandwidth_hz"), float("inf")), (("devices", 0, "count"), 0),
    (("devices", 0, "count"), 10**9), (("devices", 0, "arrivals", "rate_per_s"), 1e300),
    (("servers", 0, "slots"), 0), (("servers", 0, "slots"), 10**7), (("epoch", "length_s"), -1),
    (("epoch", "length_s"), 1e-9), (("radio", "fading"), {"coherence_time_s": 1e-12}),
    (("devices", 0, "workload", 0, "steps"), 1e12), (("devices", 0, "workload", 0, "steps"), 2.5),
    (("devices", 0, "workload", 0, "deadline_s"), -3), (("servers", 0, "models"), []),
    (("devices", 0, "workload"), []), (("deadline_action",), "explode"),
    (("service", "jitter", "distribution"), "pareto"), (("warmup_s",), 1e6),
    (("radio", "min_bandwidth_hz"), 1e12), (("devices", 0, "placement", "distance_m"), [300, 50]),
    (("devices", 0, "mobility"), {"model": "random-waypoint", "speed_mps": 1e9}),
    (("servers", 1, "name"), "a"), (("servers", 0, "gpu"), "no-such-gpu"),
    (("devices", 0, "workload", 0, "model"), "no-such-model"),
    (("faults",), {"servers": [{"server": "nope", "down_s": [1]}]}),
    (("faults",), {"channels": [{"device": 99, "start_s": 1, "end_s": 2}]}),
    (("devices", 0, "arrivals"), {"process": "trace", "path": "/no/such/file.csv"}),
    (("devices", 0, "workload", 0, "input_bits"), 1e20),
]


def malformed_cases(n_random=170, seed=20261128):
    """At least 200 malformed scenario files as (label, text or bytes)."""
    rng = random.Random(seed)
    base = tiny_scenario()
    cases = [("empty", ""), ("whitespace", "   \n\n"), ("null", "null"), ("number", "42"),
             ("list", "- a\n- b\n"), ("string", "hello"), ("bad yaml", "devices: [unclosed"),
             ("tabs", "devices:\n\t- count: 1"), ("binary", bytes(range(256))),
             ("binary junk", bytes(rng.getrandbits(8) for _ in range(512))),
             ("yaml tag", "!!python/object/apply:os.system ['echo pwned']"),
             ("deep", "a: " + "[" * 200 + "]" * 200)]
    for path in REQUIRED:
        sc = copy.deepcopy(base)
        _delete(sc, path)
        cases.append((f"missing {'.'.join(map(str, path))}", yaml.safe_dump(sc)))
    for path, value in OUT_OF_RANGE:
        sc = copy.deepcopy(base)
        _set(sc, path, value)
        cases.append((f"bad {'.'.join(map(str, path))}={value!r}", yaml.safe_dump(sc)))
    all_paths = [p for p in _paths(base) if p[-1] not in ("name", "description")]
    while len(cases) < len(REQUIRED) + len(OUT_OF_RANGE) + 12 + n_random:
        sc = copy.deepcopy(base)
        path = rng.choice(all_paths)
        kind = rng.random()
        if kind < 0.2:
            try:
                _set(sc, (*path[:-1], f"unknown_{rng.randrange(1000)}"), 1)  # an unknown field
            except TypeError:  # the parent is a list
                continue
            label = f"unknown field near {path}"
        else:
            value = rng.choice(JUNK_VALUES)
            try:
                _set(sc, path, value)
            except (TypeError, IndexError, KeyError):
                continue
            label = f"junk {path}={value!r}"
        try:
            text = yaml.safe_dump(sc)
        except yaml.YAMLError:
            continue
        cases.append((label, text))
    return cases


CASES = malformed_cases()


def test_corpus_is_large_enough():
    assert len(CASES) >= 200


class _Timeout(Exception):
    pass


def _alarm(_sig, _frame):
    raise _Timeout()


def _one_line_error(result):
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    return len(lines) == 1 and lines[0].startswith("mecsim: error:") and "Traceback" not in result.output


def _valid_anyway(text):
    """A random junk value can land where it is harmless (e.g. a description); such a file is
    valid, and the test then expects exit 0 instead."""
    from mecsim.errors import MecsimError
    from mecsim.scenario import scenario_from_dict

    try:
        scenario_from_dict(yaml.safe_load(text))
        return True
    except (MecsimError, yaml.YAMLError, UnicodeDecodeError, ValueError):
        return False


@pytest.mark.parametrize("chunk", range(4))
def test_malformed_scenarios_fail_cleanly(tmp_path, chunk):
    runner = CliRunner()
    old = signal.signal(signal.SIGALRM, _alarm)
    valid, checked = 0, 0
    try:
        for k, (label, content) in enumerate(CASES):
            if k % 4 != chunk:
                continue
            path = tmp_path / f"case{k}.yaml"
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
            if not isinstance(content, bytes) and _valid_anyway(content):
                valid += 1
                continue
            for cmd in (["validate", str(path)], ["run", str(path)]):
                signal.alarm(20)
                try:
                    r = runner.invoke(main, cmd)
                except _Timeout:
                    pytest.fail(f"hang on {label}: {cmd[0]}")
                finally:
                    signal.alarm(0)
                assert r.exit_code == 2, (label, cmd[0], r.output)
                assert _one_line_error(r), (label, cmd[0], r.output)
                checked += 1
    finally:
        signal.signal(signal.SIGALRM, old)
    assert valid <= 10  # the corpus must stay overwhelmingly malformed
    assert checked >= 90


@pytest.mark.parametrize("k", [0, 8, 12, 30, 60])
def test_malformed_scenarios_in_a_real_process(tmp_path, k):
    label, content = CASES[k]
    path = tmp_path / "case.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "mecsim.cli", "run", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, (label, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, (label, proc.stderr)


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                  st.lists(st.integers(-5, 5), max_size=3))


@given(path_index=st.integers(0, 10_000), value=_leaf, drop=st.booleans())
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_traceback_escapes_the_cli_for_generated_scenarios(tmp_path, path_index, value, drop):
    """Any scenario (valid or not) gives exit 0 or a one-line error with exit 2."""
    sc = tiny_scenario(duration_s=20.0)
    paths = [p for p in _paths(sc)]
    path = paths[path_index % len(paths)]
    try:
        if drop:
            _delete(sc, path)
        else:
            _set(sc, path, value)
    except (TypeError, KeyError, IndexError):
        return
    f = tmp_path / "gen.yaml"
    try:
        f.write_text(yaml.safe_dump(sc))
    except (yaml.YAMLError, UnicodeEncodeError):
        return
    r = CliRunner().invoke(main, ["run", str(f)])
    assert r.exit_code in (0, 2), r.output
    assert "Traceback" not in r.output
    if r.exit_code == 2:
        assert _one_line_error(r), r.output
