"""Tiny local servers that stand in for a chat webhook and an SMTP relay in the alert tests."""

from __future__ import annotations

import json
import socket
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
    """Just enough SMTP (EHLO, MAIL, RCPT, DATA, QUIT) to receive messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(5)
                self._session(conn.makefile("rwb"))

    def _session(self, stream: Any) -> None:
        def say(line: str) -> None:
            stream.write(line.encode() + b"\r\n")
            stream.flush()

        say("220 test ESMTP")
        while True:
            line = stream.readline().decode().strip()
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                say("250 test")
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                say("250 OK")
            elif verb == "DATA":
                say("354 go ahead")
                lines = []
                while (data := stream.readline().decode()) not in (".\r\n", ""):
                    lines.append(data)
                self.messages.append("".join(lines))
                say("250 OK queued")
            elif verb == "QUIT" or not line:
                say("221 bye")
                return
            else:
                say("502 not implemented")

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
