"""A block run's files, as the processor's block runs see them (plain functions run in threads).

* **Staging**: each run stages its outputs under ``<results_dir>/.staging/<block id>.v<version>
  .t<fencing token>`` (:data:`STAGING_NAME`); a run removes the staging of older tokens of its
  block when it starts (:func:`remove_stale_staging`), and the processor's sweep removes any
  staging no run can use any more (:func:`staged_runs`, :func:`staging_is_abandoned`).
* **Calibration solutions**: a stage output ``cal_<kind>`` is a solution's JSON sidecar
  (``state.calibration``); :func:`read_cal_solutions` reads the ones a run published, with the
  published name of each solution's table.
"""

from __future__ import annotations

import glob
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

from dsa110d.errors import StateError
from dsa110d.science.atomic import fenced_name, unfenced
from dsa110d.state.calibration import KINDS as CAL_KINDS
from dsa110d.state.calibration import OUTPUT_PREFIX as CAL_OUTPUT_PREFIX
from dsa110d.state.calibration import CalSolution

STAGING_NAME = re.compile(r"^(?P<block>.+)\.v(?P<version>\d+)\.t(?P<token>\d+)$")
"""A block run's staging directory: ``<block id>.v<version>.t<fencing token>``."""


def remove_stale_staging(root: Path, block_id: str, token: int) -> None:
    """Remove the staging directories of earlier holders of this block's lease: their runs
    died (kill -9, power cut) before cleaning up, since we now hold the newest token."""
    for path in root.glob(f"{glob.escape(block_id)}.v*.t*"):
        try:
            holder = int(path.name.rsplit(".t", 1)[1])
        except ValueError:
            continue
        if holder < token:
            shutil.rmtree(path, ignore_errors=True)


def staged_runs(root: Path) -> list[tuple[Path, str, int, int]]:
    """The staging directories under ``root``: (path, block id, version, token) of each."""
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.iterdir()):
        match = STAGING_NAME.match(path.name)
        if match and path.is_dir() and not path.is_symlink():
            found.append((path, match["block"], int(match["version"]), int(match["token"])))
    return found


def staging_is_abandoned(version: int, token: int, committed_version: int, newest: int) -> bool:
    """Whether a run's staging directory can be of no more use: its version has been
    committed (by it, which died between the commit and removing its staging, or by
    another holder), or a newer holder has been granted the block's lease since (the run can
    never commit). Neither ever holds for a live run that may still commit, and both stay
    true once true, so the check needs no lock."""
    return version <= committed_version or token < newest


def read_cal_solutions(results: dict[str, str]) -> list[CalSolution]:
    """The calibration solutions a run published: each output ``cal_<kind>`` (as the
    processor names it, ``<stage>.cal_<kind>``) is a solution's JSON sidecar
    (``state.calibration``). The table beside it is found under the name the run published it
    with: the output ``cal_<kind>_table`` (a stage must list its table among its outputs for
    it to be published at all), else the sidecar's ``table`` with the sidecar's version and
    token, else as named. StateError for a sidecar that breaks the contract."""
    found: list[CalSolution] = []
    for output, path in sorted(results.items()):
        name = output.rsplit(".", 1)[-1]
        if not name.startswith(CAL_OUTPUT_PREFIX):
            continue
        kind = name.removeprefix(CAL_OUTPUT_PREFIX)
        if kind not in CAL_KINDS:
            continue
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StateError(f"calibration sidecar {path}: unreadable ({exc})") from None
        if not isinstance(doc, dict):
            raise StateError(f"calibration sidecar {path}: not a JSON object")
        solution = CalSolution.from_sidecar(doc, path)
        if solution.kind != kind:
            raise StateError(f"calibration sidecar {path}: kind {solution.kind!r}, output {name}")
        table = results.get(f"{output}_table") or _published_table(Path(path), solution.table)
        found.append(replace(solution, table_path=table))
    return found


def _published_table(sidecar: Path, table: str) -> str:
    """Where the table a sidecar names was published: beside it, carrying the sidecar's
    version and token when it was published by the same run, or as named; "" when it is in
    neither place (a stage that did not list its table among its outputs: it stayed in the
    staging directory)."""
    plain = sidecar.parent / Path(table).name
    _, version, token = unfenced(sidecar.name)
    for candidate in (fenced_name(plain, version, token) if token else plain, plain):
        if candidate.exists():
            return str(candidate)
    return ""
