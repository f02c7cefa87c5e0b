"""Variability analysis: metrics, two-epoch pairs, incremental state, a run, results, plots."""
