"""The README's two set-up commands: each makes its own virtual environment, and .ci/run runs
the test command exactly as the README writes it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_two_setup_commands_each_in_a_virtual_environment():
    commands = setup_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    venv = "python3 -m venv .venv && . .venv/bin/activate && "
    assert all(c.startswith(venv) for c in commands)
    assert commands[0].endswith("pip install torch==2.13.0 . && ssd-explorer")
    assert commands[1].endswith('pip install torch==2.13.0 -e ".[dev]" && python -m pytest')


def test_ci_runs_the_readme_test_command_in_a_fresh_venv():
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    body = [x for x in lines if x.strip() and not x.startswith("#")]
    assert body[-1] == setup_commands()[1]
    assert "rm -rf .venv" in body  # a fresh environment, not one left by an earlier run
