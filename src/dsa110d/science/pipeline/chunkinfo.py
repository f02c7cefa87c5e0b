"""What the block planner needs to know about one converted chunk (Measurement Set).

:func:`chunk_info` reads the MS's TIME and INTERVAL columns and its phase centre and returns
the chunk's time span (Unix seconds, from the start of the first integration to the end of
the last) and its declination, which the processor records in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from casacore import tables

from dsa110d.errors import InputFileError
from dsa110d.science.constants import UNIX_EPOCH_MJD_S


@dataclass(frozen=True)
class ChunkInfo:
    """A chunk's span (Unix s) and its phase centre's declination (rad)."""

    start: float
    end: float
    dec_rad: float


def chunk_info(ms: Path) -> ChunkInfo:
    """Span and declination of one MS; InputFileError naming it when it cannot be read."""
    try:
        with tables.table(str(ms), ack=False) as main:
            if main.nrows() == 0:
                raise InputFileError(f"{ms}: the Measurement Set has no rows")
            times = np.asarray(main.getcol("TIME"), dtype=np.float64)
            interval = np.asarray(main.getcol("INTERVAL"), dtype=np.float64)
        with tables.table(f"{ms}::FIELD", ack=False) as field:
            dec = float(field.getcol("PHASE_DIR")[0, 0, 1])
    except RuntimeError as exc:
        raise InputFileError(f"{ms}: cannot read the Measurement Set ({exc})") from None
    first, last = int(np.argmin(times)), int(np.argmax(times))
    start = times[first] - 0.5 * interval[first] - UNIX_EPOCH_MJD_S
    end = times[last] + 0.5 * interval[last] - UNIX_EPOCH_MJD_S
    return ChunkInfo(float(start), float(end), dec)
