"""Astropy settings the science code relies on.

The pipeline runs where the network may be absent or slow: astropy must use the IERS
tables bundled with ``astropy-iers-data`` (predictions a year ahead) rather than try a
download, which would stall a worker and emit warnings.
"""

from __future__ import annotations

from astropy.utils import iers


def use_offline_iers() -> None:
    """Use the bundled IERS tables, never download them (idempotent, process-wide)."""
    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
