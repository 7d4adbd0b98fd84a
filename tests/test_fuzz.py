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

JUNK_VALUES = [
    "abc",
    "20 MHz",
    "23dBm",
    -1,
    -1e308,
    1e308,
    float("nan"),
    float("inf"),
    [],
    {"x": 1},
    None,
    True,
    "",
    [1, 2, 3],
]


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


REQUIRED = [
    ("devices",),
    ("servers",),
    ("devices", 0, "arrivals"),
    ("devices", 0, "workload"),
    ("devices", 0, "arrivals", "rate_per_s"),
    ("devices", 0, "workload", 0, "model"),
    ("servers", 0, "name"),
    ("servers", 0, "gpu"),
    ("servers", 1, "models"),
]

# (path, value) pairs that are wrong for sure: bad type, out of range, beyond the limits
OUT_OF_RANGE = [
    (("duration_s",), 0),
    (("duration_s",), -5),
    (("seed",), -1),
    (("radio", "bandwidth_hz"), 0),
    (("radio", "bandwidth_hz"), float("inf")),
    (("devices", 0, "count"), 0),
    (("devices", 0, "count"), 10**9),
    (("devices", 0, "arrivals", "rate_per_s"), 1e300),
    (("servers", 0, "slots"), 0),
    (("servers", 0, "slots"), 10**7),
    (("epoch", "length_s"), -1),
    (("epoch", "length_s"), 1e-9),
    (("radio", "fading"), {"coherence_time_s": 1e-12}),
    (("devices", 0, "workload", 0, "steps"), 1e12),
    (("devices", 0, "workload", 0, "steps"), 2.5),
    (("devices", 0, "workload", 0, "deadline_s"), -3),
    (("servers", 0, "models"), []),
    (("devices", 0, "workload"), []),
    (("deadline_action",), "explode"),
    (("service", "jitter", "distribution"), "pareto"),
    (("warmup_s",), 1e6),
    (("radio", "min_bandwidth_hz"), 1e12),
    (("devices", 0, "placement", "distance_m"), [300, 50]),
    (("devices", 0, "mobility"), {"model": "random-waypoint", "speed_mps": 1e9}),
    (("servers", 1, "name"), "a"),
    (("servers", 0, "gpu"), "no-such-gpu"),
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
    cases = [
        ("empty", ""),
        ("whitespace", "   \n\n"),
        ("null", "null"),
        ("number", "42"),
        ("list", "- a\n- b\n"),
        ("string", "hello"),
        ("bad yaml", "devices: [unclosed"),
        ("tabs", "devices:\n\t- count: 1"),
        ("binary", bytes(range(256))),
        ("binary junk", bytes(rng.getrandbits(8) for _ in range(512))),
        ("yaml tag", "!!python/object/apply:os.system ['echo pwned']"),
        ("deep", "a: " + "[" * 200 + "]" * 200),
    ]
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
    proc = subprocess.run(
        [sys.executable, "-m", "mecsim.cli", "run", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, (label, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, (label, proc.stderr)


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-5, 5), max_size=3),
)


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


# ---------------------------------------------------------------------------------------------
# issue 10: every bad input found escaping, through the real command line, bounded in time and
# memory. Each case: exit 2, one line on stderr naming the field, no traceback, nothing simulated.

import gzip  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
from pathlib import Path  # noqa: E402

_AS_LIMIT = 2**30  # 1 GiB of address space: an expansion fails loudly instead of eating the machine
_RSS_LIMIT_KB = 300 * 1024  # the bound on memory for refusing a bad input


def _limit_memory():  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (_AS_LIMIT, _AS_LIMIT))


def _cli(*args, timeout=60, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "mecsim.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limit_memory,
        cwd=cwd,
    )


def _cli_max_rss_kb(*args, timeout=20):
    """Run the CLI under a fresh wrapper process and return (exit code, stderr, peak RSS in kB of
    the CLI process alone: the wrapper's only child)."""
    code = (
        "import resource, subprocess, sys, json\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(json.dumps([r.returncode, r.stderr, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, sys.executable, "-m", "mecsim.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limit_memory,
    )
    return json.loads(proc.stdout)


def _assert_clean_error(proc_or_tuple, field):
    if isinstance(proc_or_tuple, subprocess.CompletedProcess):
        rc, err, out = proc_or_tuple.returncode, proc_or_tuple.stderr, proc_or_tuple.stdout
    elif hasattr(proc_or_tuple, "exit_code"):  # a CliRunner result
        rc, err, out = proc_or_tuple.exit_code, proc_or_tuple.stderr, proc_or_tuple.stdout
    else:
        (rc, err, _), out = proc_or_tuple, ""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("mecsim: error:"), err
    assert "Traceback" not in err and "Warning" not in err, err
    assert field in lines[0], (field, lines[0])
    assert "policy" not in lines[0], lines[0]  # an input error is never blamed on the policy
    assert "generated:" not in out  # nothing was simulated


def _alias_bomb(levels=9, width=10):
    lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for k in range(1, levels):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * width) + "]")
    lines.append(f"name: bomb\ndevices: *a{levels - 1}\nservers: []")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    (d / "bomb.yaml").write_text(_alias_bomb())
    with open(d / "50mb.yaml", "w") as fh:
        fh.write('name: big\ndescription: "')
        chunk = "x" * 2**20
        for _ in range(50):
            fh.write(chunk)
        fh.write('"\n')
    (d / "dense.yaml").write_text("a: [" + ",".join(["0"] * (2**20 - 8)) + "]\n")
    return d


@pytest.mark.parametrize("name", ["bomb.yaml", "50mb.yaml", "dense.yaml"])
@pytest.mark.parametrize("cmd", ["validate", "run"])
def test_huge_yaml_is_refused_in_bounded_time_and_memory(big_files, name, cmd):
    """The 9x10 alias bomb (10^9 nodes expanded), a 50 MB file and a 2 MB file dense with nodes:
    refused by the YAML reader's caps (the subprocess timeout bounds the time; the wrapper
    measures the CLI's peak RSS)."""
    rc, err, rss_kb = _cli_max_rss_kb(cmd, big_files / name, timeout=20)
    field = {"bomb.yaml": "aliases", "50mb.yaml": "MiB limit", "dense.yaml": "nodes"}[name]
    _assert_clean_error((rc, err, rss_kb), field)
    assert rss_kb < _RSS_LIMIT_KB, rss_kb


_SHARED_CHECK = """
import pytest
from mecsim.errors import ScenarioError
from mecsim.scenario import scenario_from_dict
from tests.conftest import tiny_scenario

node = ["x"] * 10
for _ in range(8):
    node = [node] * 10  # 10^9 leaves once copied, 90 objects in memory
with pytest.raises(ScenarioError, match="shared parts"):
    scenario_from_dict({"devices": node, "servers": []})
loop = {"name": "loop"}
loop["description"] = loop
with pytest.raises(ScenarioError, match="contains itself"):
    scenario_from_dict(loop)
ok = tiny_scenario()
ok["servers"][1]["models"] = ok["servers"][0]["models"]  # harmless sharing stays fine
assert scenario_from_dict(ok).servers[1].models == ["sd15", "sdxl"]
print("refused")
"""


def test_scenario_from_dict_refuses_shared_structures_without_expanding_them():
    """In a child process bounded to 1 GiB and 60 s, so that a regression (a deep copy that
    expands the structure) fails loudly instead of eating the machine."""
    proc = subprocess.run(
        [sys.executable, "-c", _SHARED_CHECK],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_memory,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 0 and "refused" in proc.stdout, proc.stderr[-2000:]


def _validate_and_run(path, field):
    """`validate` in a real process, `run` in-process (the same command code; keeps the suite fast)."""
    _assert_clean_error(_cli("validate", path, timeout=60), field)
    _assert_clean_error(CliRunner().invoke(main, ["run", str(path)]), field)


def _write(tmp_path, sc, name="sc.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(sc))
    return p


FIELD_CASES = [
    ("faults", {"servers": [{"server": "a", "mtbf_s": 1e-9, "mttr_s": 1e-9}]}, "faults.servers.0.mtbf_s"),
    ("faults", {"servers": [{"server": "a", "mtbf_s": 0.01, "mttr_s": 0.01}]}, "faults.servers.0.mtbf_s"),
    ("service", {"jitter": {"distribution": "lognormal", "cv": 1e308}}, "service.jitter.cv"),
    ("service", {"jitter": {"distribution": "exponential", "cv": 1e308}}, "service.jitter.cv"),
    (
        "radio",
        {"bandwidth_hz": 10e6, "path_loss": {"shadowing_std_db": 1e308}},
        "radio.path_loss.shadowing_std_db",
    ),
    ("radio", {"bandwidth_hz": 1e308}, "radio.bandwidth_hz"),
    ("radio", {"downlink": {"rate_bps": 1e308}}, "radio.downlink.rate_bps"),
    ("duration_s", 1e300, "duration_s"),
    ("drain_s", 1e300, "drain_s"),
    ("epoch", {"decision_time": {"mode": "fixed", "fixed_s": 1e300}}, "epoch.decision_time.fixed_s"),
]


@pytest.mark.parametrize("key,value,field", FIELD_CASES)
def test_unbounded_numbers_are_refused_before_the_run(tmp_path, key, value, field):
    sc = tiny_scenario(duration_s=1e5) if "0.01" in repr(value) else tiny_scenario()
    sc[key] = value
    _validate_and_run(_write(tmp_path, sc), field)


def test_count_true_and_negative_index_are_refused(tmp_path):
    sc = tiny_scenario()
    sc["devices"][0]["count"] = True
    _assert_clean_error(_cli("validate", _write(tmp_path, sc)), "devices.0.count")
    _assert_clean_error(_cli("run", "smoke-v1", "--set", "servers.-1.slots=2"), "servers.-1")
    _assert_clean_error(_cli("run", "smoke-v1", "--set", "devices.0.count=true"), "devices.0.count")


def test_set_seed_sets_the_seed(tmp_path):
    """--set seed=N is the seed of the run (it was a TypeError); --seed wins over it."""
    a = _cli("run", "smoke-v1", "--duration", "30", "--set", "seed=5", "--out", tmp_path / "a")
    assert a.returncode == 0, a.stderr
    assert "(seed 5," in a.stdout
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["seed"] == 5
    b = _cli("run", "smoke-v1", "--duration", "30", "--set", "seed=5", "--seed", "7")
    assert b.returncode == 0 and "(seed 7," in b.stdout, b.stderr
    _assert_clean_error(_cli("run", "smoke-v1", "--set", "seed=-1"), "seed")
    _assert_clean_error(_cli("run", "smoke-v1", "--set", "seed=abc"), "seed")


def _out_cases(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    cases = [f / "out", f, Path("/proc/mecsim-out"), Path("/proc/self/mecsim/out")]
    if os.geteuid() != 0:  # root writes through permission bits, so only a non-root run can test this
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        cases.append(ro / "out")
    return cases


def test_out_is_checked_before_the_run(tmp_path):
    """A long run (an hour of paper-medium) that would be simulated in full before failing to
    write: refused at once (the subprocess timeout bounds it well below the run's length)."""
    for out in _out_cases(tmp_path):
        proc = _cli("run", "paper-medium-v1", "--duration", "3600", "--out", out, timeout=30)
        _assert_clean_error(proc, "--out")


def _trace_scenario(tmp_path, trace_name, **arr):
    sc = tiny_scenario(duration_s=20.0)
    sc["devices"] = [
        {
            "count": 2,
            "arrivals": {"process": "trace", "path": trace_name, **arr},
            "workload": [{"model": "sd15"}],
        }
    ]
    return _write(tmp_path, sc)


def _gz_bomb(path):
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(b"time\n")
        line = b"1\n" * 2**19
        for _ in range(66):  # 66 MiB once decompressed, about 70 kB on disk
            fh.write(line)


TRACE_CASES = [
    ("missing.csv", None, {}, "devices.0.arrivals.path"),
    ("nocol.csv", "t,x\n1,2\n", {}, "devices.0.arrivals.time_column"),
    ("binary.csv", bytes(range(256)) * 4, {}, "devices.0.arrivals.path"),
    ("nan.csv", "time\n1\nnan\n3\n", {}, "devices.0.arrivals.time_column"),
    ("neg.csv", "time\n1\n-2\n3\n", {}, "devices.0.arrivals.time_column"),
    ("inf.csv", "time\n1\ninf\n", {}, "devices.0.arrivals.time_column"),
    ("text.csv", "time\n1\nsoon\n", {}, "devices.0.arrivals.time_column"),
    ("empty.csv", "", {}, "devices.0.arrivals.path"),
    ("header.csv", "time\n", {}, "devices.0.arrivals.path"),
    (
        "date.csv",
        "time\n2023-11-16 18:00:00\nyesterday\n",
        {"time_format": "datetime"},
        "devices.0.arrivals.time_column",
    ),
    (
        "size.csv",
        "time,tok\n1,5\n2,-5\n",
        {"input_bits_column": "tok"},
        "devices.0.arrivals.input_bits_column",
    ),
    (
        "size2.csv",
        "time,tok\n1,5\n2,nan\n",
        {"input_bits_column": "tok"},
        "devices.0.arrivals.input_bits_column",
    ),
    ("steps.csv", "time,st\n1,0\n", {"steps_column": "st"}, "devices.0.arrivals.steps_column"),
    ("dev.csv", "time,d\n1,0.5\n", {"device_column": "d"}, "devices.0.arrivals.device_column"),
    ("bad.csv.gz", b"not gzip at all", {}, "devices.0.arrivals.path"),
    ("bomb.csv.gz", "gzbomb", {}, "devices.0.arrivals.path"),
    ("folder", "dir", {}, "devices.0.arrivals.path"),
]


@pytest.mark.parametrize("name,content,arr,field", TRACE_CASES, ids=[c[0] for c in TRACE_CASES])
def test_trace_files_are_checked_by_validate_and_run(tmp_path, name, content, arr, field):
    target = tmp_path / name
    if content == "gzbomb":
        _gz_bomb(target)
    elif content == "dir":
        target.mkdir()
    elif isinstance(content, bytes):
        target.write_bytes(content)
    elif content is not None:
        target.write_text(content)
    _validate_and_run(_trace_scenario(tmp_path, name, **arr), field)


def test_unordered_trace_is_valid_and_replayed_in_time_order(tmp_path):
    (tmp_path / "t.csv").write_text("time\n3\n1\n2\n")
    p = _trace_scenario(tmp_path, "t.csv")
    v = _cli("validate", p)
    assert v.returncode == 0 and "3 trace rows" in v.stdout, v.stderr
    import mecsim

    res = mecsim.simulate(str(p))
    assert res.tasks.t_arrival.tolist() == [1.0, 2.0, 3.0]
