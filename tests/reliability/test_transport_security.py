"""Transport security over real TLS: verification on by default, a CA bundle option, ``verify=false``
only when asked for (with a warning), for both clients, the hook and the call-log downloaders.

``tests/unit/api`` checks the settings with mock transports; here a local HTTPS server with a
self-signed certificate (valid for 127.0.0.1) proves what actually happens in the handshake.
"""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import json
import logging
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ice.api.client import AsyncIceClient, IceClient
from airflow_provider_ice.api.download import AsyncCallLogDownloader, CallLogDownloader
from airflow_provider_ice.api.errors import CallLogUnavailableError, IceTransportError
from airflow_provider_ice.api.signing import Credentials
from airflow_provider_ice.hooks.ice import IceHook

CREDENTIALS = Credentials("LTAItls", "tls-secret")
CALL_LOG = json.dumps({"SchemaVersion": "1", "InstanceId": "i-1", "ChannelId": "c-1", "Turns": []}).encode()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by itself; returns (cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ice-test-ca")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ca.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass
class TlsServer:
    url: str
    ca_bundle: Path
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"))
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            seen.append(self.headers.get("x-acs-action", "?"))
            self._reply(
                json.dumps({"RequestId": "r", "Instance": {"Status": "Finished"}}).encode(),
                "application/json",
            )

        def do_GET(self) -> None:
            seen.append("GET " + self.path.partition("?")[0])
            self._reply(CALL_LOG, "application/json")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield TlsServer(f"https://127.0.0.1:{server.server_address[1]}", cert, seen)
    server.shutdown()
    server.server_close()


@pytest.fixture
def fresh(tls_server: TlsServer) -> TlsServer:
    tls_server.requests.clear()
    return tls_server


def _call_log_url(server: TlsServer) -> str:
    return f"{server.url}/_calllogs/i-1.json?Expires=9999999999&OSSAccessKeyId=k&Signature=s"


# -- the ICE clients -----------------------------------------------------------------------------


def test_sync_client_verifies_by_default_and_sends_nothing_to_an_untrusted_server(fresh: TlsServer) -> None:
    with (
        IceClient(CREDENTIALS, endpoint=fresh.url, max_retries=0) as client,
        pytest.raises(
            IceTransportError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"
        ) as caught,
    ):
        client.describe_ai_agent_instance("i-1")
    assert caught.value.sent is False, "a failed handshake sends nothing: safe to retry even a create"
    assert fresh.requests == []


def test_sync_client_trusts_a_ca_bundle(fresh: TlsServer) -> None:
    with IceClient(CREDENTIALS, endpoint=fresh.url, max_retries=0, verify=str(fresh.ca_bundle)) as client:
        assert str(client.describe_ai_agent_instance("i-1").status) == "Finished"
    assert fresh.requests == ["DescribeAIAgentInstance"]


def test_sync_client_without_verification_only_when_asked_and_warned(
    fresh: TlsServer, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING),
        IceClient(CREDENTIALS, endpoint=fresh.url, max_retries=0, verify=False) as client,
    ):
        client.describe_ai_agent_instance("i-1")
    assert any("verification is DISABLED" in r.getMessage() for r in caplog.records)


async def test_async_client_verifies_by_default(fresh: TlsServer) -> None:
    async with AsyncIceClient(CREDENTIALS, endpoint=fresh.url, max_retries=0) as client:
        with pytest.raises(IceTransportError) as caught:
            await client.describe_ai_agent_instance("i-1")
    assert "certificate" in str(caught.value).lower() or "ssl" in str(caught.value).lower()
    assert fresh.requests == []


async def test_async_client_trusts_a_ca_bundle_and_can_be_told_not_to_verify(fresh: TlsServer) -> None:
    async with AsyncIceClient(
        CREDENTIALS, endpoint=fresh.url, max_retries=0, verify=str(fresh.ca_bundle)
    ) as client:
        assert str((await client.describe_ai_agent_instance("i-1")).status) == "Finished"
    async with AsyncIceClient(CREDENTIALS, endpoint=fresh.url, max_retries=0, verify=False) as client:
        assert str((await client.describe_ai_agent_instance("i-1")).status) == "Finished"
    assert fresh.requests == ["DescribeAIAgentInstance"] * 2


# -- the hook (connection extras) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("verify", "trusted"),
    [(None, False), ("true", False), ("{ca}", True), ("false", True)],
    ids=["default", "explicit-true", "ca-bundle", "explicit-false"],
)
async def test_hook_verify_extra_reaches_both_clients(
    fresh: TlsServer, monkeypatch: pytest.MonkeyPatch, verify: str | None, trusted: bool
) -> None:
    extra: dict[str, Any] = {"endpoint": fresh.url, "max_retries": 0}
    if verify is not None:
        extra["verify"] = verify.replace("{ca}", str(fresh.ca_bundle))
    conn = {"conn_type": "alibaba_ice", "login": "LTAItls", "password": "tls-secret", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", json.dumps(conn))
    hook = IceHook()
    if trusted:
        assert str(hook.describe_ai_agent_instance("i-1").status) == "Finished"
        assert str((await hook.adescribe_ai_agent_instance("i-1")).status) == "Finished"
        assert fresh.requests == ["DescribeAIAgentInstance"] * 2
    else:
        with pytest.raises(IceTransportError):
            hook.describe_ai_agent_instance("i-1")
        with pytest.raises(IceTransportError):
            await hook.adescribe_ai_agent_instance("i-1")
        assert fresh.requests == []
    hook.close()
    await hook.aclose()


# -- call-log downloads --------------------------------------------------------------------------


def test_call_log_download_verifies_by_default_and_trusts_a_ca_bundle(fresh: TlsServer) -> None:
    with (
        CallLogDownloader(max_retries=0) as downloader,
        pytest.raises(CallLogUnavailableError, match=r"download from 127\.0\.0\.1 failed"),
    ):
        downloader.download(_call_log_url(fresh), io.BytesIO())
    assert fresh.requests == []
    sink = io.BytesIO()
    with CallLogDownloader(max_retries=0, verify=str(fresh.ca_bundle)) as downloader:
        result = downloader.download(_call_log_url(fresh), sink)
    assert sink.getvalue() == CALL_LOG
    assert result.bytes == len(CALL_LOG)


async def test_async_call_log_download_verifies_by_default_and_trusts_a_ca_bundle(fresh: TlsServer) -> None:
    async with AsyncCallLogDownloader(max_retries=0) as downloader:
        with pytest.raises(CallLogUnavailableError):
            await downloader.download(_call_log_url(fresh), io.BytesIO())
    assert fresh.requests == []
    sink = io.BytesIO()
    async with AsyncCallLogDownloader(max_retries=0, verify=str(fresh.ca_bundle)) as downloader:
        await downloader.download(_call_log_url(fresh), sink)
    assert sink.getvalue() == CALL_LOG
