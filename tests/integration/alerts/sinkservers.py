"""Tiny local servers that stand in for a chat webhook and an SMTP relay in the alert tests."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookServer:
    """Records every JSON POST; answers ``status`` (200 by default, 500 for a broken hook)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[tuple[float, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                outer.posts.append((time.monotonic(), body))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-token"

    def events(self) -> list[str]:
        return [body["event"] for _, body in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class SMTPServer:
    """Just enough SMTP (EHLO, MAIL, RCPT, DATA, QUIT) to receive messages; with ``tls`` it
    offers STARTTLS with that context, with ``auth`` it offers AUTH PLAIN and LOGIN. Every
    command is recorded with whether it came over TLS."""

    def __init__(self, tls: ssl.SSLContext | None = None, auth: bool = False) -> None:
        self.messages: list[str] = []
        self.commands: list[tuple[str, bool]] = []  # (verb, over TLS)
        self.tls = tls
        self.auth = auth
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def verbs(self) -> list[str]:
        return [verb for verb, _ in self.commands]

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(5)
                # the client may hang up mid-session (e.g. it refused our certificate)
                with contextlib.suppress(OSError):
                    self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        self._conn = conn
        self._stream = conn.makefile("rwb")
        self._secure = False
        try:
            self._say("220 test ESMTP")
            while self._command(self._stream.readline().decode().strip()):
                pass
        finally:
            self._conn.close()  # the TLS socket when STARTTLS wrapped it

    def _say(self, line: str) -> None:
        self._stream.write(line.encode() + b"\r\n")
        self._stream.flush()

    def _command(self, line: str) -> bool:
        """Answer one command; False when the session is over."""
        verb = line.split(" ", 1)[0].upper()
        if line:
            self.commands.append((verb, self._secure))
        if verb in ("EHLO", "HELO"):
            self._ehlo()
        elif verb == "STARTTLS" and self.tls is not None and not self._secure:
            self._starttls()
        elif verb == "AUTH" and self.auth:
            self._say("235 accepted")
        elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
            self._say("250 OK")
        elif verb == "DATA":
            self._data()
        elif verb == "QUIT" or not line:
            self._say("221 bye")
            return False
        else:
            self._say("502 not implemented")
        return True

    def _ehlo(self) -> None:
        offers = ["test"]
        if self.tls is not None and not self._secure:
            offers.append("STARTTLS")
        if self.auth:
            offers.append("AUTH PLAIN LOGIN")
        for offer in offers[:-1]:
            self._say(f"250-{offer}")
        self._say(f"250 {offers[-1]}")

    def _starttls(self) -> None:
        assert self.tls is not None
        self._say("220 go ahead")
        self._stream.close()
        self._conn = self.tls.wrap_socket(self._conn, server_side=True)
        self._stream = self._conn.makefile("rwb")
        self._secure = True

    def _data(self) -> None:
        self._say("354 go ahead")
        lines = []
        while (data := self._stream.readline().decode()) not in (".\r\n", ""):
            lines.append(data)
        self.messages.append("".join(lines))
        self._say("250 OK queued")

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=5)
        self.sock.close()


class GarbageServer:
    """Answers every connection with bytes that are not HTTP, then hangs up: a webhook
    endpoint gone wrong (a misrouted port, a proxy speaking another protocol)."""

    REPLY = b"\x00\xffnot http at all\r\n\r\n"

    def __init__(self) -> None:
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/secret-token"

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                self.connections += 1
                conn.settimeout(2)
                try:
                    conn.recv(65536)  # the request, unread beyond its first chunk
                    conn.sendall(self.REPLY)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=5)
        self.sock.close()
