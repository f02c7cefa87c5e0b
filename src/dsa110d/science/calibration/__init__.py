"""Calibration: antenna gains, delays and bandpasses solved from the data, applied into
CORRECTED_DATA (see :mod:`dsa110d.science.calibration.stage`)."""
