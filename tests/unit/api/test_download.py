"""Streaming CallLogUrl download: scheme rules, redirects, retries, expiry, size cap (sync and async)."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from pydantic import SecretStr

from airflow_provider_ice.api import download as dl
from airflow_provider_ice.api.download import AsyncCallLogDownloader, CallLogDownloader, check_call_log_url
from airflow_provider_ice.api.errors import (
    CallLogDownloadError,
    CallLogTooLargeError,
    CallLogUnavailableError,
    CallLogUrlError,
    CallLogUrlExpiredError,
)
from tests.unit.api.fakes import streamed

SIGNATURE = "c2lnbmF0dXJlLXNlY3JldA"
#: Caps several network chunks large: a cap checked per chunk instead of over the body never trips.
CAP = 3 * dl.DEFAULT_CHUNK_SIZE + 100
URL = f"https://oss.example.com/calllogs/i-1.json?Expires=1900000000&OSSAccessKeyId=AK&Signature={SIGNATURE}"
BODY = (
    b'{"SchemaVersion": "1", "Turns": [' + b'{"Role": "agent", "Text": "hi"},' * 500 + b'{"Role": "user"}]}'
)
EXPIRED_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired.</Message><RequestId>R-1</RequestId></Error>"
)


class Server:
    """A scripted handler: each request gets the next response factory; requests are recorded."""

    def __init__(self, *responses: Callable[[httpx.Request], httpx.Response]) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0)(request)


def ok(body: bytes = BODY, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _r: streamed(200, body, **{"content-type": "application/json", **headers})


def status(code: int, body: bytes = b"", **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _r: streamed(code, body, **headers)


class _Dropping(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Sends part of the body, then the connection drops."""

    def __iter__(self) -> Iterator[bytes]:
        yield BODY[:100]
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield BODY[:100]
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def dropped(_r: httpx.Request) -> httpx.Response:
    return httpx.Response(200, stream=_Dropping())


class _Endless(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A chunked body with no Content-Length that never ends (counts what was pulled)."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        while True:
            self.pulled += 1
            yield b"x" * 1024

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        while True:
            self.pulled += 1
            yield b"x" * 1024


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(dl.time, "sleep", recorded.append)

    async def fake_async_sleep(delay: float) -> None:
        recorded.append(delay)

    monkeypatch.setattr(dl.asyncio, "sleep", fake_async_sleep)
    return recorded


def downloader(server: Server, **settings: object) -> CallLogDownloader:
    return CallLogDownloader(transport=httpx.MockTransport(server), backoff_base=0.01, **settings)  # type: ignore[arg-type]


def test_streams_body_into_sink_with_size_and_hash() -> None:
    server = Server(ok())
    sink = io.BytesIO()
    result = downloader(server).download(SecretStr(URL), sink)
    assert sink.getvalue() == BODY
    assert result.bytes == len(BODY)
    assert result.sha256 == hashlib.sha256(BODY).hexdigest()
    assert result.attempts == 1
    assert result.content_type == "application/json"
    assert str(server.requests[0].url) == URL  # sent untouched: the signature covers the query
    assert "authorization" not in server.requests[0].headers


@pytest.mark.parametrize(
    ("url", "allow_http", "message"),
    [
        ("http://oss.example.com/x?Signature=abc", False, "scheme 'http' is not allowed; allowed: https"),
        ("ftp://oss.example.com/x?Signature=abc", True, "allowed: https, http"),
        ("file:///etc/passwd", True, "scheme 'file' is not allowed"),
        ("https:///nohost?Signature=abc", False, "no host"),
    ],
)
def test_url_rules(url: str, allow_http: bool, message: str) -> None:
    with pytest.raises(CallLogUrlError, match=message) as err:
        check_call_log_url(url, allow_http=allow_http)
    assert "Signature=abc" not in str(err.value)


def test_plain_http_only_when_allowed() -> None:
    assert check_call_log_url("http://127.0.0.1:8765/_calllogs/x", allow_http=True).scheme == "http"
    server = Server(ok())
    with pytest.raises(CallLogUrlError):
        downloader(server).download("http://127.0.0.1:8765/_calllogs/x", io.BytesIO())
    assert server.requests == []


def test_retries_5xx_and_dropped_connection_and_restarts_the_sink(sleeps: list[float]) -> None:
    server = Server(status(503), dropped, ok())
    sink = io.BytesIO()
    result = downloader(server).download(URL, sink)
    assert result.attempts == 3
    assert sink.getvalue() == BODY  # the partial first body is gone
    assert len(sleeps) == 2


def test_throttling_honours_retry_after(sleeps: list[float]) -> None:
    server = Server(status(429, **{"Retry-After": "2"}), ok())
    downloader(server).download(URL, io.BytesIO())
    assert sleeps == [2.0]


def test_gives_up_after_max_retries_without_leaking_the_url(sleeps: list[float]) -> None:
    server = Server(*[status(500, b"<Error><Code>InternalError</Code><Message>boom</Message></Error>")] * 3)
    with pytest.raises(CallLogUnavailableError, match="gave up after 3 attempts") as err:
        downloader(server, max_retries=2).download(URL, io.BytesIO())
    assert err.value.http_status == 500
    assert len(server.requests) == 3
    assert SIGNATURE not in str(err.value)
    assert "calllogs/i-1" not in str(err.value)


@pytest.mark.parametrize("code", [403, 404])
def test_refused_url_is_signalled_distinctly_and_not_retried(code: int, sleeps: list[float]) -> None:
    server = Server(status(code, EXPIRED_XML, **{"content-type": "application/xml"}))
    with pytest.raises(CallLogUrlExpiredError, match="fetch a fresh CallLogUrl") as err:
        downloader(server).download(URL, io.BytesIO())
    assert err.value.http_status == code
    assert err.value.code == "AccessDenied"
    assert "Request has expired" in str(err.value)
    assert len(server.requests) == 1
    assert sleeps == []
    assert SIGNATURE not in str(err.value)


def test_other_4xx_is_not_retried() -> None:
    server = Server(status(400, b"bad"))
    with pytest.raises(CallLogDownloadError, match="HTTP 400") as err:
        downloader(server).download(URL, io.BytesIO())
    assert not isinstance(err.value, CallLogUnavailableError | CallLogUrlExpiredError)
    assert len(server.requests) == 1


def test_follows_a_same_host_redirect() -> None:
    server = Server(status(302, location="/calllogs/moved.json?Signature=new"), ok())
    sink = io.BytesIO()
    downloader(server).download(URL, sink)
    assert sink.getvalue() == BODY
    assert server.requests[1].url.path == "/calllogs/moved.json"


@pytest.mark.parametrize("location", ["https://evil.example.net/steal", "https://oss.example.com:8443/x"])
def test_refuses_a_redirect_to_another_host(location: str) -> None:
    server = Server(status(302, location=location), ok())
    with pytest.raises(CallLogUrlError, match="redirected to another host") as err:
        downloader(server).download(URL, io.BytesIO())
    assert len(server.requests) == 1
    assert SIGNATURE not in str(err.value)


def test_refuses_a_downgrade_redirect_to_http() -> None:
    server = Server(status(301, location="http://oss.example.com/calllogs/x"), ok())
    with pytest.raises(CallLogUrlError, match="scheme 'http' is not allowed"):
        downloader(server).download(URL, io.BytesIO())


def test_size_cap_from_content_length_reads_nothing() -> None:
    server = Server(ok(b"x" * (CAP + 1)))
    sink = io.BytesIO()
    with pytest.raises(CallLogTooLargeError, match=f"{CAP + 1} bytes, more than max_bytes={CAP}"):
        downloader(server, max_bytes=CAP).download(URL, sink)
    assert sink.getvalue() == b""


def test_size_cap_while_streaming_stops_reading() -> None:
    stream = _Endless()
    server = Server(lambda _r: httpx.Response(200, stream=stream))
    sink = io.BytesIO()
    with pytest.raises(CallLogTooLargeError, match=f"exceeds max_bytes={CAP}"):
        downloader(server, max_bytes=CAP).download(URL, sink)
    # Stopped at the cap, counted over the whole body: at most one piece beyond it was pulled.
    assert CAP < stream.pulled * 1024 <= CAP + 1024
    assert len(sink.getvalue()) <= CAP


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        CallLogDownloader(max_bytes=0)
    with pytest.raises(ValueError, match="max_retries"):
        CallLogDownloader(max_retries=-1)


def adownloader(server: Server, **settings: object) -> AsyncCallLogDownloader:
    return AsyncCallLogDownloader(transport=httpx.MockTransport(server), backoff_base=0.01, **settings)  # type: ignore[arg-type]


async def test_async_download_retries_and_hashes(sleeps: list[float]) -> None:
    server = Server(status(502), dropped, ok())
    sink = io.BytesIO()
    async with adownloader(server) as client:
        result = await client.download(SecretStr(URL), sink)
    assert sink.getvalue() == BODY
    assert result.sha256 == hashlib.sha256(BODY).hexdigest()
    assert result.attempts == 3
    assert len(sleeps) == 2


async def test_async_expired_and_cap() -> None:
    server = Server(status(403, EXPIRED_XML), lambda _r: httpx.Response(200, stream=_Endless()))
    async with adownloader(server, max_bytes=CAP) as client:
        with pytest.raises(CallLogUrlExpiredError):
            await client.download(URL, io.BytesIO())
        with pytest.raises(CallLogTooLargeError):
            await client.download(URL, io.BytesIO())


async def test_async_refuses_other_host_redirect() -> None:
    server = Server(status(307, location="https://elsewhere.example.org/x"))
    async with adownloader(server) as client:
        with pytest.raises(CallLogUrlError, match="another host"):
            await client.download(URL, io.BytesIO())


async def test_async_default_is_aiohttp_directly() -> None:
    from airflow_provider_ice.api.senders import AiohttpPool

    async with AsyncCallLogDownloader() as client:
        assert isinstance(client._pool, AiohttpPool)
        assert client._client is None


# --- the default (aiohttp) path over real sockets -------------------------------------------------


def _http(code: int, reason: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {code} {reason}", f"Content-Length: {len(body)}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@asynccontextmanager
async def raw_server(*answers: bytes | None) -> AsyncIterator[tuple[str, list[bytes]]]:
    """Answers each request line with the next raw answer (None: close without answering)."""
    remaining = list(answers)
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while remaining:
                head = await reader.readuntil(b"\r\n\r\n")
                seen.append(head.split(b"\r\n", 1)[0])
                answer = remaining.pop(0)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}", seen
    finally:
        server.close()
        await server.wait_closed()


def _plain(host: str) -> str:
    return f"http://{host}/calllogs/i-1.json?Expires=1900000000&OSSAccessKeyId=AK&Signature={SIGNATURE}"


async def test_aiohttp_follows_a_same_host_redirect_and_hashes() -> None:
    async with raw_server(
        _http(302, "Found", Location="/calllogs/moved.json?Signature=new"),
        _http(200, "OK", BODY, Content_Type="application/json"),
    ) as (host, seen):
        sink = io.BytesIO()
        async with AsyncCallLogDownloader(allow_http=True) as client:
            result = await client.download(_plain(host), sink)
    assert sink.getvalue() == BODY
    assert (result.sha256, result.content_type) == (hashlib.sha256(BODY).hexdigest(), "application/json")
    assert seen[1] == b"GET /calllogs/moved.json?Signature=new HTTP/1.1"


async def test_aiohttp_dropped_connections_are_retried_then_given_up(sleeps: list[float]) -> None:
    async with (
        raw_server(None, None, None) as (host, seen),
        AsyncCallLogDownloader(allow_http=True, max_retries=2, backoff_base=0.01) as client,
    ):
        with pytest.raises(CallLogUnavailableError, match="gave up after 3 attempts") as err:
            await client.download(_plain(host), io.BytesIO())
    assert len(seen) == 3
    assert len(sleeps) == 2
    assert SIGNATURE not in str(err.value)


async def test_aiohttp_expired_url_and_other_host_redirect_are_refused() -> None:
    async with (
        raw_server(
            _http(403, "Forbidden", EXPIRED_XML, Content_Type="application/xml"),
            _http(302, "Found", Location="http://elsewhere.example.org/x"),
        ) as (host, seen),
        AsyncCallLogDownloader(allow_http=True) as client,
    ):
        with pytest.raises(CallLogUrlExpiredError, match="fetch a fresh CallLogUrl"):
            await client.download(_plain(host), io.BytesIO())
        with pytest.raises(CallLogUrlError, match="another host"):
            await client.download(_plain(host), io.BytesIO())
    assert len(seen) == 2


async def test_aiohttp_size_cap_from_content_length() -> None:
    async with (
        raw_server(_http(200, "OK", b"x" * (CAP + 1))) as (host, _),
        AsyncCallLogDownloader(allow_http=True, max_bytes=CAP) as client,
    ):
        with pytest.raises(CallLogTooLargeError, match=f"{CAP + 1} bytes"):
            await client.download(_plain(host), io.BytesIO())


async def test_aiohttp_size_cap_counts_a_body_of_many_chunks_without_a_length() -> None:
    body = b"y" * (5 * dl.DEFAULT_CHUNK_SIZE)  # each network read below the cap, the body above it
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body
    sink = io.BytesIO()
    async with (
        raw_server(answer) as (host, _),
        AsyncCallLogDownloader(allow_http=True, max_bytes=CAP, max_retries=0) as client,
    ):
        with pytest.raises(CallLogTooLargeError, match=f"exceeds max_bytes={CAP}"):
            await client.download(_plain(host), sink)
    assert len(sink.getvalue()) <= CAP


def test_httpx_request_log_lines_carry_no_signature(caplog: pytest.LogCaptureFixture) -> None:
    server = Server(ok())
    with caplog.at_level("INFO", logger="httpx"):
        downloader(server).download(URL, io.BytesIO())
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines, "httpx logs each request at INFO"
    assert all(SIGNATURE not in line for line in lines)
    assert any("oss.example.com" in line for line in lines)
