"""The imaging configuration (``imaging.*``) as the imaging functions' parameters: shared by
the block's ``image`` stage (``science.pipeline.imaging``) and the fast alerts
(``science.imaging.fast``)."""

from __future__ import annotations

from dsa110d.config import ImagingConfig
from dsa110d.science.imaging.chunk import ImagingParams
from dsa110d.science.imaging.finder import FinderParams


def imaging_params(cfg: ImagingConfig) -> ImagingParams:
    return ImagingParams(
        size_px=cfg.size_px, scale_arcsec=cfg.scale_arcsec, weighting=cfg.weighting,
        robust=cfg.robust, niter=cfg.niter, mgain=cfg.mgain,
        auto_threshold=cfg.auto_threshold_sigma, auto_mask=cfg.auto_mask_sigma,
        threads=cfg.threads, program=cfg.wsclean,
    )  # fmt: skip


def finder_params(cfg: ImagingConfig) -> FinderParams:
    return FinderParams(
        detect_sigma=cfg.detect_sigma,
        grow_sigma=max(cfg.detect_sigma - 1.0, 3.0),
        new_sigma=cfg.new_source_sigma,
        match_radius_beams=cfg.match_radius_beams,
    )
