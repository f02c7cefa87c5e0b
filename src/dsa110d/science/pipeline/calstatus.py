"""What calibration an MS carries: the contract between the ``calibrate`` stage and its readers.

The stage adds ``CORRECTED_DATA`` to an MS and records in the table keyword ``DSA110_CAL``
(``{"status": ..., "bandpass": id, "gains": id}``) what it applied; ``status`` is ``ok`` only
when CORRECTED_DATA holds a valid solution's output. Readers (the photometry) call
:func:`calibration_status` on the open table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from casacore import tables

from dsa110d.errors import InputFileError

CAL_KEYWORD = "DSA110_CAL"
CORRECTED = "CORRECTED_DATA"
STATUS_OK = "ok"


def mark(path: Path, status: str, bandpass: str | None = None, gains: str | None = None) -> None:
    """Record in the MS at ``path`` what calibration it carries."""
    try:
        ms = tables.table(str(path), readonly=False, ack=False)
    except RuntimeError as exc:
        raise InputFileError(f"{path}: cannot open Measurement Set: {exc}") from None
    with ms:
        value = {"status": status, "bandpass": bandpass or "", "gains": gains or ""}
        ms.putkeyword(CAL_KEYWORD, value)


def calibration_status(ms: Any) -> str:
    """``ok`` when the open MS carries a valid CORRECTED_DATA, else why not."""
    if CAL_KEYWORD not in ms.keywordnames():
        return "uncalibrated"
    status = str(ms.getkeyword(CAL_KEYWORD)["status"])
    if status == STATUS_OK and CORRECTED not in ms.colnames():
        return "uncalibrated"
    return status
