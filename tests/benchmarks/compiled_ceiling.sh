#!/usr/bin/env bash
# What would compiling the engine buy? The engine benchmark on a copy of this checkout whose
# hottest modules (the run loop, epoch step, snapshot, dispatch, intake, GPU servers and the
# heuristics) are compiled, unchanged, by Cython into C extensions.
#
# Run: bash tests/benchmarks/compiled_ceiling.sh [engine.py options, default --rounds 3 --scale 0.5]
# Needs a C compiler and the Python headers, and fetches Cython and setuptools from PyPI into a
# throwaway virtual environment. mecsim does not ship compiled code: this measures the ceiling
# of that route (same Python source, same traces), for the speed discussion of the engine
# benchmark. Uses the python on PATH (or $PYTHON) for the benchmark itself, which must have
# mecsim's dependencies installed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="${PYTHON:-python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git -C "$here" archive --format=tar HEAD | tar -x -C "$work" --one-top-level=src
"$py" -m venv "$work/cy"
"$work/cy/bin/pip" install -q cython setuptools
cd "$work/src"
mv pyproject.toml pyproject.toml.off # cythonize must not read the project's build settings
"$work/cy/bin/cythonize" -i -3 -j 2 -q \
    mecsim/sim/core.py mecsim/sim/epoch.py mecsim/sim/dispatch.py mecsim/sim/server.py \
    mecsim/sim/snapshot.py mecsim/sim/intake.py mecsim/policies/heuristics.py >/dev/null
mv pyproject.toml.off pyproject.toml
PYTHONPATH="$work/src" "$py" -c 'import mecsim.sim.core as c; print("compiled:", c.__file__)'
if [ "$#" -eq 0 ]; then set -- --rounds 3 --scale 0.5; fi
PYTHONPATH="$work/src" "$py" "$work/src/tests/benchmarks/engine.py" "$@"
