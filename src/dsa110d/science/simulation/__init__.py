"""The DSA-110 simulator: array layout, variable sky, visibilities, subband sets on disk."""
