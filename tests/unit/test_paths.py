"""The one path check (dsa110d.paths): inside the roots after resolving symlinks and ``..``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsa110d.errors import PathOutsideRootsError
from dsa110d.paths import inside_roots, paths_inside


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    made = [tmp_path / "incoming", tmp_path / "ms"]
    for r in made:
        r.mkdir()
    return made


def test_a_path_inside_a_root_comes_back_resolved(roots: list[Path]) -> None:
    f = roots[0] / "a.hdf5"
    f.touch()
    assert inside_roots(str(roots[0] / "sub" / ".." / "a.hdf5"), roots) == f.resolve()
    assert inside_roots(str(roots[1] / "not-yet.ms"), roots) == (roots[1] / "not-yet.ms").resolve()


def test_a_symlink_out_of_the_roots_is_refused_naming_where_it_leads(
    roots: list[Path], tmp_path: Path
) -> None:
    target = tmp_path / "secret"
    target.write_text("x")
    link = roots[0] / "a.hdf5"
    os.symlink(target, link)
    with pytest.raises(PathOutsideRootsError, match=f"resolves to {target}"):
        inside_roots(str(link), roots, "message m payload.paths[0]")


def test_a_symlinked_directory_escaping_is_refused(roots: list[Path], tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, roots[0] / "dir")
    with pytest.raises(PathOutsideRootsError):
        inside_roots(str(roots[0] / "dir" / "x.hdf5"), roots)


def test_a_symlinked_root_is_resolved_too(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "alias")
    assert inside_roots(str(real / "x"), [tmp_path / "alias"]) == (real / "x").resolve()


@pytest.mark.parametrize(
    "bad", ["../outside/x.hdf5", "", "relative/x.hdf5", 42, None, "/etc/passwd", "/a\x00b"]
)
def test_anything_else_is_refused_in_one_line(roots: list[Path], bad: object) -> None:
    if isinstance(bad, str) and bad.startswith(".."):
        bad = str(roots[0]) + "/" + bad
    with pytest.raises(PathOutsideRootsError) as info:
        inside_roots(bad, roots, "message m payload.paths[0]")
    assert "\n" not in str(info.value) and str(info.value).startswith("message m")


def test_a_sibling_with_a_common_prefix_is_not_inside(roots: list[Path]) -> None:
    sibling = Path(str(roots[0]) + "-evil")
    sibling.mkdir()
    with pytest.raises(PathOutsideRootsError):
        inside_roots(str(sibling / "x"), roots)


def test_lists_are_checked_element_by_element(roots: list[Path]) -> None:
    assert len(paths_inside([str(roots[0] / "a"), str(roots[1] / "b")], roots)) == 2
    with pytest.raises(PathOutsideRootsError, match=r"paths\[1\]"):
        paths_inside([str(roots[0] / "a"), "/etc/passwd"], roots)
    bad: object
    for bad in ([], "not a list", None):
        with pytest.raises(PathOutsideRootsError):
            paths_inside(bad, roots)
