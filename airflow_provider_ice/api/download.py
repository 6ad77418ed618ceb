"""Streaming download of a ``CallLogUrl`` (sync and async), with no Airflow import.

A CallLogUrl is a signed, expiring bearer URL (OSS-style ``Expires``/``Signature``). This module:

* accepts only ``https://`` URLs, or plain ``http://`` when the caller says the ICE endpoint itself
  is explicitly ``http://`` (the local emulator);
* never follows a redirect to another host (a signed URL must not leak its signature elsewhere);
* streams the body into a caller-supplied binary file (``seek``/``truncate`` are used to restart it
  on a retry), hashing it on the way, holding at most one chunk, and stops at a size cap;
* retries 5xx, 429/throttling and dropped or truncated connections with capped exponential backoff
  (honouring ``Retry-After``);
* raises :class:`CallLogUrlExpiredError` on 401/403/404/410, so that the caller fetches a *fresh*
  URL (ListAIAgentInstance/DescribeAIAgentInstance) instead of retrying a dead one.

The URL never appears in a log line or an exception message: errors name only the host.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import IO, TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from airflow_provider_ice.api.errors import (
    CallLogDownloadError,
    CallLogTooLargeError,
    CallLogUnavailableError,
    CallLogUrlError,
    CallLogUrlExpiredError,
    error_from_response,
    parse_retry_after,
    scrub,
)

if TYPE_CHECKING:
    from airflow_provider_ice.api.senders import AiohttpPool

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_REDIRECTS = 5
ERROR_BODY_LIMIT = 4096
REFRESH_STATUSES = frozenset({401, 403, 404, 410})
RETRY_STATUSES = frozenset({408, 425, 429})


class _RedactSignedUrls(logging.Filter):
    """Scrubs signatures from httpx's own ``HTTP Request: GET <url>`` log lines.

    httpx logs every request URL at INFO; a CallLogUrl's query is a bearer credential. Masking each
    URL with Airflow's secrets masker would cost time quadratic in the number of URLs (thousands in
    a backfill), so the signature is removed at the source instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                scrub(str(arg)) if isinstance(arg, (str, httpx.URL)) else arg for arg in record.args
            )
        return True


_HTTPX_FILTER = _RedactSignedUrls()


class _NoCookies(CookieJar):
    """A cookie jar that keeps nothing: call-log storage sets no cookie a download needs, and
    reading every response's headers into httpx's default jar costs ~10 % of a download's CPU."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


def _redact_httpx_logs() -> None:
    httpx_logger = logging.getLogger("httpx")
    if _HTTPX_FILTER not in httpx_logger.filters:
        httpx_logger.addFilter(_HTTPX_FILTER)


@dataclass(frozen=True)
class DownloadResult:
    """What was written to the sink: its size, SHA-256 and how many attempts it took."""

    bytes: int
    sha256: str
    attempts: int
    content_type: str | None = None


def _secret(url: str | SecretStr) -> str:
    return url.get_secret_value() if isinstance(url, SecretStr) else url


def check_call_log_url(url: str | SecretStr, *, allow_http: bool = False) -> httpx.URL:
    """Parse and vet a CallLogUrl; raises :class:`CallLogUrlError` naming the rule, never the URL."""
    try:
        parsed = httpx.URL(_secret(url))
    except (httpx.InvalidURL, TypeError):
        raise CallLogUrlError("call_log_url: not a valid URL") from None
    allowed = ("https", "http") if allow_http else ("https",)
    if parsed.scheme not in allowed:
        raise CallLogUrlError(
            f"call_log_url: scheme {parsed.scheme or '(none)'!r} is not allowed; "
            f"allowed: {', '.join(allowed)} "
            "(plain http only when the ICE connection's endpoint is an explicit http:// URL)"
        )
    if not parsed.host:
        raise CallLogUrlError("call_log_url: the URL has no host")
    return parsed


class _Sizer:
    """Hashes and counts the body as it streams, and enforces the cap."""

    def __init__(self, sink: IO[bytes], max_bytes: int) -> None:
        sink.seek(0)
        sink.truncate()
        self.sink = sink
        self.max_bytes = max_bytes
        self.size = 0
        self.digest = hashlib.sha256()

    def check_declared(self, status: int, headers: Mapping[str, str]) -> None:
        declared = headers.get("content-length")
        # With a Content-Encoding the declared length is the compressed one; the streamed count still applies.
        if (
            declared
            and declared.isdigit()
            and "content-encoding" not in headers
            and int(declared) > self.max_bytes
        ):
            raise CallLogTooLargeError(
                f"call log is {int(declared)} bytes, more than max_bytes={self.max_bytes}",
                http_status=status,
            )

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise CallLogTooLargeError(f"call log exceeds max_bytes={self.max_bytes} (stopped reading)")
        self.digest.update(chunk)
        self.sink.write(chunk)


@dataclass(frozen=True)
class _Retry:
    error: CallLogDownloadError
    retry_after: float | None = None


class _DownloaderBase:
    """Settings and decisions shared by the sync and async downloaders."""

    def __init__(
        self,
        *,
        allow_http: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_retries: int = 3,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        verify: bool | str = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes: must be a positive number of bytes, got {max_bytes!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries: must be 0 or more, got {max_retries!r}")
        self.allow_http = allow_http
        self.max_bytes = max_bytes
        self.max_retries = max_retries
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.verify = verify
        self.chunk_size = chunk_size
        _redact_httpx_logs()

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        base: float = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        return base * (0.5 + random.random() / 2)  # jitter: concurrent downloads do not retry in step

    def _redirect(self, status: int, headers: Mapping[str, str], current: httpx.URL) -> httpx.URL:
        location = headers.get("location")
        if not location:
            raise CallLogDownloadError(
                f"call-log storage answered HTTP {status} without a Location",
                http_status=status,
            )
        target = current.join(location)
        if target.host != current.host or target.port != current.port:
            raise CallLogUrlError(
                f"call-log storage at {current.host} redirected to another host ({target.host}); refused"
            )
        return check_call_log_url(str(target), allow_http=self.allow_http and current.scheme == "http")

    def _failure(
        self, status: int, headers: Mapping[str, str], host: str, body: bytes
    ) -> CallLogDownloadError | _Retry:
        """The error for a non-2xx, non-redirect response, wrapped in :class:`_Retry` if worth retrying."""
        parsed = error_from_response(status, body, dict(headers))
        detail = f"{parsed.code}: {parsed.message}" if parsed.code else parsed.message
        if status in REFRESH_STATUSES:
            return CallLogUrlExpiredError(
                f"call-log storage at {host} refused the URL (HTTP {status}, {detail}); "
                "it has expired or is not valid: fetch a fresh CallLogUrl",
                http_status=status,
                code=parsed.code,
            )
        error = CallLogUnavailableError(
            f"call-log storage at {host} answered HTTP {status} ({detail})",
            http_status=status,
            code=parsed.code,
        )
        if (
            status >= 500
            or status in RETRY_STATUSES
            or (parsed.code or "").startswith(("Throttling", "SlowDown"))
        ):
            return _Retry(error, parse_retry_after({k.lower(): v for k, v in headers.items()}))
        return CallLogDownloadError(str(error), http_status=status, code=parsed.code)

    @staticmethod
    def _transport_failure(err: BaseException, host: str) -> _Retry:
        kind = type(err).__name__
        # httpx puts only the low-level reason in str(err); scrub anyway in case a proxy echoes the URL.
        return _Retry(
            CallLogUnavailableError(f"download from {host} failed: {kind}: {scrub(str(err))[:200]}")
        )

    def _give_up_or_wait(self, outcome: _Retry, attempt: int) -> float:
        if attempt > self.max_retries:
            raise CallLogUnavailableError(
                f"{outcome.error} (gave up after {attempt} attempts)",
                http_status=outcome.error.http_status,
                code=outcome.error.code,
            )
        delay = self._delay(attempt, outcome.retry_after)
        log.warning(
            "Call-log download attempt %d failed (%s); retrying in %.1fs", attempt, outcome.error, delay
        )
        return delay


class CallLogDownloader(_DownloaderBase):
    """Synchronous call-log downloader (one pooled :class:`httpx.Client`).

    :param allow_http: accept plain ``http://`` URLs (only for an explicit ``http://`` ICE endpoint).
    :param max_bytes: size cap of the body, in bytes.
    :param max_retries: retries after the first attempt on 5xx, throttling and dropped connections.
    :param timeout: read timeout per network operation, in seconds.
    :param connect_timeout: connect timeout, in seconds.
    :param backoff: first backoff delay in seconds, doubled on each retry (with jitter).
    :param max_backoff: cap of one backoff delay (and of a ``Retry-After``), in seconds.
    :param verify: TLS verification: True, False, or a CA bundle path.
    :param chunk_size: bytes read per chunk (the only buffer held).
    :param transport: an httpx transport (tests).
    """

    def __init__(self, *, transport: httpx.BaseTransport | None = None, **settings: Any) -> None:
        super().__init__(**settings)
        self._client = httpx.Client(
            timeout=self.timeout,
            verify=self.verify,
            follow_redirects=False,
            transport=transport,
            cookies=_NoCookies(),
        )

    def download(self, url: str | SecretStr, sink: IO[bytes]) -> DownloadResult:
        """Stream ``url`` into ``sink`` (restarted on each retry); returns size and SHA-256."""
        target = check_call_log_url(url, allow_http=self.allow_http)
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._attempt(target, sink, attempt)
            except _RetrySignal as signal:
                time.sleep(self._give_up_or_wait(signal.outcome, attempt))

    def _attempt(self, target: httpx.URL, sink: IO[bytes], attempt: int) -> DownloadResult:
        sizer = _Sizer(sink, self.max_bytes)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                with self._client.stream("GET", target) as response:
                    status, headers = response.status_code, response.headers
                    if _is_redirect(status, headers):
                        target = self._redirect(status, headers, target)
                        continue
                    if status >= 300:
                        body = b""
                        for chunk in response.iter_bytes():
                            body += chunk
                            if len(body) >= ERROR_BODY_LIMIT:
                                break
                        raise _outcome_to_exception(self._failure(status, headers, target.host, body))
                    sizer.check_declared(status, headers)
                    for chunk in response.iter_bytes(self.chunk_size):
                        sizer.add(chunk)
                    return _result(sizer, headers, attempt)
            except httpx.TransportError as err:
                raise _RetrySignal(self._transport_failure(err, target.host)) from None
        raise CallLogUrlError(f"call-log storage at {target.host} redirected more than {MAX_REDIRECTS} times")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CallLogDownloader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCallLogDownloader(_DownloaderBase):
    """Asynchronous call-log downloader on aiohttp directly (a third of the CPU per download of
    httpx over aiohttp's transport), or on an httpx transport when one is given (tests).

    Takes the same parameters as :class:`CallLogDownloader`; share one instance across concurrent
    downloads so that connections are pooled. ``sink`` writes are synchronous: give it an in-memory
    buffer or a local file.
    """

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None, **settings: Any) -> None:
        super().__init__(**settings)
        self._client: httpx.AsyncClient | None = None
        self._pool: AiohttpPool | None = None
        self._errors: tuple[type[BaseException], ...] = (httpx.TransportError,)
        if transport is None:
            from airflow_provider_ice.api.senders import AiohttpPool

            self._pool = AiohttpPool(self.timeout, self.verify)
            self._errors = self._pool.errors
        else:
            self._client = httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, transport=transport, cookies=_NoCookies()
            )

    async def download(self, url: str | SecretStr, sink: IO[bytes]) -> DownloadResult:
        """Async twin of :meth:`CallLogDownloader.download`."""
        target = check_call_log_url(url, allow_http=self.allow_http)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(target, sink, attempt)
            except _RetrySignal as signal:
                await asyncio.sleep(self._give_up_or_wait(signal.outcome, attempt))

    @asynccontextmanager
    async def _get(self, target: httpx.URL) -> AsyncIterator[_Exchange]:
        if self._pool is not None:
            from yarl import URL

            # str(target) is already normalised and percent-encoded by httpx: yarl keeps it as is.
            url = URL(str(target), encoded=True)
            async with self._pool.session().get(url, allow_redirects=False) as reply:
                yield _Exchange(reply.status, reply.headers, reply.content.iter_chunked)
        else:
            assert self._client is not None
            async with self._client.stream("GET", target) as response:
                yield _Exchange(response.status_code, response.headers, response.aiter_bytes)

    async def _attempt(self, target: httpx.URL, sink: IO[bytes], attempt: int) -> DownloadResult:
        sizer = _Sizer(sink, self.max_bytes)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with self._get(target) as response:
                    status, headers = response.status, response.headers
                    if _is_redirect(status, headers):
                        target = self._redirect(status, headers, target)
                        continue
                    if status >= 300:
                        body = b""
                        async for chunk in response.chunks(self.chunk_size):
                            body += chunk
                            if len(body) >= ERROR_BODY_LIMIT:
                                break
                        raise _outcome_to_exception(self._failure(status, headers, target.host, body))
                    sizer.check_declared(status, headers)
                    async for chunk in response.chunks(self.chunk_size):
                        sizer.add(chunk)
                    return _result(sizer, headers, attempt)
            except self._errors as err:
                raise _RetrySignal(self._transport_failure(err, target.host)) from None
        raise CallLogUrlError(f"call-log storage at {target.host} redirected more than {MAX_REDIRECTS} times")

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        if self._client is not None:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncCallLogDownloader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@dataclass(frozen=True)
class _Exchange:
    """An open response of either HTTP stack: status, case-insensitive headers, body chunks."""

    status: int
    headers: Mapping[str, str]
    chunks: Callable[[int], AsyncIterator[bytes]]


def _is_redirect(status: int, headers: Mapping[str, str]) -> bool:
    """What ``httpx.Response.is_redirect`` says: a redirect status with a Location."""
    return status in (301, 302, 303, 307, 308) and "location" in headers


class _RetrySignal(Exception):
    """Internal: this attempt failed in a way worth retrying."""

    def __init__(self, outcome: _Retry) -> None:
        self.outcome = outcome
        super().__init__(str(outcome.error))


def _outcome_to_exception(outcome: CallLogDownloadError | _Retry) -> Exception:
    return _RetrySignal(outcome) if isinstance(outcome, _Retry) else outcome


def _result(sizer: _Sizer, headers: Mapping[str, str], attempt: int) -> DownloadResult:
    sizer.sink.flush()
    return DownloadResult(
        bytes=sizer.size,
        sha256=sizer.digest.hexdigest(),
        attempts=attempt,
        content_type=headers.get("content-type"),
    )


def download_call_log(url: str | SecretStr, sink: IO[bytes], **settings: Any) -> DownloadResult:
    """One-off sync download with a throw-away client; see :class:`CallLogDownloader` for ``settings``."""
    with CallLogDownloader(**settings) as downloader:
        return downloader.download(url, sink)


async def adownload_call_log(url: str | SecretStr, sink: IO[bytes], **settings: Any) -> DownloadResult:
    """One-off async download; see :class:`AsyncCallLogDownloader` for ``settings``."""
    async with AsyncCallLogDownloader(**settings) as downloader:
        return await downloader.download(url, sink)
