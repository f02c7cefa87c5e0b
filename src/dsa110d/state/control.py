"""Control commands for running daemons: restart, pause or resume one service, or report now.

Commands are SYSTEM messages (the :mod:`dsa110d.messages` envelope) on one pub/sub channel
per namespace (``Keys.control``). Pub/sub rather than a reliable stream, on purpose: a
command is meant for the daemons running *now* (a stopped daemon has nothing to pause, and a
``restart`` replayed to the next incarnation would be wrong), the sender learns the effect
from the registry (``dsa110ctl status``), and nothing accumulates. The payload::

    {"action": "restart", "host": "corr01", "service": "processor", "pid": null}

``host`` and ``service`` may be ``"*"`` (every daemon / every service); ``pid`` narrows to
one process when several daemons share a host.

Anyone who may PUBLISH on the server reaches every daemon of the namespace at once, so a
control message is untrusted input: :meth:`ControlChannel.serve` is a fault boundary per
message. Whatever one message holds (not UTF-8, nested too deep, over :data:`MAX_BYTES`, not
an envelope, an unknown action) it reaches the handler as a one-line
:class:`~dsa110d.errors.MessageError` and the channel goes on listening; only a fault of the
service (the server unreachable, cancellation; :func:`dsa110d.errors.is_service_fault`)
leaves :meth:`serve`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, cast, get_args

import anyio

from dsa110d.errors import MessageError, describe, is_service_fault
from dsa110d.messages import MessageType, Producer, decode, encode, new_message
from dsa110d.state.connection import Redis, translate_errors
from dsa110d.state.keys import Keys
from dsa110d.state.registry import Registry, RegistryEntry

Action = Literal["restart", "pause", "resume", "status"]
ACTIONS: tuple[str, ...] = get_args(Action)
ANY = "*"
POLL_SEC = 30.0  # a pub/sub read waits this long for a command (no wake-ups between)
MAX_BYTES = 65536  # a control message is tiny (~300 bytes); anything bigger is refused


@dataclass(frozen=True)
class ControlCommand:
    """One command; ``matches`` says whether a daemon (host, pid) should act on it."""

    action: Action
    host: str = ANY
    service: str = ANY
    pid: int | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def matches(self, host: str, pid: int) -> bool:
        return self.host in (ANY, host) and self.pid in (None, pid)

    def to_json(self) -> str:
        """The command as a SYSTEM message envelope."""
        payload = {k: v for k, v in asdict(self).items() if k != "id"}
        message = new_message(MessageType.SYSTEM, payload, Producer.here("dsa110ctl"))
        return encode(replace(message, id=self.id))

    @classmethod
    def from_json(cls, raw: str | bytes, max_bytes: int = MAX_BYTES) -> ControlCommand:
        """Decode and check one SYSTEM message; anything wrong is one MessageError line."""
        message = decode(raw, max_bytes)
        if message.type is not MessageType.SYSTEM:
            raise MessageError(f"control message {message.id}: type {message.type}, not SYSTEM")
        data: dict[str, Any] = {**message.payload, "id": message.id}
        action = data.get("action")
        if action not in ACTIONS:
            raise MessageError(f"control command {data.get('id')}: unknown action {action!r}")
        pid = data.get("pid")
        if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool)):
            raise MessageError(f"control command {data.get('id')}: pid must be an integer")
        return cls(
            action=cast(Action, action),
            host=str(data.get("host", ANY)),
            service=str(data.get("service", ANY)),
            pid=pid,
            id=str(data.get("id", "")),
        )


class ControlChannel:
    """Send commands to running daemons, or listen for them."""

    def __init__(self, redis: Redis, keys: Keys, target: str = "state server") -> None:
        self._redis = redis
        self._channel = keys.control()
        self._target = target

    async def send(self, command: ControlCommand) -> int:
        """Publish one command; returns how many daemons were listening."""
        with translate_errors(self._target):
            return int(await self._redis.publish(self._channel, command.to_json()))

    async def serve(
        self, handle: Callable[[ControlCommand | MessageError], Awaitable[None]]
    ) -> None:
        """Call ``handle`` for every command received, until cancelled; malformed ones arrive
        as their MessageError so the caller can log them (see the module docstring)."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            with translate_errors(self._target):
                await pubsub.subscribe(self._channel)
            while True:
                command = await self._receive(pubsub)
                if command is not None:
                    await handle(command)
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _receive(self, pubsub: Any) -> ControlCommand | MessageError | None:
        """The next command, a message's fault as a MessageError, or None (nothing came)."""
        try:
            # The pub/sub connection decodes replies: a message that is not UTF-8 fails here,
            # after the reply has been read whole (the connection stays in step).
            with translate_errors(self._target):
                message = await pubsub.get_message(timeout=POLL_SEC)
            if message is None or message.get("type") != "message":
                return None
            return ControlCommand.from_json(message["data"])
        except MessageError as exc:
            return exc
        except Exception as exc:
            if is_service_fault(exc):
                raise
            return MessageError(f"control message rejected: {describe(exc)}")


async def fresh_status(
    redis: Redis, keys: Keys, wait_sec: float = 0.5, target: str = "state server"
) -> list[RegistryEntry]:
    """Ask every running daemon to publish its heartbeat now, then read the registry
    (what ``dsa110ctl status`` shows)."""
    await ControlChannel(redis, keys, target).send(ControlCommand("status"))
    await anyio.sleep(wait_sec)
    return await Registry(redis, keys, target).entries()
