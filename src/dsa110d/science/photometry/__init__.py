"""Forced photometry in the visibility domain: geometry, accumulation, solve, and the stage."""
