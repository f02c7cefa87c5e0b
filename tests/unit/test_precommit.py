"""The pre-commit hooks run exactly what ``make lint`` runs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _make_lint() -> list[str]:
    text = (REPO / "Makefile").read_text()
    recipe = text.split("\nlint:", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    commands = [line.strip().replace("$(BIN)/", "") for line in recipe]
    return [re.sub(r"\$\(wildcard (\w+)\)", r"\1", c) for c in commands]


def test_the_hooks_are_make_lint() -> None:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    entries = [hook["entry"].removeprefix(".venv/bin/") for hook in hooks]
    assert entries == _make_lint()
    assert all(hook["pass_filenames"] is False for hook in hooks)  # whole tree, as make does
