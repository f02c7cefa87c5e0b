"""Subband names, the read-only probe of a subband file, and grouping subbands into sets."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsa110d.errors import InputFileError
from dsa110d.science import constants as k
from dsa110d.science.hdf5.probe import probe_subband
from dsa110d.science.hdf5.sets import SubbandFile, group_subbands, time_disagreement
from dsa110d.science.hdf5.subbands import (
    ignore_reason,
    parse_subband_name,
    set_id_from_time,
    subband_file_name,
)
from dsa110d.science.simulation.layout import SCALES, subband_frequencies_hz
from dsa110d.science.simulation.simulate import SimulationResult

JD_2026 = 2461120.5
"""A Julian date in 2026, for synthetic grouping keys."""


# --- Names ---------------------------------------------------------------------------------


def test_parses_the_real_name() -> None:
    name = parse_subband_name("/data/incoming/2026-03-20T06:00:04_sb07.hdf5")
    assert name is not None
    assert name.timestamp == datetime(2026, 3, 20, 6, 0, 4, tzinfo=UTC)
    assert name.subband == 7


@pytest.mark.parametrize(
    "name",
    [
        "2026-03-20T06:00:04_sb07_incomplete.hdf5",
        "2026-03-20T06:00:04_sb7.hdf5",
        "2026-03-20T06:00:04_sb07.hdf5.tmp",
        "2026-13-45T06:00:04_sb07.hdf5",  # matches the regex, is no date
        "x2026-03-20T06:00:04_sb07.hdf5",
        "truth.json",
    ],
)
def test_rejects_names_that_are_not_subbands(name: str) -> None:
    assert parse_subband_name(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "\u0662026-03-20T06:00:04_sb07.hdf5",  # ARABIC-INDIC DIGIT TWO: int() reads it as 2
        "2026-03-20T06:00:04_sb\u0660\u0667.hdf5",
        "\uff12\uff10\uff12\uff16-03-20T06:00:04_sb07.hdf5",  # fullwidth digits
    ],
)
def test_only_ascii_digits_make_a_subband_name(name: str) -> None:
    assert parse_subband_name(name) is None
    assert ignore_reason(name, "*") is not None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("2026-03-20T06:00:04_sb07_incomplete.hdf5", "still being written"),
        (".2026-03-20T06:00:04_sb07.hdf5.a1B2c3", "rsync temporary"),
        ("truth.json", "does not match"),
        ("notes_sb01.hdf5", "does not match"),
        ("2026-03-20T06_sb01.hdf5", "not a subband file name"),
    ],
)
def test_ignore_reasons(name: str, reason: str) -> None:
    assert reason in (ignore_reason(name) or "")


def test_a_real_name_is_not_ignored_unless_the_pattern_excludes_it() -> None:
    assert ignore_reason("2026-03-20T06:00:04_sb07.hdf5") is None
    assert "does not match" in (
        ignore_reason("2026-03-20T06:00:04_sb07.hdf5", "*_sb0[0-3].hdf5") or ""
    )


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
        lambda d: d.replace(microsecond=0, tzinfo=UTC)
    ),
    st.integers(0, 99),
)
def test_file_names_round_trip(moment: datetime, subband: int) -> None:
    name = subband_file_name(moment, subband)
    parsed = parse_subband_name(name)
    assert parsed is not None and (parsed.timestamp, parsed.subband) == (moment, subband)
    assert ignore_reason(name) is None
    assert ignore_reason(subband_file_name(moment, subband, incomplete=True)) is not None


# --- Probe ---------------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_probe_reads_the_key_facts_without_changing_the_file(tiny_run: SimulationResult) -> None:
    path = next(p for p in tiny_run.files if p.name.endswith("_sb01.hdf5"))
    before, mtime = _digest(path), path.stat().st_mtime_ns
    probe = probe_subband(path)
    assert _digest(path) == before and path.stat().st_mtime_ns == mtime
    scale = SCALES["tiny"]
    with h5py.File(path, "r") as f:
        assert probe.time0_jd == f["Header/time_array"][0]
    assert probe.subband == 1 and probe.size_bytes == path.stat().st_size
    assert probe.n_freqs == scale.channels_per_subband and probe.n_pols == 2
    assert probe.n_blts == scale.n_baselines * scale.integrations
    assert probe.n_ants_data == scale.n_antennas
    freqs = subband_frequencies_hz(scale, 1)
    assert probe.freq_max_hz == freqs.max() and probe.freq_min_hz == freqs.min()
    assert probe.phase_center_dec_rad == pytest.approx(k.OVRO_LAT_RAD, abs=1e-12)
    assert probe.set_id in tiny_run.set_ids


def _copy(tiny_run: SimulationResult, tmp_path: Path) -> Path:
    source = tiny_run.files[0]
    target = tmp_path / source.name
    shutil.copyfile(source, target)
    return target


def _expect(path: Path, fragment: str) -> None:
    with pytest.raises(InputFileError) as info:
        probe_subband(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert fragment in message, message
    assert "\n" not in message


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "2026-03-20T06:00:04_sb00.hdf5"
    path.touch()
    _expect(path, "zero-byte")


def test_truncated_file(tiny_run: SimulationResult, tmp_path: Path) -> None:
    path = _copy(tiny_run, tmp_path)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    _expect(path, "truncated or corrupt")


def test_truncated_within_the_data(tiny_run: SimulationResult, tmp_path: Path) -> None:
    path = _copy(tiny_run, tmp_path)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size - 1000)
    _expect(path, "truncated or corrupt")


def test_corrupt_file(tiny_run: SimulationResult, tmp_path: Path) -> None:
    path = _copy(tiny_run, tmp_path)
    with path.open("r+b") as handle:
        handle.write(os.urandom(2048))  # the superblock and the root group are gone
    _expect(path, "truncated or corrupt")


def test_not_hdf5_at_all(tmp_path: Path) -> None:
    path = tmp_path / "2026-03-20T06:00:04_sb00.hdf5"
    path.write_text("this is a text file\n")
    _expect(path, "truncated or corrupt")


def test_wrong_shape(tiny_run: SimulationResult, tmp_path: Path) -> None:
    path = _copy(tiny_run, tmp_path)
    with h5py.File(path, "r+") as f:
        shape = f["Data/visdata"].shape
        del f["Data/visdata"]
        f["Data"].create_dataset("visdata", shape=(shape[0], 1, shape[2] - 1, 2), dtype="c8")
    _expect(path, "wrong shape: Data/visdata")


def test_header_disagrees_with_itself(tiny_run: SimulationResult, tmp_path: Path) -> None:
    path = _copy(tiny_run, tmp_path)
    with h5py.File(path, "r+") as f:
        f["Header/Nblts"][()] = f["Header/Nblts"][()] + 1
    _expect(path, "wrong shape")


def test_missing_header_dataset(tiny_run: SimulationResult, tmp_path: Path) -> None:
    path = _copy(tiny_run, tmp_path)
    with h5py.File(path, "r+") as f:
        del f["Header/time_array"]
    _expect(path, "missing time_array")


def test_missing_datasets_are_all_named(tiny_run: SimulationResult, tmp_path: Path) -> None:
    path = _copy(tiny_run, tmp_path)
    with h5py.File(path, "r+") as f:
        del f["Header/Nants_data"]
        del f["Data/flags"]
    _expect(path, "missing Nants_data, Data/flags")


def test_a_header_group_where_a_dataset_belongs_is_missing(
    tiny_run: SimulationResult, tmp_path: Path
) -> None:
    path = _copy(tiny_run, tmp_path)
    with h5py.File(path, "r+") as f:
        del f["Header/uvw_array"]
        f["Header"].create_group("uvw_array")
    _expect(path, "missing uvw_array")


def test_a_count_that_is_not_one_number(tiny_run: SimulationResult, tmp_path: Path) -> None:
    path = _copy(tiny_run, tmp_path)
    with h5py.File(path, "r+") as f:
        del f["Header/Nblts"]
        f["Header"].create_dataset("Nblts", data=[1, 2])
    _expect(path, "Header/Nblts holds 2 values, not one")


def test_the_probe_leaves_no_file_open(tiny_run: SimulationResult, tmp_path: Path) -> None:
    """Good files and each kind of failure close the file (the watcher probes thousands)."""
    truncated = _copy(tiny_run, tmp_path)
    with truncated.open("r+b") as handle:
        handle.truncate(truncated.stat().st_size - 1000)
    missing = tmp_path / "2026-03-20T06:00:04_sb01.hdf5"
    shutil.copyfile(tiny_run.files[0], missing)
    with h5py.File(missing, "r+") as f:
        del f["Header/time_array"]
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        probe_subband(tiny_run.files[1])
        for bad in (truncated, missing):
            with pytest.raises(InputFileError):
                probe_subband(bad)
    assert len(os.listdir("/proc/self/fd")) == before
    assert h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE) == 0


def test_hdf5_but_not_uvh5(tmp_path: Path) -> None:
    path = tmp_path / "2026-03-20T06:00:04_sb00.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=[1, 2, 3])
    _expect(path, "not a UVH5 file")


def test_directory_named_like_a_file(tmp_path: Path) -> None:
    path = tmp_path / "2026-03-20T06:00:04_sb00.hdf5"
    path.mkdir()
    _expect(path, "is a directory")


def test_fifo_named_like_a_file_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO cannot be read as a file even by root (opening it would block forever)."""
    path = tmp_path / "2026-03-20T06:00:04_sb00.hdf5"
    os.mkfifo(path)
    _expect(path, "not a regular file")


def test_missing_file(tmp_path: Path) -> None:
    _expect(tmp_path / "2026-03-20T06:00:04_sb00.hdf5", "no such file")


def test_file_without_read_permission(tiny_run: SimulationResult) -> None:
    """Probed as an unprivileged user, since root reads any file whatever its mode."""
    with tempfile.TemporaryDirectory() as scratch:
        os.chmod(scratch, 0o755)  # traversable by the unprivileged user
        path = _copy(tiny_run, Path(scratch))
        path.chmod(0)
        if os.geteuid() != 0:
            _expect(path, "no read permission")
            return
        script = (
            "import sys; from pathlib import Path; from dsa110d.errors import InputFileError; "
            "from dsa110d.science.hdf5.probe import probe_subband\n"
            "try:\n    probe_subband(Path(sys.argv[1]))\n"
            "except InputFileError as exc:\n    print(exc)"
        )
        done = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             sys.executable, "-c", script, str(path)],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
        assert "no read permission" in done.stdout, done.stderr
        assert str(path) in done.stdout


def test_times_that_disagree_with_the_other_subbands(
    tiny_run: SimulationResult, tmp_path: Path
) -> None:
    files = [p for p in tiny_run.files if parse_subband_name(p).timestamp.minute == 0]  # type: ignore[union-attr]
    odd = tmp_path / files[2].name
    shutil.copyfile(files[2], odd)
    with h5py.File(odd, "r+") as f:
        f["Header/time_array"][0] = f["Header/time_array"][0] + 0.5 / 86400
    members = [probe_subband(p).as_file() for p in [*files[:2], odd, *files[3:]]]
    groups = group_subbands([m for m in members if m is not None])
    assert len(groups) == 2
    main = max(groups, key=lambda g: len(g.files))
    (odd_file,) = [m for m in members if m is not None and m.path == str(odd)]
    reason = time_disagreement(odd_file, main)
    assert reason is not None and "differs by +0.500 s" in reason and main.set_id in reason
    assert all(time_disagreement(f, main) is None for f in main.files)


# --- Grouping ------------------------------------------------------------------------------


def test_a_simulated_run_groups_into_its_sets(tiny_run: SimulationResult) -> None:
    members = [probe_subband(p).as_file() for p in tiny_run.files]
    groups = group_subbands([m for m in members if m is not None])
    assert [g.set_id for g in groups] == tiny_run.set_ids
    assert all(g.is_complete(4) and not g.duplicates for g in groups)


def test_set_id_is_the_start_second_of_the_set() -> None:
    start = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)
    jd0 = 2440587.5 + (start.timestamp() + k.INTEGRATION_TIME_S / 2) / 86400.0
    assert set_id_from_time(jd0, k.INTEGRATION_TIME_S) == "2026-03-20T06:00:00"


def test_untimed_file_joins_by_name_within_tolerance() -> None:
    t = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)
    timed = [SubbandFile(f"a{s}", t + timedelta(seconds=s), s, JD_2026, 12.9) for s in range(3)]
    late = SubbandFile("late", t + timedelta(seconds=50), 3, None)
    far = SubbandFile("far", t + timedelta(seconds=200), 3, None)
    groups = group_subbands([*timed, late, far], tolerance_sec=60)
    assert len(groups) == 2
    assert groups[0].subbands == (0, 1, 2, 3) and groups[0].time0_jd == JD_2026
    assert groups[1].time0_jd is None and groups[1].set_id == "2026-03-20T06:03:20"


def test_second_file_for_a_subband_is_kept_as_a_duplicate() -> None:
    t = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)
    a = SubbandFile("x/a", t, 0, JD_2026)
    b = SubbandFile("y/a", t + timedelta(seconds=1), 0, JD_2026)
    (group,) = group_subbands([b, a])
    assert group.files == (a,) and group.duplicates == (b,)


subband_files = st.builds(
    SubbandFile,
    path=st.text("abcdef", min_size=1, max_size=4),
    name_time=st.integers(0, 1200).map(
        lambda s: datetime(2026, 3, 20, tzinfo=UTC) + timedelta(seconds=s)
    ),
    subband=st.integers(0, 15),
    time0_jd=st.one_of(st.none(), st.sampled_from([JD_2026, JD_2026 + 0.0036, JD_2026 + 0.0072])),
    integration_s=st.just(k.INTEGRATION_TIME_S),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(subband_files, max_size=40), st.randoms(use_true_random=False))
def test_grouping_ignores_arrival_order(files: list[SubbandFile], rnd: object) -> None:
    shuffled = list(files)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert group_subbands(files) == group_subbands(shuffled)


@settings(max_examples=200, deadline=None)
@given(st.lists(subband_files, max_size=40))
def test_every_file_lands_in_exactly_one_group(files: list[SubbandFile]) -> None:
    groups = group_subbands(files)
    placed = [f for g in groups for f in (*g.files, *g.duplicates)]
    assert sorted(placed, key=repr) == sorted(set(files), key=repr)
    for g in groups:
        assert len(set(g.subbands)) == len(g.subbands)
        assert all(d.subband in g.subbands for d in g.duplicates)


@settings(max_examples=200, deadline=None)
@given(st.lists(subband_files, max_size=40))
def test_equal_times_group_together_and_ids_come_from_time(files: list[SubbandFile]) -> None:
    groups = group_subbands(files)
    for f in files:
        if f.time0_jd is None:
            continue
        (home,) = [g for g in groups if f in g.files or f in g.duplicates]
        assert home.time0_jd == f.time0_jd
        assert home.set_id == set_id_from_time(f.time0_jd, f.integration_s)
    timed_keys = [g.time0_jd for g in groups if g.time0_jd is not None]
    assert len(timed_keys) == len(set(timed_keys))
