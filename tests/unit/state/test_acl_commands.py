"""The ACL line of docs/security.md grants every command the state layer sends.

The secured-server test runs only the paths a daemon without data takes; a command used only
when a set moves or a calibration is looked up would be refused in production first. This
reads the commands from the source itself: the Lua scripts' ``redis.call``s and the client
methods the Python calls.
"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "src" / "dsa110d"
SECURITY_MD = PACKAGE.parents[1] / "docs" / "security.md"

CLIENT_METHOD = re.compile(r"\b(?:redis|pipe|_redis)\.([a-z_]+)\(")
LUA_CALL = re.compile(r"redis\.p?call\(\s*['\"]([A-Za-z]+)['\"]")
METHOD_COMMAND = {
    "delete": "del",
    "scan_iter": "scan",
    "xinfo_groups": "xinfo",
    "xinfo_consumers": "xinfo",
    "xgroup_create": "xgroup",
    "xgroup_delconsumer": "xgroup",
    "xpending_range": "xpending",
}
"""redis-py methods whose command has another name."""
NOT_COMMANDS = {
    "pipeline", "register_script", "aclose", "close", "execute", "from_url", "pubsub",
    "model_copy", "execute_command", "acked_replicas",
}  # fmt: skip
"""Names that send no command of their own, or not one named here (``execute_command`` sends
ROLE, granted; ``acked_replicas`` is ours)."""


def granted() -> set[str]:
    text = SECURITY_MD.read_text().split("<!-- acl-line -->", 1)[1]
    line = next(x for x in text.splitlines() if x.startswith("user "))
    return {tok[1:].split("|")[0].lower() for tok in line.split() if tok.startswith("+")}


def used() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix == ".lua":
            for name in LUA_CALL.findall(path.read_text()):
                found.setdefault(name.lower(), path.name)
        elif path.suffix == ".py":
            for name in CLIENT_METHOD.findall(path.read_text()):
                if name not in NOT_COMMANDS and not name.startswith("_"):
                    found.setdefault(METHOD_COMMAND.get(name, name), path.name)
    return found


def test_the_reader_finds_the_commands_it_must_check() -> None:
    commands = used()
    assert {"hsetnx", "ltrim", "xadd", "evalsha", "del", "scan"} <= commands.keys()


def test_every_command_the_source_sends_is_granted() -> None:
    missing = {name: where for name, where in used().items() if name not in granted()}
    assert missing == {}, f"add to the ACL line of docs/security.md: {missing}"
