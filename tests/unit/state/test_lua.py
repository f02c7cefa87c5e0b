"""The state layer's Lua: one file per script, each registered by the module it is named
after, parts included by name, no EVAL of an inline string anywhere in src."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsa110d.errors import StateError
from dsa110d.state import lua

SRC = Path(__file__).resolve().parents[3] / "src" / "dsa110d"
LUA_DIR = SRC / "state" / "lua"


def test_every_script_is_registered_by_its_module_and_nothing_evals_inline_lua() -> None:
    sources = {p: p.read_text() for p in SRC.rglob("*.py")}
    for name in lua.names():
        module = SRC / "state" / f"{name.split('_', 1)[0]}.py"
        assert f'"{name}"' in sources[module], f"{name}.lua is not registered by {module.name}"
    offenders = [
        str(p) for p, text in sources.items() if re.search(r"\.eval\(|redis\.call\(", text)
    ]
    assert offenders == []


def test_parts_are_included_and_every_script_reads_its_keys_and_argv_from_its_header() -> None:
    parts = {p.stem for p in LUA_DIR.glob("_*.lua")}
    included = {
        line.removeprefix(lua.INCLUDE).strip()
        for p in LUA_DIR.glob("*.lua")
        for line in p.read_text().splitlines()
        if line.startswith(lua.INCLUDE)
    }
    assert included == parts
    for name in lua.names():
        text = lua.source(name)
        assert text.startswith("-- KEYS"), name
        assert lua.INCLUDE not in text


def test_an_unknown_script_is_one_line_naming_it() -> None:
    with pytest.raises(StateError, match=r"^no Lua script nothing\.lua in dsa110d\.state\.lua$"):
        lua.source("nothing")
