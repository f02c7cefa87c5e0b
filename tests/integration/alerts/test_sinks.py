"""E-mail alerts never give the SMTP password away: STARTTLS verifies the relay's certificate
(and its name), and no AUTH is sent over a connection without TLS. Real SMTP sessions on
127.0.0.1 (``sinkservers.SMTPServer``), a real certificate from openssl."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsa110d.alerts.sinks import SinkError, send_email
from dsa110d.config import AlertsConfig, EmailConfig
from dsa110d.state.alerts import AlertEvent
from tests.integration.alerts.sinkservers import SMTPServer

PASSWORD = "smtp-s3cret"
EVENT = AlertEvent("fp1", "fire", "disk_free_low", "critical", "disk almost full", 1.0, 1.0)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (cert, key)."""
    where = tmp_path_factory.mktemp("smtp-tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", "key.pem", "-out", "cert.pem", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=where, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return where / "cert.pem", where / "key.pem"


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def relay(request: pytest.FixtureRequest, certificate: tuple[Path, Path]) -> Iterator[SMTPServer]:
    server = SMTPServer(tls=server_tls(certificate) if request.param else None, auth=True)
    yield server
    server.close()


def alerts_config(tmp_path: Path, port: int, starttls: bool) -> AlertsConfig:
    secret = tmp_path / "smtp-password"
    secret.write_text(PASSWORD + "\n")
    email = EmailConfig(
        host="127.0.0.1", port=port, recipients=["ops@example.org"], starttls=True,
        username="dsa110", password_file=secret, timeout_sec=5,
    )  # fmt: skip
    # the configuration refuses a login without starttls; the sink refuses it again at the
    # connection, whatever built its config
    return AlertsConfig().model_copy(
        update={"email": email.model_copy(update={"starttls": starttls})}
    )


@pytest.mark.parametrize("relay", [False], indirect=True)
@pytest.mark.parametrize("starttls", [False, True])
def test_a_relay_without_starttls_never_receives_auth(
    tmp_path: Path, relay: SMTPServer, starttls: bool
) -> None:
    with pytest.raises(SinkError):
        send_email(alerts_config(tmp_path, relay.port, starttls), EVENT)
    assert "AUTH" not in relay.verbs()
    assert relay.messages == []


@pytest.mark.parametrize("relay", [True], indirect=True)
def test_an_untrusted_certificate_never_receives_auth(tmp_path: Path, relay: SMTPServer) -> None:
    with pytest.raises(SinkError, match="CERTIFICATE_VERIFY_FAILED"):
        send_email(alerts_config(tmp_path, relay.port, True), EVENT)
    assert "AUTH" not in relay.verbs()
    assert relay.messages == []


@pytest.mark.parametrize("relay", [True], indirect=True)
def test_a_trusted_relay_gets_auth_only_over_tls(
    tmp_path: Path,
    relay: SMTPServer,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # the system trust store's stand-in
    send_email(alerts_config(tmp_path, relay.port, True), EVENT)
    assert ("AUTH", True) in relay.commands
    assert ("AUTH", False) not in relay.commands
    assert len(relay.messages) == 1
