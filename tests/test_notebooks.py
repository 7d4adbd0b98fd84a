"""The notebooks run from top to bottom without error (so they never rot) and show their figures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _kernel_manager():
    """A kernel on this very interpreter (not whatever "python3" means on the machine)."""
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    return km


@pytest.mark.parametrize("name", ["quickstart.ipynb", "comparison.ipynb"])
def test_notebook_runs(name, tmp_path, monkeypatch):
    if name == "comparison.ipynb":
        pytest.importorskip("sb3_contrib")  # it trains the RL baseline briefly
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    stored = [c for c in nb.cells if c.cell_type == "code"]
    # stored with their (small) outputs, so a reader sees results without running them
    assert any(c.outputs for c in stored), f"{name}: store the notebook with its outputs"
    assert not any(o.output_type == "error" for c in stored for o in c.outputs), f"{name}: stored an error"
    for c in stored:  # the test checks fresh outputs, not the stored ones
        c.outputs, c.execution_count = [], None
    monkeypatch.setenv("MECSIM_NOTEBOOK_OUT", str(tmp_path))  # the comparison writes here
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = nbclient.NotebookClient(
        nb, timeout=120, km=_kernel_manager(), resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # a cell that hangs fails at the client's timeout; no wall-time assertion here
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})
    ]
    assert len(images) >= 2, f"{name}: the figures were not displayed"
