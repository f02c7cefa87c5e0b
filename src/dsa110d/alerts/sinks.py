"""Where alerts go: always the log; a webhook and e-mail when configured.

The Redis stream ``dsa110:alerts`` is written by :mod:`dsa110d.state.alerts` in the same
script as the state change. The log line is written at once. The webhook and the e-mail are
slow and may be dead, so :meth:`AlertSinks.deliver` only puts the event on a bounded queue
that :meth:`AlertSinks.run` drains in the background, each request in a thread with a timeout
and retries with backoff; when the queue is full the newest event is dropped (and logged),
so a dead webhook never blocks the daemon.

Each delivery (one event to one sink) is a fault boundary: whatever the endpoint answers
(garbage instead of HTTP, a reset, a bad certificate), whatever the configured URL is (no
scheme, characters a URL cannot hold), the failure is recorded against that event as an
undelivered alert (``alert_<sink>_failed``, counted in :attr:`AlertSinks.undelivered`) and
the queue goes on. The line names the event and the fault, never the URL: webhook URLs carry
their token, so a reason that quotes the URL has it replaced by ``<alerts.webhook.url>``.
"""

from __future__ import annotations

import http.client
import json
import re
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any

import anyio

from dsa110d.config import AlertsConfig
from dsa110d.errors import describe, is_service_fault
from dsa110d.logs import get_logger, register_secret
from dsa110d.resilience import RetryPolicy, retry
from dsa110d.state.alerts import AlertEvent

log = get_logger("dsa110d.alerts")
WEBHOOK_MAX_DELAY_SEC = 60.0
WEBHOOK_SCHEMES = ("http", "https")
URL_PLACEHOLDER = "<alerts.webhook.url>"
SCRUB_MIN_CHARS = 4  # shorter pieces of a URL ("/", "api") are no secret and too common


class SinkError(Exception):
    """One failed delivery attempt (internal: retried, then logged)."""


def log_event(event: AlertEvent) -> None:
    """The log sink: critical at ERROR, warning at WARNING, info and resolutions at INFO."""
    fields: dict[str, Any] = {
        "alert": event.fingerprint,
        "rule": event.rule,
        "severity": event.severity,
        "summary": event.summary,
    }
    name = f"alert_{event.event}"
    if event.event == "resolve" or event.severity == "info":
        log.info(name, **fields)
    elif event.severity == "critical":
        log.error(name, **fields)
    else:
        log.warning(name, **fields)


def webhook_body(event: AlertEvent) -> bytes:
    """Slack/Mattermost-compatible: ``text`` for the channel, the rest for machines."""
    return json.dumps(
        {
            "text": event.text(),
            "fingerprint": event.fingerprint,
            "event": event.event,
            "rule": event.rule,
            "severity": event.severity,
            "summary": event.summary,
            "since": event.since,
            "at": event.at,
            "details": event.details,
        },
        default=str,
    ).encode()


class WebhookURLError(ValueError):
    """``alerts.webhook.url`` cannot be posted to (no http(s) scheme, no host): not retried."""


def check_webhook_url(url: str) -> None:
    """Refuse a URL urllib would refuse, with a reason that does not quote it (a secret)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise WebhookURLError("alerts.webhook.url is not a URL") from None
    if parts.scheme.lower() not in WEBHOOK_SCHEMES or not parts.hostname:
        raise WebhookURLError("alerts.webhook.url is not an http:// or https:// URL with a host")


def post_webhook(url: str, body: bytes, timeout: float) -> None:
    """One POST (blocking; runs in a thread); a failure of the endpoint is a SinkError."""
    check_webhook_url(url)
    request = urllib.request.Request(  # noqa: S310 - the operator configures the URL
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            reply.read()
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response's socket
        raise SinkError(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SinkError(_scrub(f"{type(exc).__name__}: {reason}", url)) from None
    except http.client.HTTPException as exc:  # the endpoint answered something not HTTP
        raise SinkError(_scrub(f"bad reply: {describe(exc)}", url)) from None


def _scrub(text: str, url: str) -> str:
    """``text`` without the webhook URL or any part of it where a token may live.

    Errors quote the URL, or its path and query (the request line), as written, escaped
    (``repr``) or percent-encoded: each form is replaced by a placeholder. If a piece of the
    URL still shows after that, the whole text is withheld rather than guessed at.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        parts = urllib.parse.SplitResult("", "", url, "", "")
    selector = parts.path + (f"?{parts.query}" if parts.query else "")
    pieces = [url, selector, parts.path, parts.query, parts.fragment, parts.netloc]
    for piece in sorted(pieces, key=len, reverse=True):
        if len(piece) < SCRUB_MIN_CHARS:
            continue
        for form in dict.fromkeys([piece, repr(piece)[1:-1], urllib.parse.quote(piece)]):
            text = text.replace(form, URL_PLACEHOLDER)
    words = re.split(r"[/?&=#:@]", f"{parts.path}/{parts.query}/{parts.fragment}/{parts.netloc}")
    if any(len(w) >= SCRUB_MIN_CHARS and w in text for w in words):
        return "delivery failed (details withheld: they quote alerts.webhook.url)"
    return text


def send_email(cfg: AlertsConfig, event: AlertEvent) -> None:
    """One e-mail (blocking; runs in a thread); any failure is a SinkError."""
    mail = cfg.email
    message = EmailMessage()
    message["From"] = mail.sender
    message["To"] = ", ".join(mail.recipients)
    message["Subject"] = event.text()
    message.set_content(
        f"{event.summary}\n\nrule: {event.rule}\nalert: {event.fingerprint}\n"
        f"details: {json.dumps(event.details, default=str)}\n"
    )
    try:
        with smtplib.SMTP(mail.host or "", mail.port, timeout=mail.timeout_sec) as smtp:
            if mail.starttls:
                # the system's trust store and a check of the relay's name: the stdlib's own
                # default context verifies nothing, so anyone on the path could read the login
                smtp.starttls(context=ssl.create_default_context())
            password = mail.secret_password()
            if mail.username and password:
                if not isinstance(smtp.sock, ssl.SSLSocket):
                    raise SinkError(
                        "refusing to send the SMTP password without TLS: set "
                        "alerts.email.starttls (the relay must offer STARTTLS)"
                    )
                register_secret(password)
                smtp.login(mail.username, password)
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
        raise SinkError(describe(exc)) from None


class AlertSinks:
    """Deliver events: the log now, the webhook and e-mail from a background task."""

    def __init__(self, config: Callable[[], AlertsConfig]) -> None:
        self._config = config
        self._queue: deque[AlertEvent] = deque()
        self._wake: anyio.Event | None = None  # made by run(), inside the event loop
        self.sent: dict[str, int] = {"webhook": 0, "email": 0}
        self.undelivered: dict[str, int] = {"webhook": 0, "email": 0}
        self.dropped = 0

    def _remote(self) -> bool:
        cfg = self._config()
        return cfg.webhook.url is not None or bool(cfg.email.host and cfg.email.recipients)

    def deliver(self, event: AlertEvent) -> None:
        """Log the event and queue it for the remote sinks; never waits."""
        log_event(event)
        if not self._remote():
            return
        if len(self._queue) >= self._config().sink_queue_size:
            self.dropped += 1
            log.warning("alert_dropped", alert=event.fingerprint, reason="sink queue full")
            return
        self._queue.append(event)
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Drain the queue until cancelled; one event's failures never stop the next."""
        while True:
            self._wake = anyio.Event()
            while self._queue:
                event = self._queue.popleft()
                await self._deliver("webhook", self._to_webhook, event)
                await self._deliver("email", self._to_email, event)
            await self._wake.wait()

    async def _deliver(
        self, sink: str, send: Callable[[AlertEvent], Awaitable[None]], event: AlertEvent
    ) -> None:
        """The fault boundary of one delivery: any failure is this event's, on this sink."""
        try:
            await send(event)
        except Exception as exc:
            if is_service_fault(exc):
                raise
            self._undelivered(sink, event, describe(exc))

    def _undelivered(self, sink: str, event: AlertEvent, reason: str) -> None:
        self.undelivered[sink] += 1
        url = self._config().webhook.url
        if url is not None:
            reason = _scrub(reason, url.get_secret_value())
        log.error(f"alert_{sink}_failed", alert=event.fingerprint, error=reason)

    async def _to_webhook(self, event: AlertEvent) -> None:
        hook = self._config().webhook
        if hook.url is None:
            return
        url = hook.url.get_secret_value()
        register_secret(url)
        policy = RetryPolicy(hook.max_attempts, hook.base_delay_sec, WEBHOOK_MAX_DELAY_SEC)
        body = webhook_body(event)

        async def once() -> None:
            await anyio.to_thread.run_sync(
                post_webhook, url, body, hook.timeout_sec, abandon_on_cancel=True
            )

        try:
            await retry(once, policy, retry_on=(SinkError,), on_retry=_log_retry("webhook"))
            self.sent["webhook"] += 1
        except (SinkError, WebhookURLError) as exc:
            self._undelivered("webhook", event, str(exc))

    async def _to_email(self, event: AlertEvent) -> None:
        cfg = self._config()
        if not (cfg.email.host and cfg.email.recipients):
            return
        policy = RetryPolicy(3, 1.0, WEBHOOK_MAX_DELAY_SEC)

        async def once() -> None:
            await anyio.to_thread.run_sync(send_email, cfg, event, abandon_on_cancel=True)

        try:
            await retry(once, policy, retry_on=(SinkError,), on_retry=_log_retry("email"))
            self.sent["email"] += 1
        except SinkError as exc:
            self._undelivered("email", event, str(exc))


def _log_retry(sink: str) -> Callable[[int, BaseException, float], None]:
    def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
        log.warning(
            f"alert_{sink}_retry", attempt=attempt, error=str(exc), delay_sec=round(delay, 2)
        )

    return on_retry
