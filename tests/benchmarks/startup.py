"""Start-up benchmark: how long ``import mecsim`` and ``mecsim --help`` take, and what they import.

Run: ``python tests/benchmarks/startup.py [--repeats 7]``.

Each command runs in a fresh interpreter (``sys.executable``), ``--repeats`` times; the median wall
time is printed, next to the bare interpreter start (``python -c pass``) and the ratio to it. Then
each command is run once more with a ``sys.modules`` check that lists the heavy libraries it
imported (none is the goal: they load when first used). Target: ``mecsim --help`` under 0.5 s on a
quiet machine. The machine is shared: compare the ratios from one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "scipy.optimize",
    "pandas",
    "dimod",
    "qiskit",
    "torch",
    "dask",
    "matplotlib",
    "pyarrow",
    "scipy",
    "numpy",
    "simpy",
    "pydantic",
)

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "import mecsim": ["-c", "import mecsim"],
    "mecsim --help": ["-m", "mecsim.cli", "--help"],
    "mecsim run --help": ["-m", "mecsim.cli", "run", "--help"],
    "mecsim list": ["-m", "mecsim.cli", "list"],
}

# runs a command's code in this interpreter, then prints the heavy modules it left in sys.modules
_PROBE = f"""
import runpy, sys
HEAVY = {HEAVY!r}
args = sys.argv[1:]
if args[0] == "-c":
    exec(compile(args[1], "<cmd>", "exec"), {{"__name__": "__main__"}})
else:
    sys.argv = [args[1], *args[2:]]
    try:
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
print("\\nHEAVY:" + ",".join(m for m in HEAVY if m in sys.modules), file=sys.stderr)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def wall(args: list[str], repeats: int) -> float:
    """Median wall time (s) of ``python *args`` in a fresh process."""
    times = []
    env = _env()
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, *args],
            env=env,
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def heavy_modules(args: list[str]) -> list[str]:
    """The heavy modules in ``sys.modules`` after running ``python *args``."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        env=_env(),
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY:")][-1]
    return [m for m in line[len("HEAVY:") :].split(",") if m]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    opts = ap.parse_args()
    base = wall(COMMANDS["python -c pass"], opts.repeats)
    print(f"{'command':<20} {'median s':>9} {'x python':>9}  heavy modules imported")
    for label, args in COMMANDS.items():
        t = base if label == "python -c pass" else wall(args, opts.repeats)
        heavy = "-" if label == "python -c pass" else (", ".join(heavy_modules(args)) or "none")
        print(f"{label:<20} {t:>9.3f} {t / base:>9.2f}  {heavy}")
    t_help = wall(COMMANDS["mecsim --help"], opts.repeats)
    print(
        f"mecsim --help: {t_help:.3f} s median of {opts.repeats} (target < 0.5 s): "
        f"{'ok' if t_help < 0.5 else 'SLOW'}"
    )


if __name__ == "__main__":
    main()
