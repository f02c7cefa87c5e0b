"""VOEvent 2.0 packets for new variability candidates (IVOA Recommendation, 2011-07-11).

One packet per candidate (source, class), built with the standard library's ``xml.etree``:

* ``ivorn`` = ``ivo://<authority>/dsa110d/variability#<source>_<class>`` (the authority is
  ``services.variability_analyzer.voevent_authority``), so a source announced as a variable
  and later as a transient gets two packets, and a re-run never makes a second one;
* ``Who``: the author ivorn and the packet's date; ``What``: the candidate's metrics as
  ``Param`` elements with units and UCDs (the flux densities in Jy); ``WhereWhen``: the ICRS
  position (``UTC-ICRS-TOPO``) and the time of the event (a transient's first detection, a
  variable's later pair epoch or its last run); ``How``: the instrument and the method;
  ``Why``: the inference (class and the test that made it).

:func:`validate` checks the structure the schema requires of the elements used here (the
root's namespace, version, role and ivorn; Who with Date; What; WhereWhen with a time and a
position; How; Why), so a packet that lacks one is never published.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from astropy.time import Time

from dsa110d.errors import VOEventError
from dsa110d.science.atomic import atomic_file

VOEVENT_NS = "http://www.ivoa.net/xml/VOEvent/v2.0"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_LOCATION = f"{VOEVENT_NS} http://www.ivoa.net/xml/VOEvent/VOEvent-v2.0.xsd"
DEFAULT_AUTHORITY = "dsa110.caltech"
"""The default of ``services.variability_analyzer.voevent_authority``."""
RESOURCE = "dsa110d/variability"
"""The ivorn's resource key under the authority."""
COORD_SYSTEM = "UTC-ICRS-TOPO"
ROLES = ("observation", "prediction", "utility", "test")
REQUIRED = ("Who", "What", "WhereWhen", "How", "Why")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.~-]")

PARAMS: tuple[tuple[str, str | None, str, str], ...] = (
    # candidate field, unit, UCD, dataType
    ("source_id", None, "meta.id", "string"),
    ("class", None, "meta.code.class", "string"),
    ("variable_by", None, "meta.code", "string"),
    ("n", None, "meta.number", "int"),
    ("mean_flux_jy", "Jy", "phot.flux.density;stat.mean", "float"),
    ("wmean_flux_jy", "Jy", "phot.flux.density;stat.mean", "float"),
    ("v", None, "stat.variance", "float"),
    ("eta", None, "stat.fit.chi2", "float"),
    ("p_constant", None, "stat.probability", "float"),
    ("q_value", None, "stat.probability", "float"),
    ("vs", None, "stat.value", "float"),
    ("m", None, "stat.value", "float"),
    ("first_detection_mjd", "d", "time.epoch", "float"),
    ("first_detection_snr", None, "stat.snr", "float"),
)

ET.register_namespace("voe", VOEVENT_NS)
ET.register_namespace("xsi", XSI_NS)


def local_id(source_id: Any, cls: str) -> str:
    """The ivorn's fragment (and the packet's file name): ``<source>_<class>``, URI-safe."""
    return _UNSAFE.sub("_", f"{source_id}_{cls}")


def ivorn(authority: str, source_id: Any, cls: str) -> str:
    return f"ivo://{authority}/{RESOURCE}#{local_id(source_id, cls)}"


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _iso_mjd(mjd: float) -> str:
    return str(Time(mjd, format="mjd", scale="utc").isot)


def event_time(candidate: dict[str, Any], run_time: datetime) -> str:
    """ISO time of the event: a transient's first detection, else the later epoch of the
    reported pair, else the run's time."""
    first = _finite(candidate.get("first_detection_mjd"))
    if candidate.get("class") == "transient" and first is not None:
        return _iso_mjd(first)
    epochs = [_finite(candidate.get(k)) for k in ("pair_mjd_a", "pair_mjd_b")]
    known = [e for e in epochs if e is not None]
    if known:
        return _iso_mjd(max(known))
    return run_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def build(
    candidate: dict[str, Any], authority: str, run_time: datetime, *, role: str = "observation"
) -> ET.Element:
    """The VOEvent 2.0 packet of one candidate (a ``candidate_records`` dict)."""
    cls = str(candidate["class"])
    root = ET.Element(
        f"{{{VOEVENT_NS}}}VOEvent",
        {
            "ivorn": ivorn(authority, candidate["source_id"], cls),
            "role": role,
            "version": "2.0",
            f"{{{XSI_NS}}}schemaLocation": SCHEMA_LOCATION,
        },
    )
    who = _sub(root, "Who")
    _sub(who, "AuthorIVORN", f"ivo://{authority}/dsa110d")
    _sub(who, "Date", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    author = _sub(who, "Author")
    _sub(author, "shortName", "DSA-110")
    _sub(author, "title", "DSA-110 continuum pipeline (dsa110d) variability analyzer")

    what = _sub(root, "What")
    for name, unit, ucd, data_type in PARAMS:
        value = candidate.get(name)
        if value is None or (data_type != "string" and _finite(value) is None):
            continue
        attrs = {"name": name, "ucd": ucd, "dataType": data_type, "value": str(value)}
        if unit is not None:
            attrs["unit"] = unit
        _sub(what, "Param", **attrs)

    where = _sub(root, "WhereWhen")
    location = _sub(where, "ObsDataLocation")
    _sub(location, "ObservatoryLocation", id="GEOLUN")
    observation = _sub(location, "ObservationLocation")
    _sub(observation, "AstroCoordSystem", id=COORD_SYSTEM)
    coords = _sub(observation, "AstroCoords", coord_system_id=COORD_SYSTEM)
    instant = _sub(_sub(coords, "Time", unit="s"), "TimeInstant")
    _sub(instant, "ISOTime", event_time(candidate, run_time))
    position = _sub(coords, "Position2D", unit="deg")
    _sub(position, "Name1", "RA")
    _sub(position, "Name2", "Dec")
    value2 = _sub(position, "Value2")
    _sub(value2, "C1", repr(float(candidate["ra_deg"])))
    _sub(value2, "C2", repr(float(candidate["dec_deg"])))

    how = _sub(root, "How")
    _sub(
        how,
        "Description",
        "DSA-110 (OVRO), 1311-1499 MHz drift scan: forced uv-plane photometry of catalog "
        "sources per block; variability by the chi-square test under a Benjamini-Hochberg "
        "false discovery rate with V or the two-epoch test (Mooley et al. 2016), and TraP's "
        "new-source test.",
    )
    why = _sub(root, "Why", importance="0.5")
    inference = _sub(why, "Inference")
    _sub(inference, "Name", str(candidate["source_id"]))
    _sub(inference, "Concept", f"radio source; {cls}")
    by = candidate.get("variable_by") or ("new source" if cls == "transient" else "")
    _sub(why, "Description", f"{cls} candidate" + (f" ({by})" if by else ""))
    validate(root)
    return root


def validate(root: ET.Element) -> None:
    """Raise VOEventError (one line) unless the packet has the structure VOEvent 2.0 requires."""
    where = root.get("ivorn") or "VOEvent"
    if root.tag != f"{{{VOEVENT_NS}}}VOEvent":
        raise VOEventError(f"{where}: root is {root.tag}, not a VOEvent 2.0 element")
    if root.get("version") != "2.0":
        raise VOEventError(f"{where}: version {root.get('version')!r}, expected '2.0'")
    if root.get("role") not in ROLES:
        raise VOEventError(f"{where}: role {root.get('role')!r} is not one of {', '.join(ROLES)}")
    if not (root.get("ivorn") or "").startswith("ivo://"):
        raise VOEventError(f"{where}: ivorn must start with ivo://")
    missing = [tag for tag in REQUIRED if root.find(tag) is None]
    if missing:
        raise VOEventError(f"{where}: missing element(s) {', '.join(missing)}")
    if root.find("Who/Date") is None or not (
        root.find("Who/AuthorIVORN") is not None or root.find("Who/Author") is not None
    ):
        raise VOEventError(f"{where}: Who needs a Date and an AuthorIVORN or Author")
    coords = "WhereWhen/ObsDataLocation/ObservationLocation/AstroCoords"
    for path in (f"{coords}/Time/TimeInstant/ISOTime", f"{coords}/Position2D/Value2/C1",
                 f"{coords}/Position2D/Value2/C2"):  # fmt: skip
        if root.find(path) is None or not (root.find(path).text or "").strip():  # type: ignore[union-attr]
            raise VOEventError(f"{where}: WhereWhen lacks {path.rsplit('/', 1)[-1]}")


def write(root: ET.Element, path: Path) -> Path:
    """The packet as an XML file (UTF-8, with the declaration), atomically."""
    ET.indent(root)
    with atomic_file(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="UTF-8", xml_declaration=True)
    return path
