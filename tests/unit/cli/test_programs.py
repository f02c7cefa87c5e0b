"""Both programs answer --version and --help, and `config show` hides secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsa110d import __version__

BIN = Path(sys.executable).parent
SERVICES_YAML = Path(__file__).resolve().parents[3] / "etc" / "dsa110" / "services.yaml"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if env is not None and "PYTHONPATH" in os.environ:  # the source under test, not main's
        env = {"PYTHONPATH": os.environ["PYTHONPATH"], **env}
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.parametrize("program", ["dsa110d", "dsa110ctl"])
def test_version_and_help(program: str) -> None:
    version = run(program, "--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"dsa110d {__version__}"
    helptext = run(program, "--help")
    assert helptext.returncode == 0
    assert "Usage" in helptext.stdout


def test_config_show_redacts_the_password() -> None:
    done = run(
        "dsa110ctl",
        "config",
        "show",
        "--env",
        "production",
        "--config",
        str(SERVICES_YAML),
        "--json",
        env={"DSA110__REDIS__PASSWORD": "pa55-word-xyz", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["redis"]["password"] == "***"
    assert "pa55-word-xyz" not in done.stdout
    assert shown["env"] == "production"


def test_unknown_service_is_a_usage_error() -> None:
    done = run("dsa110d", "run", "--services", "watcher,imager", "--config", str(SERVICES_YAML))
    assert done.returncode == 2
    assert "unknown service 'imager'" in done.stderr


def test_an_unusable_output_path_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    args = ["--start", "2026-03-20T06:00:00", "--sets", "1", "--scale", "tiny", "--subbands", "1"]
    done = run("dsa110d", "simulate", "--out", str(blocker / "x"), *args)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert str(blocker) in done.stderr


def test_config_show_redacts_a_password_in_the_url_query_string() -> None:
    done = run(
        "dsa110ctl",
        "config",
        "show",
        "--env",
        "production",
        "--config",
        str(SERVICES_YAML),
        env={
            "DSA110__REDIS__URL": "redis://db.example:6379/0?password=qs-s3cret&db=0",
            "PATH": "/usr/bin:/bin",
        },
    )
    assert done.returncode == 0, done.stderr
    assert "qs-s3cret" not in done.stdout
    assert "redis://db.example:6379/0?password=***&db=0" in done.stdout
