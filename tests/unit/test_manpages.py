"""The man pages build from their one source format (scdoc), render with ``man -l``, and
document every command and option of both programs and every configuration key."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from dsa110d.cli import ctl, daemon
from dsa110d.config import Config

MAN_DIR = Path(__file__).resolve().parents[2] / "man"
PAGES = {"dsa110d": "dsa110d.8", "dsa110ctl": "dsa110ctl.1", "yaml": "dsa110d.yaml.5"}

# scdoc and man (Debian's scdoc, man-db) come from `make test-deps`: without them this fails.


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each page built with scdoc and rendered by man as plain text (no hyphenation)."""
    out = tmp_path_factory.mktemp("man")
    texts = {}
    for key, page in PAGES.items():
        source = (MAN_DIR / f"{page}.scd").read_text()
        built = subprocess.run(["scdoc"], input=source, capture_output=True, text=True, check=False)
        assert built.returncode == 0, f"scdoc {page}.scd: {built.stderr}"
        (out / page).write_text(built.stdout)
        shown = subprocess.run(
            ["man", "--nh", "--nj", "-l", str(out / page)],
            capture_output=True,
            text=True,
            env={**os.environ, "MANWIDTH": "200", "MANPAGER": "cat", "LC_ALL": "C.UTF-8"},
            check=False,
        )
        assert shown.returncode == 0 and not shown.stderr.strip(), f"man -l {page}: {shown.stderr}"
        texts[key] = shown.stdout
    return texts


def commands(app: typer.Typer) -> Iterator[tuple[str, Any]]:
    """(path, click command) for the program and every command and subcommand under it."""

    def walk(command: Any, path: list[str]) -> Iterator[tuple[str, Any]]:
        yield " ".join(path), command
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def options(command: Any) -> list[str]:
    return [o for p in command.params if p.param_type_name == "option" for o in p.opts]


def entries(text: str) -> set[str]:
    """The first words of each indented line: where a command or key is introduced."""
    return {line.strip() for line in text.splitlines() if line.strip()}


@pytest.mark.parametrize(("program", "app"), [("dsa110d", daemon.app), ("dsa110ctl", ctl.app)])
def test_every_command_and_option_is_documented(
    rendered: dict[str, str], program: str, app: typer.Typer
) -> None:
    text = rendered[program]
    lines = entries(text)
    for path, command in commands(app):
        if path and not getattr(command, "commands", None):
            assert any(line == path or line.startswith(path + " ") for line in lines), (
                f"{program}({PAGES[program][-1]}) does not introduce the command {path!r}"
            )
        for option in options(command):
            assert option in text, f"{program}: option {option} of {path or program!r} missing"


def leaf_keys(data: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from leaf_keys(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def test_every_config_key_is_documented(rendered: dict[str, str]) -> None:
    lines = entries(rendered["yaml"])
    keys = list(leaf_keys(Config().model_dump()))
    assert len(keys) > 50
    missing = [k for k in keys if not any(line.startswith(k + " ") for line in lines)]
    assert missing == [], f"dsa110d.yaml(5) does not document {missing}"


def test_pages_name_themselves_and_refer_to_each_other(rendered: dict[str, str]) -> None:
    for key, page in PAGES.items():
        name, section = page.rsplit(".", 1)
        text = rendered[key]
        assert text.startswith(f"{name}({section})")
        others = [
            f"{p.rsplit('.', 1)[0]}({p.rsplit('.', 1)[1]})" for p in PAGES.values() if p != page
        ]
        assert all(other in text for other in others), f"{page} lacks SEE ALSO {others}"
