"""The README's promises that are cheap to keep honest: its first commands and its settings table."""

from __future__ import annotations

import os
from dataclasses import fields

from common.core.settings import Settings
from tests.common.swarm.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def test_the_readme_opens_with_the_run_and_test_commands() -> None:
    opening = "\n".join(README.splitlines()[:8])
    assert "make run" in opening and "make test" in opening


def test_every_setting_is_documented_with_its_variable() -> None:
    missing = [f.name.upper() for f in fields(Settings) if f"| `{f.name.upper()}` |" not in README]
    assert missing == []


def test_ci_runs_the_same_command_as_a_developer() -> None:
    ci = REPO_ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    assert ci.read_text().splitlines()[-1] == "exec make test"
