"""The watcher's pure rules: settling, the watched-tree check, set choice, timeouts, payload."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest

from dsa110d.errors import InputFileError
from dsa110d.science import constants as k
from dsa110d.science.hdf5.ingest import (
    BY_NAME_SUFFIX,
    Look,
    by_name_set_id,
    disagreement,
    incomplete_action,
    is_settled,
    look_at,
    move_files,
    nearest_set,
    probe_files,
    resolve_inside,
    settle_wait_sec,
)
from dsa110d.science.hdf5.subbands import subband_file_name
from tests.unit.science.hdf5.probekit import (
    N_BLTS,
    N_FREQS,
    N_POLS,
    START,
    header,
    replace,
    write_subband,
)


def test_a_file_untouched_for_the_interval_needs_no_wait() -> None:
    look = Look(10, mtime_ns=1_000_000_000, is_regular=True)
    assert settle_wait_sec(look, now_ns=1_500_000_000, interval_sec=0.2) == 0.0
    assert settle_wait_sec(look, now_ns=1_050_000_000, interval_sec=0.2) == pytest.approx(0.15)


def test_settled_needs_two_equal_looks(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    first = look_at(path)
    assert is_settled(first, look_at(path))
    with path.open("ab") as f:
        f.write(b"d")
    assert not is_settled(first, look_at(path))
    assert not is_settled(None, None)
    assert look_at(tmp_path / "gone") is None


def test_resolve_inside_refuses_a_symlink_out(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    (tmp_path / "out.hdf5").write_bytes(b"x")
    os.symlink(tmp_path / "out.hdf5", root / "a.hdf5")
    with pytest.raises(InputFileError, match="symlink points outside the watched directory"):
        resolve_inside(root / "a.hdf5", root)
    (root / "b.hdf5").write_bytes(b"y")
    assert resolve_inside(root / "b.hdf5", root) == (root / "b.hdf5").resolve()


def test_nearest_set_prefers_timed_sets_within_tolerance() -> None:
    sets = [("A", 100.0), ("B" + BY_NAME_SUFFIX, 101.0), ("C", 400.0)]
    assert nearest_set(102.0, sets, 60) == "A"
    assert nearest_set(101.0, [("B" + BY_NAME_SUFFIX, 101.0)], 60) == "B" + BY_NAME_SUFFIX
    assert nearest_set(250.0, sets, 60) is None
    assert by_name_set_id(0.0) == "1970-01-01T00:00:00" + BY_NAME_SUFFIX


def test_disagreement_names_the_file_and_the_set() -> None:
    path = "/in/2026-03-20T06:00:03_sb03.hdf5"
    others = ["/in/2026-03-20T06:00:01_sb00.hdf5"]
    reason = disagreement(path, 2461119.75 + 1 / 86400, "S", 2461119.75, others, 60)
    assert reason is not None and path in reason and "set S" in reason and "+1.000 s" in reason
    assert disagreement(path, 2461119.75, "S", 2461119.75, others, 60) is None
    far = ["/in/2026-03-20T07:00:01_sb00.hdf5"]
    assert disagreement(path, 2461119.76, "S", 2461119.75, far, 60) is None


@pytest.mark.parametrize(
    ("policy", "age", "n", "action"),
    [
        ("wait", 10, 3, "none"),
        ("wait", 301, 3, "wait"),
        ("partial", 301, 3, "partial"),
        ("partial", 301, 0, "fail"),
        ("fail", 301, 3, "fail"),
    ],
)
def test_incomplete_action(policy: str, age: float, n: int, action: str) -> None:
    assert incomplete_action(policy, age, 300, n) == action


def test_move_files_moves_content_unchanged_and_is_repeatable(tmp_path: Path) -> None:
    src = tmp_path / "in" / "a.hdf5"
    src.parent.mkdir()
    src.write_bytes(b"payload")
    moved = move_files([str(src)], tmp_path / "done")
    assert moved == [str(tmp_path / "done" / "a.hdf5")]
    assert Path(moved[0]).read_bytes() == b"payload" and not src.exists()
    assert move_files([str(src)], tmp_path / "done") == []


# --- The fault boundary of one file (probe_files, what the probe process runs) ------------


def _one_fault(path: Path, root: Path, fragment: str) -> dict[str, object]:
    """probe_files on a good file and ``path``: the good one is read, ``path`` is one
    ``bad_file`` outcome whose one-line reason names it and says ``fragment``."""
    good = write_subband(root, START + timedelta(hours=1), subband=1)
    found = probe_files([str(path), str(good)], str(root))
    assert [o["path"] for o in found] == [str(path), str(good)]
    assert found[1]["ok"] is True
    fault = found[0]
    assert fault["ok"] is False and fault["kind"] == "bad_file", fault
    reason = str(fault["reason"])
    assert reason.startswith(str(path)) and "\n" not in reason, reason
    assert fragment in reason, reason
    return fault


def test_a_symlink_to_itself_is_a_file_fault_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / subband_file_name(START, 0)
    path.symlink_to(path)  # Path.resolve() raises RuntimeError (3.11) on the loop
    _one_fault(path, tmp_path, "ymlink loop")


def test_an_absurd_but_finite_time_is_a_file_fault_not_an_overflow(tmp_path: Path) -> None:
    path = write_subband(tmp_path)
    replace(path, "Header/time_array", np.full(N_BLTS, 1e300))  # the set id overflowed
    _one_fault(path, tmp_path, "not a time of the instrument's era")


@pytest.mark.parametrize("jd_value", [k.ERA_START_JD - 1, k.ERA_END_JD + 1, float("nan")])
def test_a_time_outside_the_instruments_era_is_a_file_fault(
    tmp_path: Path, jd_value: float
) -> None:
    path = write_subband(tmp_path)
    replace(path, "Header/time_array", np.full(N_BLTS, jd_value))
    _one_fault(path, tmp_path, "not a time of the instrument's era")


def test_a_header_dataset_declared_astronomically_large_is_a_file_fault(tmp_path: Path) -> None:
    """Nfreqs and every array sized by it declare 2**50 channels (unallocated chunks: the
    file stays small); reading freq_array whole raised MemoryError."""
    path = write_subband(tmp_path)
    huge = 2**50
    replace(path, "Header/Nfreqs", np.int64(huge))
    replace(path, "Header/freq_array", shape=(huge,), dtype="f8", chunks=(1024,))
    for name in ("visdata", "flags", "nsamples"):
        shape = (N_BLTS, 1, huge, N_POLS)
        replace(path, f"Data/{name}", shape=shape, dtype="c8", chunks=(1, 1, 1024, 1))
    assert path.stat().st_size < 100_000
    _one_fault(path, tmp_path, "more than a")


def test_a_scalar_declared_astronomically_large_is_a_file_fault(tmp_path: Path) -> None:
    path = write_subband(tmp_path)
    replace(path, "Header/Nblts", shape=(2**50,), dtype="i8", chunks=(1024,))
    _one_fault(path, tmp_path, "declares 9007199254740992 bytes to read")


@pytest.mark.parametrize("dec", [float("nan"), float("inf"), 1.6, -1.6])
def test_a_declination_that_is_no_declination_is_a_file_fault(tmp_path: Path, dec: float) -> None:
    path = write_subband(tmp_path)
    replace(path, "Header/extra_keywords/phase_center_dec", np.float64(dec))
    _one_fault(path, tmp_path, "is not a declination")


@pytest.mark.parametrize("freq", [float("nan"), float("inf"), -1.4e9, 0.0, 5e6, 2e12])
def test_a_frequency_outside_the_radio_band_is_a_file_fault(tmp_path: Path, freq: float) -> None:
    path = write_subband(tmp_path)
    values = np.full(N_FREQS, k.SB00_TOP_FREQ_HZ)
    values[-1] = freq
    replace(path, "Header/freq_array", values)
    _one_fault(path, tmp_path, "outside the radio band")


@pytest.mark.parametrize("integration", [0.0, -12.9, 1e9])
def test_an_impossible_integration_time_is_a_file_fault(tmp_path: Path, integration: float) -> None:
    path = write_subband(tmp_path)
    replace(path, "Header/integration_time", np.full(N_BLTS, integration))
    _one_fault(path, tmp_path, "integration_time[0]")


def test_a_name_that_disagrees_with_the_files_own_time_is_a_file_fault(tmp_path: Path) -> None:
    """The name says 06:10, the header 06:00: not within the nodes' clock tolerance (a name a
    few seconds off, as the nodes' clocks are, is accepted)."""
    source = write_subband(tmp_path, START)
    moved = tmp_path / subband_file_name(START + timedelta(minutes=10), 0)
    source.rename(moved)
    _one_fault(moved, tmp_path, "from the file's own start")
    near = write_subband(tmp_path, name=subband_file_name(START + timedelta(seconds=4), 2))
    (found,) = probe_files([str(near)], str(tmp_path))
    assert found["ok"] is True and found["set_id"] == "2026-03-20T06:00:00"


def test_an_external_link_is_a_file_fault(tmp_path: Path) -> None:
    """A dataset that lives in another file (anywhere on the machine) is not read as this one's."""
    other = tmp_path / "elsewhere.h5"
    with h5py.File(other, "w") as f:
        f["freq"] = header()["freq_array"]
    path = write_subband(tmp_path)
    replace(path, "Header/freq_array", h5py.ExternalLink(str(other), "/freq"))
    _one_fault(path, tmp_path, "external link")
