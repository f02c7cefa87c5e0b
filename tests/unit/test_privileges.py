"""Least privilege: no root without permission, a umask that keeps outputs from the world,
a private state directory."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsa110d.errors import ConfigError
from dsa110d.privileges import DAEMON_UMASK, refuse_root, root_allowed, secure_process
from dsa110d.science.atomic import atomic_dir, atomic_file


@pytest.fixture
def restore_umask() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def test_root_is_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError, match=r"refusing to run as root.*--allow-root"):
        refuse_root(False, euid=0)
    refuse_root(True, euid=0)
    refuse_root(False, euid=1000)


def test_root_may_be_allowed_by_flag_or_environment() -> None:
    assert root_allowed(True, {})
    assert root_allowed(False, {"DSA110_ALLOW_ROOT": "1"})
    assert root_allowed(False, {"DSA110_ALLOW_ROOT": "yes"})
    assert not root_allowed(False, {"DSA110_ALLOW_ROOT": "0"})
    assert not root_allowed(False, {})


def test_the_state_dir_becomes_private(tmp_path: Path, restore_umask: None) -> None:
    state = tmp_path / "state"
    secure_process(state, create=True)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert os.umask(DAEMON_UMASK) == DAEMON_UMASK
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    secure_process(loose, create=False)  # an existing one is tightened
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    secure_process(tmp_path / "absent", create=False)  # not created unless asked
    assert not (tmp_path / "absent").exists()


def test_outputs_are_group_readable_and_not_world_accessible(
    tmp_path: Path, restore_umask: None
) -> None:
    secure_process(tmp_path / "state", create=True)
    with atomic_dir(tmp_path / "ms" / "set.ms") as temp:
        (temp / "table.dat").write_bytes(b"x")  # as casacore would, under the umask
    with atomic_file(tmp_path / "results" / "block.parquet") as temp:
        temp.write_bytes(b"x")
    made = [
        tmp_path / "ms" / "set.ms",
        tmp_path / "ms" / "set.ms" / "table.dat",
        tmp_path / "results" / "block.parquet",
    ]
    for path in made:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o040, f"{path} not group-readable: {mode:o}"
        assert not mode & 0o007, f"{path} open to the world: {mode:o}"
