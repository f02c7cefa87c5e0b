"""Running wsclean on a chunk (``science.imaging.chunk``): its failures named by their reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsa110d.errors import StageError
from dsa110d.science.imaging.chunk import ImagingParams, image_chunk


def test_a_wsclean_failure_names_wscleans_reason_not_its_frame(tmp_path: Path) -> None:
    # real wsclean: it frames an exception in rows of "+", the reason on a line of its own
    missing = tmp_path / "gone.ms"
    with pytest.raises(StageError) as caught:
        image_chunk(missing, tmp_path / "img", ImagingParams(size_px=64), column="DATA")
    message = str(caught.value)
    assert message.startswith("wsclean failed on gone.ms (exit 255): ")
    assert f"Table {missing} does not exist" in message
    assert "+ +" not in message and "\n" not in message
