"""Subband files (UVH5 written by the correlator): names and sets, reading, writing, arrival."""
