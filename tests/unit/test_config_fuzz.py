"""Fuzz of configuration loading: whatever the file and the environment overrides hold,
loading gives a valid Config or one printable ConfigError line, never another exception,
and never shows a secret."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from dsa110d.config import Config, load_config
from dsa110d.errors import ConfigError
from tests.conftest import SERVICES_YAML
from tests.fuzzkit import fuzz_settings, json_values, one_line


def _leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        return [p for key, value in node.items() for p in _leaf_paths(value, (*prefix, key))]
    return [prefix]


KEY_PATHS = _leaf_paths(load_config(SERVICES_YAML, "testing", {}).model_dump(mode="json"))
SECTION_PATHS = sorted({path[:1] for path in KEY_PATHS} | {path[:2] for path in KEY_PATHS})
SECRET_VARS = ("DSA110__REDIS__PASSWORD", "DSA110__REDIS__URL", "DSA110__ALERTS__WEBHOOK__URL")
# YAML that nests deep enough for RecursionError costs a second to parse: tested once below,
# not in every example
DEEP_VALUES = ["[" * 1200, "{a: " * 1200 + "1" + "}" * 1200]
# YAML text that trips a parser or a validator in its own way
TRICKY_VALUES = [
    "1" * 5000,  # int() refuses more than 4300 digits
    "2024-13-45",  # matches YAML's timestamp, is no date
    "{a: " * 50 + "1" + "}" * 50,
    "1e999",
    ".nan",
    "-.inf",
    "~",
    "yes",
    "!!python/object/apply:os.system ['true']",
    "&a [*a]",
    "0x1F",
    "-1",
    "0",
    "null",
    "'unterminated",
    "a: b: c",
    "\x00\x1b[31m",
    "line one\nline two",
]

names = st.one_of(
    st.sampled_from(KEY_PATHS + SECTION_PATHS).map(lambda p: "DSA110__" + "__".join(p).upper()),
    st.text(max_size=30).map(lambda t: "DSA110__" + t),
)
values = st.one_of(
    st.sampled_from(TRICKY_VALUES),
    st.text(max_size=40),
    json_values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
)
secrets = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=20).map(
    lambda t: "s3cr3t-" + t
)


NO_FILE = Path(os.devnull)  # an empty document: the built-in defaults, parsed in no time


def _load(environ: dict[str, str], path: Path = NO_FILE) -> Config | ConfigError:
    try:
        return load_config(path, "testing", environ)
    except ConfigError as exc:
        return exc


@fuzz_settings(1500)
@given(overrides=st.dictionaries(names, values, max_size=4), secret=secrets)
def test_environment_overrides_give_a_config_or_one_line_without_the_secret(
    overrides: dict[str, str], secret: str
) -> None:
    environ = {**overrides, **dict.fromkeys(SECRET_VARS, secret)}
    outcome = _load(environ)
    if isinstance(outcome, ConfigError):
        assert one_line(str(outcome)), str(outcome)
        assert secret not in str(outcome)
    else:
        assert isinstance(outcome, Config)


documents = st.dictionaries(
    st.sampled_from(["defaults", "environments", "other"]),
    st.dictionaries(
        st.sampled_from([p[0] for p in SECTION_PATHS] + ["testing", "production", "bogus"]),
        json_values | st.dictionaries(st.text(max_size=12), json_values, max_size=3),
        max_size=3,
    )
    | json_values,
    max_size=3,
)


@fuzz_settings(500)
@given(document=documents | json_values, raw=st.none() | st.binary(max_size=200))
def test_any_configuration_file_gives_a_config_or_one_line(
    tmp_path: Path, document: Any, raw: bytes | None
) -> None:
    path = tmp_path / "services.yaml"  # rewritten by each example
    if raw is None:
        path.write_text(yaml.safe_dump(document))
    else:
        path.write_bytes(raw)
    outcome = _load({}, path)
    if isinstance(outcome, ConfigError):
        assert one_line(str(outcome)), str(outcome)


def test_yaml_that_breaks_the_parser_is_one_line_too(tmp_path: Path) -> None:
    for value in [*DEEP_VALUES, "1" * 5000]:
        for name in ("DSA110__REDIS__PORT", "DSA110__SERVICES"):
            outcome = _load({name: value})
            assert isinstance(outcome, ConfigError) and one_line(str(outcome)), outcome
        path = tmp_path / "services.yaml"
        path.write_text(f"defaults:\n  redis:\n    port: {value}\n")
        outcome = _load({}, path)
        assert isinstance(outcome, ConfigError) and one_line(str(outcome)), outcome
