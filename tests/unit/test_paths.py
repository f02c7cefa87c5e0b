"""paths.confine: a message's path must resolve inside the data roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsa110d.errors import PathOutsideRootsError
from dsa110d.paths import confine


def test_a_path_inside_a_root_resolves(tmp_path: Path) -> None:
    root = tmp_path / "results"
    (root / "photometry").mkdir(parents=True)
    assert confine(str(root / "photometry" / "b.parquet"), [root]) == (
        root.resolve() / "photometry" / "b.parquet"
    )
    assert confine(root, [tmp_path / "ms", root]) == root.resolve()


@pytest.mark.parametrize(
    "make",
    [
        lambda t: "/etc/passwd",
        lambda t: f"{t}/results/../outside",
        lambda t: f"{t}/results-sibling/x",  # a name that merely starts like a root
        lambda t: "results/relative",
        lambda t: "",
        lambda t: f"{t}/results/a\x00b",
    ],
)
def test_paths_outside_the_roots_are_refused(tmp_path: Path, make: object) -> None:
    (tmp_path / "results").mkdir()
    with pytest.raises(PathOutsideRootsError):
        confine(make(str(tmp_path)), [tmp_path / "results"])  # type: ignore[operator]


def test_a_symlink_out_of_the_roots_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "results", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(PathOutsideRootsError, match="outside the data roots"):
        confine(str(root / "link" / "file"), [root])
