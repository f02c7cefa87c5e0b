"""pyuvdata's own path from a subband set to an MS: the baseline our converter is checked
and benchmarked against (tests and ``bench/bench_convert.py``), not used in production.

Read every subband file, concatenate along frequency, phase to the same ICRS centre with
``UVData.phase(ra, dec, epoch='J2000', cat_name=...)``, order the channels by frequency and
``write_ms``. The real files store ``uvw_array`` as float32, which pyuvdata's checks refuse,
so each file is read unchecked and its uvw promoted to float64 (what the real pipeline does).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pyuvdata import UVData

from dsa110d.science.msio import FIELD_NAME


def read_set(files: Sequence[Path]) -> UVData:
    """All subbands of a set in one UVData (drift scan, channels as the files hold them)."""
    parts = []
    for path in files:
        uv = UVData()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyuvdata's notes on unknown telescopes etc.
            uv.read(str(path), file_type="uvh5", run_check=False)
        uv.uvw_array = np.asarray(uv.uvw_array, dtype=np.float64)
        parts.append(uv)
    first = parts[0]
    if len(parts) > 1:
        first.fast_concat(parts[1:], "freq", inplace=True, run_check=False)
    return first


def pyuvdata_convert(files: Sequence[Path], out: Path, ra: float, dec: float) -> UVData:
    """pyuvdata's conversion of the set into ``out``; returns the phased object."""
    uv = read_set(files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.phase(ra=ra, dec=dec, epoch="J2000", cat_name=FIELD_NAME)
        uv.reorder_freqs(channel_order="freq")
        uv.write_ms(str(out), clobber=True, run_check=False)
    return uv
