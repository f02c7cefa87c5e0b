"""dsa110ctl completes commands, services and message types in the shell (bash protocol)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CTL = Path(sys.executable).parent / "dsa110ctl"
SRC = Path(__file__).resolve().parents[3] / "src"


def complete(words: str) -> list[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "_DSA110CTL_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    done = subprocess.run([str(CTL)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("dsa110ctl dl", ["dlq"]),
        ("dsa110ctl dlq re", ["replay"]),
        ("dsa110ctl rec", ["recompute"]),
        ("dsa110ctl stop w", ["web", "watcher"]),
        ("dsa110ctl start pro", ["production", "processor"]),
        ("dsa110ctl dlq list --type MS", ["MS_PROCESSING"]),
    ],
)
def test_completion(words: str, expected: list[str]) -> None:
    assert complete(words) == expected


def test_the_completion_script_is_offered() -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [str(CTL), "--show-completion", "bash"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "_dsa110ctl_completion" in done.stdout
