"""The README's set-up commands match .ci/run, and its Python examples run."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = _bash_blocks(readme)
    test_cmd = blocks[1].strip()
    assert "pytest" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in [ln.strip() for ln in ci]
    assert "mecsim run" in blocks[0]


def test_readme_python_examples_run(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    monkeypatch.chdir(tmp_path)
    for block in re.findall(r"```python\n(.*?)```", readme, flags=re.S):
        if "runs/example" in block:  # the analysis example reads the example sweep's output
            from mecsim.sweep import run_sweep

            run_sweep(ROOT / "scenarios" / "sweeps" / "example.yaml", "runs/example", workers=1,
                      progress=False)
        exec(compile(block, "README.md", "exec"), {})


def test_readme_policy_example_passes_check_policy():
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S)
                 if "class ShortestQueue" in b)
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    import mecsim

    assert mecsim.check_policy(ns["ShortestQueue"])["ok"]
