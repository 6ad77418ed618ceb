"""Call-log download limits: a cap several chunks large, decompression bombs, broken encodings,
a body trickled past the attempt's deadline, and settings refused before any request."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import math
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_ice.api.download import DEFAULT_CHUNK_SIZE, AsyncCallLogDownloader, CallLogDownloader
from airflow_provider_ice.api.errors import (
    CallLogEncodingError,
    CallLogTooLargeError,
    CallLogUnavailableError,
    CallLogUrlExpiredError,
    IceValidationError,
)
from tests.unit.api.fakes import streamed

URL = "https://oss.example.com/calllogs/i-1.json?Expires=1900000000&Signature=c2ln"
CHUNK = DEFAULT_CHUNK_SIZE
#: Several chunks: a cap checked per chunk instead of over the whole body never trips.
CAP = 3 * CHUNK + 100


class Recorder:
    """Answers every request with ``make()``; counts requests."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.requests = 0

    def __call__(self, _request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return self.make()


def sync(handler: Recorder, **settings: Any) -> CallLogDownloader:
    return CallLogDownloader(transport=httpx.MockTransport(handler), backoff_base=0.01, **settings)


def both(handler: Recorder, sink: io.BytesIO, **settings: Any) -> list[Any]:
    """Run the download with the sync and the async downloader; return each outcome (result or error)."""
    outcomes: list[Any] = []
    try:
        outcomes.append(sync(handler, **settings).download(URL, sink))
    except Exception as err:
        outcomes.append(err)

    async def run() -> Any:
        transport = httpx.MockTransport(handler)
        async with AsyncCallLogDownloader(transport=transport, backoff_base=0.01, **settings) as client:
            return await client.download(URL, sink)

    try:
        outcomes.append(asyncio.run(run()))
    except Exception as err:
        outcomes.append(err)
    return outcomes


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body of ``count`` full chunks (each below the cap), sent as a chunked stream."""

    def __init__(self, count: int, delay: float = 0.0, size: int = CHUNK) -> None:
        self.count, self.delay, self.size, self.pulled = count, delay, size, 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.count):
            self.pulled += 1
            time.sleep(self.delay)
            yield b"x" * self.size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.pulled += 1
            await asyncio.sleep(self.delay)
            yield b"x" * self.size


def test_the_cap_counts_the_whole_body_not_one_chunk() -> None:
    stream = Chunks(5)  # 5 chunks, each one under the cap, together over it
    handler = Recorder(lambda: httpx.Response(200, stream=stream))
    sink = io.BytesIO()
    outcomes = both(handler, sink, max_bytes=CAP)
    assert all(isinstance(o, CallLogTooLargeError) for o in outcomes), outcomes
    assert "max_bytes=" + str(CAP) in str(outcomes[0])
    assert len(sink.getvalue()) <= CAP  # nothing past the cap reached the sink
    assert handler.requests == 2  # not retried, by either downloader


def test_a_body_just_under_a_multi_chunk_cap_passes_whole() -> None:
    body = b"y" * (CAP - 1)
    handler = Recorder(lambda: streamed(200, body))
    for outcome in both(handler, io.BytesIO(), max_bytes=CAP):
        assert outcome.bytes == CAP - 1
        assert outcome.sha256 == hashlib.sha256(body).hexdigest()


def test_a_declared_length_over_a_multi_chunk_cap_reads_nothing() -> None:
    handler = Recorder(lambda: streamed(200, b"z" * (CAP + 1)))
    sink = io.BytesIO()
    outcomes = both(handler, sink, max_bytes=CAP)
    assert all(isinstance(o, CallLogTooLargeError) and f"{CAP + 1} bytes" in str(o) for o in outcomes)
    assert sink.getvalue() == b""


def test_gzip_body_is_decoded_and_hashed_as_decoded() -> None:
    body = b'{"Turns": []}' * 1000
    handler = Recorder(lambda: streamed(200, gzip.compress(body), **{"content-encoding": "gzip"}))
    for outcome in both(handler, io.BytesIO()):
        assert (outcome.bytes, outcome.sha256) == (len(body), hashlib.sha256(body).hexdigest())


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_decompression_bomb_is_stopped_in_bounded_memory(coding: str) -> None:
    expanded = 64 * 1024 * 1024  # 64 MiB of zeros is ~64 KiB compressed: one network read
    packer = zlib.compressobj(9, zlib.DEFLATED, 31 if coding == "gzip" else 15)
    bomb = packer.compress(bytes(expanded)) + packer.flush()
    assert len(bomb) < 100 * 1024
    handler = Recorder(lambda: streamed(200, bomb, **{"content-encoding": coding}))
    sink = io.BytesIO()
    tracemalloc.start()
    try:
        with pytest.raises(CallLogTooLargeError, match=f"max_bytes={CAP}"):
            sync(handler, max_bytes=CAP).download(URL, sink)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The body was never expanded whole: memory stayed within a few chunks of the cap.
    assert peak < CAP + 8 * CHUNK + len(bomb) * 3, f"peak {peak} bytes"
    assert len(sink.getvalue()) <= CAP


@pytest.mark.parametrize(
    ("coding", "body", "words"),
    [
        ("gzip", b"definitely not gzip", "does not decode"),
        ("gzip", gzip.compress(b"x" * 5000)[:-12], "ended before its end marker"),
        ("deflate", b"\xff" * 64, "does not decode"),
        ("br", b"anything", "'br' is not supported"),
    ],
)
def test_a_broken_content_encoding_is_a_typed_error_not_retried(coding: str, body: bytes, words: str) -> None:
    handler = Recorder(lambda: streamed(200, body, **{"content-encoding": coding}))
    outcomes = both(handler, io.BytesIO(), max_retries=3)
    for outcome in outcomes:
        assert isinstance(outcome, CallLogEncodingError), outcome
        assert words in str(outcome)
        assert "Signature" not in str(outcome)
    assert handler.requests == 2  # one per downloader: the same bytes would come back


def test_the_downloaders_ask_only_for_codings_they_decode() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["accept-encoding"])
        return streamed(200, b"{}")

    CallLogDownloader(transport=httpx.MockTransport(handler)).download(URL, io.BytesIO())

    async def run() -> None:
        async with AsyncCallLogDownloader(transport=httpx.MockTransport(handler)) as client:
            await client.download(URL, io.BytesIO())

    asyncio.run(run())
    assert seen == ["gzip, deflate", "gzip, deflate"]


def test_a_trickled_body_ends_at_the_attempt_deadline_and_is_retried() -> None:
    streams: list[Chunks] = []

    def trickle() -> httpx.Response:
        streams.append(Chunks(10_000, delay=0.02, size=1))  # one byte every 20 ms, for minutes
        return httpx.Response(200, stream=streams[-1])

    handler = Recorder(trickle)
    started = time.monotonic()
    outcomes = both(handler, io.BytesIO(), attempt_timeout=0.3, max_retries=1, timeout=5)
    elapsed = time.monotonic() - started
    for outcome in outcomes:
        assert isinstance(outcome, CallLogUnavailableError), outcome
        assert "attempt_timeout=0.3s" in str(outcome)
        assert "gave up after 2 attempts" in str(outcome)
    assert handler.requests == 4  # two attempts per downloader
    assert elapsed < 4, elapsed  # 4 attempts of 0.3 s, not 10,000 bytes x 20 ms each
    assert all(s.pulled < 40 for s in streams)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("max_bytes", "10"),
        ("max_bytes", math.nan),
        ("max_bytes", 0),
        ("max_bytes", True),
        ("max_retries", "3"),
        ("max_retries", -1),
        ("timeout", -1),
        ("timeout", None),
        ("timeout", math.inf),
        ("connect_timeout", "5"),
        ("attempt_timeout", 0),
        ("backoff_base", math.nan),
        ("backoff_cap", -2),
        ("allow_http", "False"),
        ("chunk_size", 10),
    ],
)
def test_bad_settings_are_refused_by_name_before_any_request(setting: str, value: Any) -> None:
    handler = Recorder(lambda: streamed(200, b"{}"))
    for make in (CallLogDownloader, AsyncCallLogDownloader):
        with pytest.raises(IceValidationError) as caught:
            make(transport=httpx.MockTransport(handler), **{setting: value})
        assert caught.value.parameter == setting
        assert str(caught.value).startswith(f"{setting}: must be")
    assert handler.requests == 0


def test_an_encoded_error_page_is_read_decoded_and_bounded() -> None:
    xml = b"<Error><Code>AccessDenied</Code><Message>Request has expired.</Message></Error>"
    handler = Recorder(lambda: streamed(403, gzip.compress(xml), **{"content-encoding": "gzip"}))
    for outcome in both(handler, io.BytesIO()):
        assert isinstance(outcome, CallLogUrlExpiredError)
        assert outcome.code == "AccessDenied"
    bomb = gzip.compress(bytes(32 * 1024 * 1024))  # an error page that would expand to 32 MiB
    handler = Recorder(lambda: streamed(500, bomb, **{"content-encoding": "gzip"}))
    tracemalloc.start()
    try:
        with pytest.raises(CallLogUnavailableError, match="HTTP 500"):
            sync(handler, max_retries=0).download(URL, io.BytesIO())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes"
