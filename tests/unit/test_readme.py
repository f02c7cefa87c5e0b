"""The README documents what a user needs: the two commands and every configuration key."""

from __future__ import annotations

from pathlib import Path

from dsa110d.config import Config

README = Path(__file__).resolve().parents[2] / "README.md"


def flat_keys(data: object, prefix: str = "") -> list[str]:
    if not isinstance(data, dict):
        return [prefix]
    return [
        k for key, v in data.items() for k in flat_keys(v, f"{prefix}.{key}" if prefix else key)
    ]


def test_quick_start_gives_exactly_the_two_commands() -> None:
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    assert quick.split() == ["make", "demo", "make", "test"]


def test_every_configuration_key_is_in_the_reference() -> None:
    text = README.read_text()
    missing = [
        key
        for key in flat_keys(Config().model_dump(mode="json", exclude={"env"}))
        if f"| `{key}` |" not in text
    ]
    assert missing == []


def test_troubleshooting_covers_streams_and_debug() -> None:
    text = README.read_text().split("## Troubleshooting", 1)[1]
    assert "xlen dsa110:hdf5_processing" in text
    assert "DSA110_LOG_LEVEL=DEBUG" in text
    assert "cannot reach the state server" in text


def test_the_architecture_is_linked_and_in_the_repository() -> None:
    text = README.read_text()
    assert "(docs/architecture.md)" in text and "DESIGN.md" not in text
    architecture = (README.parent / "docs" / "architecture.md").read_text()
    for heading in ("## Layers", "## Data flow and messages", "## State machines"):
        assert heading in architecture
    assert "## Where to add things" in architecture
