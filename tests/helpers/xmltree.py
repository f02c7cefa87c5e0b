"""Reading XML in tests: an element or text the test expects, or a failed assertion naming the
path (``Element.find`` returns None, which would fail later and less clearly)."""

from __future__ import annotations

import xml.etree.ElementTree as ET


def element(root: ET.Element, path: str) -> ET.Element:
    """The first element at ``path`` under ``root``."""
    found = root.find(path)
    assert found is not None, f"no {path} under <{root.tag}>"
    return found


def text(root: ET.Element, path: str) -> str:
    """The text of the first element at ``path`` under ``root``."""
    value = element(root, path).text
    assert value is not None, f"{path} under <{root.tag}> has no text"
    return value


def attribute(node: ET.Element, name: str) -> str:
    """An attribute ``node`` must have."""
    value = node.get(name)
    assert value is not None, f"<{node.tag}> has no {name}"
    return value
