"""Doctests over the whole package (``--doctest-modules`` with ``testpaths = ["tests", "mecsim"]``).

A module that needs an optional extra (qiskit, torch, gymnasium, dask, matplotlib, ...) is not
collected when that extra is missing, so the suite also runs on a core install; with the ``dev``
extra (CI) every module is collected.
"""

from __future__ import annotations

import importlib.util

# module (relative to this folder) -> the package its import needs
_NEEDS = {
    "mecsim/decision/qaoa.py": "qiskit",
    "mecsim/plots.py": "matplotlib",
    "mecsim/rl/env.py": "gymnasium",
}

collect_ignore = [path for path, package in _NEEDS.items() if importlib.util.find_spec(package) is None]
