"""VOEvent 2.0 packets of candidates: the required structure, the candidate's position and flux,
an ivorn under the configured authority, and a packet lacking an element is refused."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dsa110d.errors import VOEventError
from dsa110d.science.variability import voevent
from tests.helpers.xmltree import attribute, element, text

RUN_TIME = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MJD_ZERO = datetime(1858, 11, 17)  # MJD 0 (UTC; no leap second falls in these days)


def iso_of_mjd(mjd: float) -> str:
    return (MJD_ZERO + timedelta(days=mjd)).strftime("%Y-%m-%dT%H:%M:%S.000")


NS = "{http://www.ivoa.net/xml/VOEvent/v2.0}"
COORDS = "WhereWhen/ObsDataLocation/ObservationLocation/AstroCoords"
TRANSIENT = {
    "source_id": "T000",
    "class": "transient",
    "ra_deg": 201.365063,
    "dec_deg": -43.019112,
    "n": 4,
    "mean_flux_jy": 0.5125,
    "wmean_flux_jy": 0.51,
    "v": None,
    "first_detection_mjd": 61000.5,
    "first_detection_snr": 102.5,
    "variable_by": "",
}


def written(
    candidate: dict[str, object], tmp_path: Path, authority: str = "test.authority"
) -> ET.Element:
    packet = voevent.build(candidate, authority, RUN_TIME)
    path = voevent.write(packet, tmp_path / "packet.xml")
    assert path.read_text().startswith("<?xml version='1.0' encoding='UTF-8'?>")
    return ET.parse(path).getroot()


def test_a_packet_has_the_required_elements_and_the_candidates_position_and_flux(
    tmp_path: Path,
) -> None:
    root = written(TRANSIENT, tmp_path)
    assert root.tag == f"{NS}VOEvent"
    assert (root.get("version"), root.get("role")) == ("2.0", "observation")
    assert root.get("ivorn") == "ivo://test.authority/dsa110d/variability#T000_transient"
    assert [child.tag for child in root] == ["Who", "What", "WhereWhen", "How", "Why"]
    assert text(root, "Who/AuthorIVORN") == "ivo://test.authority/dsa110d"
    assert text(root, "Who/Date")
    position = element(root, f"{COORDS}/Position2D")
    assert position.get("unit") == "deg"
    assert float(text(position, "Value2/C1")) == 201.365063
    assert float(text(position, "Value2/C2")) == -43.019112
    assert text(root, f"{COORDS}/Time/TimeInstant/ISOTime") == iso_of_mjd(61000.5)
    params = {p.get("name"): p for p in root.iter("Param")}
    assert float(attribute(params["mean_flux_jy"], "value")) == 0.5125
    assert params["mean_flux_jy"].get("unit") == "Jy"
    assert params["class"].get("value") == "transient"
    assert "v" not in params  # undefined values are left out, not written as None
    assert text(root, "Why/Inference/Name") == "T000"


def test_a_variables_time_is_its_later_pair_epoch(tmp_path: Path) -> None:
    variable = {**TRANSIENT, "class": "variable", "pair_mjd_a": 61000.25, "pair_mjd_b": 61001.0}
    root = written(variable, tmp_path)
    assert text(root, f"{COORDS}/Time/TimeInstant/ISOTime") == iso_of_mjd(61001.0)
    assert attribute(root, "ivorn").endswith("#T000_variable")


@pytest.mark.parametrize("tag", ["Who", "What", "WhereWhen", "How", "Why"])
def test_a_packet_without_a_required_element_is_refused(tag: str) -> None:
    root = voevent.build(TRANSIENT, "test.authority", RUN_TIME)
    root.remove(element(root, tag))
    with pytest.raises(VOEventError, match=rf"#T000_transient: missing element\(s\) {tag}"):
        voevent.validate(root)


def test_a_packet_without_a_position_is_refused() -> None:
    root = voevent.build(TRANSIENT, "test.authority", RUN_TIME)
    value2 = element(root, f"{COORDS}/Position2D/Value2")
    value2.remove(element(value2, "C2"))
    with pytest.raises(VOEventError, match="WhereWhen lacks C2"):
        voevent.validate(root)


def test_unsafe_source_ids_make_a_uri_safe_fragment() -> None:
    assert voevent.local_id("J1234+56 7/x", "variable") == "J1234_56_7_x_variable"
