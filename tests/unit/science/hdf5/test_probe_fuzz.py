"""The probe's fault boundary under hostile files (property-based).

Generated from a valid minimal subband: header and data datasets replaced by wrong types,
wrong shapes, non-finite and extreme values, petabyte declared sizes, soft and external
links, groups or nothing; bytes overwritten or cut off; symlinks to themselves, to nowhere,
to a directory. Each is probed in-process through :func:`ingest.probe_files`, the function
the watcher's probe process runs. Invariants: nothing escapes; one outcome for the file,
either a subband whose values are all within their physical ranges or a fault with one
printable line naming the file; the input untouched (bytes and mtime).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from dsa110d.errors import REASON_MAX_CHARS
from dsa110d.science import constants as k
from dsa110d.science.hdf5.ingest import BAD_FILE, OUTSIDE_TREE, probe_files
from dsa110d.science.hdf5.schema import PROBE_HEADER
from dsa110d.science.hdf5.subbands import parse_subband_name, subband_file_name
from tests.unit.science.hdf5.probekit import N_BLTS, N_FREQS, START, write_subband


def fuzz(examples: int) -> settings:
    """Hypothesis settings of this suite: ``examples`` a test, no deadline (the host is shared),
    no example database (the suite is fast and fully regenerated each run)."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


TARGETS = (
    *(f"Header/{n}" for n in PROBE_HEADER),
    "Header/extra_keywords/phase_center_dec",
    "Data/visdata",
    "Data/flags",
    "Data/nsamples",
)
EXTREMES = (
    math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0, -0.0, 5e-324, 1.7976931348623157e308,
    2.0**63, -(2.0**63), 1.0, -1.0, 2.0**31, k.ERA_START_JD, k.ERA_END_JD, 1.4e9,
)  # fmt: skip
DTYPES = ("f8", "f4", "i8", "i4", "u1", "u8", "?", "c8", "c16")
SHAPES = ((), (0,), (1,), (N_BLTS,), (N_FREQS,), (N_BLTS, 3), (2, 2, 2), (N_BLTS, 1, N_FREQS, 2))


def _template() -> bytes:
    with tempfile.TemporaryDirectory(prefix="probe-fuzz-") as name:
        return write_subband(Path(name)).read_bytes()


TEMPLATE = _template()
NAME = subband_file_name(START, 0)


MEMORY_FS = Path("/dev/shm")
"""Where the examples' files are written when it exists: rewriting a small file there costs
microseconds, on a journalling disk milliseconds (most of an example's time)."""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The watched directory of every example (each rewrites its file: quick, no clean-up)."""
    base = MEMORY_FS if os.access(MEMORY_FS, os.W_OK) else tmp_path_factory.getbasetemp()
    made = Path(tempfile.mkdtemp(prefix="probe-fuzz-", dir=base))
    (made / "TEMPLATE").write_bytes(TEMPLATE)  # an external link's target (valid HDF5)
    yield made
    shutil.rmtree(made)


# --- Mutations of one dataset ------------------------------------------------------------

Mutation = Callable[[h5py.File, str], None]


def _drop(f: h5py.File, target: str) -> None:
    """Remove ``target`` if it is there (an earlier mutation may have removed it)."""
    if f.get(target, getlink=True) is not None:
        del f[target]


def _values(value: float, dtype: str, shape: tuple[int, ...]) -> Mutation:
    def apply(f: h5py.File, target: str) -> None:
        with np.errstate(all="ignore"):
            array = np.full(shape, value).astype(dtype)
        _drop(f, target)
        f[target] = array

    return apply


def _declared(exponent: int, dtype: str, trailing: tuple[int, ...]) -> Mutation:
    def apply(f: h5py.File, target: str) -> None:
        # at most 2**61 elements: HDF5 refuses larger dataspaces (nothing to probe then)
        shape = (2 ** min(exponent, 61 - math.prod(trailing).bit_length()), *trailing)
        _drop(f, target)
        f.create_dataset(target, shape=shape, dtype=dtype, chunks=(1, *trailing))

    return apply


def _strings(vlen: bool) -> Mutation:
    def apply(f: h5py.File, target: str) -> None:
        _drop(f, target)
        dtype = h5py.string_dtype() if vlen else "S7"
        f.create_dataset(target, data=np.array(["1.4e9"] * N_BLTS, dtype=object), dtype=dtype)

    return apply


def _compound(f: h5py.File, target: str) -> None:
    _drop(f, target)
    f[target] = np.zeros(N_BLTS, dtype=[("a", "f8"), ("b", "i4")])


def _soft(to: str) -> Mutation:
    def apply(f: h5py.File, target: str) -> None:
        _drop(f, target)
        f[target] = h5py.SoftLink(to or f"/{target}")

    return apply


def _external(to: str) -> Mutation:
    def apply(f: h5py.File, target: str) -> None:
        _drop(f, target)
        beside = str(Path(f.filename).with_name(to))  # an absolute path: no dependence on cwd
        f[target] = h5py.ExternalLink(beside if to == "TEMPLATE" else to, f"/{target}")

    return apply


def _group(f: h5py.File, target: str) -> None:
    _drop(f, target)
    f.create_group(target)


def _delete(f: h5py.File, target: str) -> None:
    _drop(f, target)


MUTATIONS = st.one_of(
    st.builds(
        _values,
        st.one_of(st.sampled_from(EXTREMES), st.floats(allow_nan=True, allow_infinity=True)),
        st.sampled_from(DTYPES),
        st.sampled_from(SHAPES),
    ),
    st.builds(
        _declared,
        st.integers(16, 60),
        st.sampled_from(("f8", "i8", "c8", "?")),
        st.sampled_from(((), (3,), (1, N_FREQS, 2), (1, 2**20, 2))),
    ),
    st.builds(_strings, st.booleans()),
    st.just(_compound),
    st.builds(_soft, st.sampled_from(("", "/Header/Nblts", "/nowhere", "/Header"))),
    st.builds(_external, st.sampled_from(("/nonexistent.h5", "/dev/null", "TEMPLATE"))),
    st.just(_group),
    st.just(_delete),
)


def _fingerprint(path: Path) -> tuple[str, int, int, int]:
    info = os.lstat(path)
    content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    return content, info.st_size, info.st_mtime_ns, info.st_mode


def _check_outcome(path: Path, root: Path) -> dict[str, Any]:
    """Probe ``path`` through the boundary; assert the invariants; the outcome."""
    before = _fingerprint(path)
    outcomes = probe_files([str(path)], str(root))
    assert _fingerprint(path) == before, "the probe changed its input"
    (outcome,) = outcomes
    assert outcome["path"] == str(path)
    if outcome["ok"]:
        assert k.ERA_START_JD <= outcome["time0_jd"] <= k.ERA_END_JD
        assert 0 < outcome["integration_s"] <= k.MAX_INTEGRATION_S
        dec = outcome["dec_rad"]
        assert dec is None or abs(dec) <= math.pi / 2
        assert parse_subband_name(outcome["set_id"] + "_sb00.hdf5") is not None
    else:
        reason = outcome["reason"]
        assert outcome["kind"] in (BAD_FILE, OUTSIDE_TREE), outcome
        assert isinstance(reason, str) and reason.startswith(str(path)), reason
        assert len(reason) <= REASON_MAX_CHARS and reason.isprintable(), reason
    return outcome


@fuzz(1500)
@given(
    st.lists(st.tuples(st.sampled_from(TARGETS), MUTATIONS), min_size=1, max_size=3),
)
def test_mutated_datasets_never_escape_the_probe(
    root: Path, mutations: list[tuple[str, Mutation]]
) -> None:
    path = root / NAME
    path.write_bytes(TEMPLATE)
    try:
        with h5py.File(path, "r+") as f:
            for target, mutate in mutations:
                mutate(f, target)
    except (KeyError, ValueError, TypeError, OSError, RuntimeError):
        reject()  # h5py could not build this file (e.g. the target is gone already)
    _check_outcome(path, root)


@fuzz(600)
@given(st.integers(0, len(TEMPLATE) - 1), st.binary(min_size=1, max_size=64))
def test_overwritten_bytes_never_escape_the_probe(root: Path, offset: int, garbage: bytes) -> None:
    path = root / NAME
    data = bytearray(TEMPLATE)
    data[offset : offset + len(garbage)] = garbage
    path.write_bytes(bytes(data[: len(TEMPLATE)]))
    _check_outcome(path, root)


@fuzz(300)
@given(st.integers(0, len(TEMPLATE)))
def test_truncated_files_never_escape_the_probe(root: Path, length: int) -> None:
    path = root / NAME
    path.write_bytes(TEMPLATE[:length])
    outcome = _check_outcome(path, root)
    assert outcome["ok"] is (length == len(TEMPLATE))


SYMLINKS: dict[str, Callable[[Path], str]] = {
    "itself": lambda p: str(p),
    "a loop of two": lambda p: str(p.with_name("other.hdf5")),
    "nowhere": lambda p: str(p.with_name("missing.hdf5")),
    "a directory": lambda p: str(p.parent),
    "a device": lambda p: "/dev/zero",
    "an undecodable name": lambda p: os.fsdecode(os.fsencode(p.parent) + b"/\xff.hdf5"),
}


@fuzz(100)
@given(st.sampled_from(sorted(SYMLINKS)), st.integers(0, 15))
def test_hostile_symlinks_never_escape_the_probe(kind: str, subband: int) -> None:
    with tempfile.TemporaryDirectory(prefix="probe-fuzz-") as name:
        root = Path(name)
        path = root / subband_file_name(START, subband)
        target = SYMLINKS[kind](path)
        path.symlink_to(target)
        if kind == "a loop of two":
            Path(target).symlink_to(path)
        if kind == "an undecodable name":
            Path(target).write_bytes(TEMPLATE)  # a good subband, but its name is no text
        outcome = _check_outcome(path, root)
        assert outcome["ok"] is False
