"""Every decision of a call-log download, written once and free of I/O (no Airflow import).

:meth:`DownloaderBase.flow` is one attempt as a generator, in the manner of httpx's
``Auth.auth_flow``: it yields the URL to open (and is sent the response's :class:`Head`) or
:data:`READ` (and is sent the next raw bytes, ``b""`` at the end). It follows same-host redirects,
reads error bodies, maps statuses to errors, decodes the body in bounded pieces (:mod:`.decompress`),
enforces the size cap on the decoded bytes and the attempt's total deadline, and hashes and writes
the body. :mod:`.download` drives it with httpx (sync) and aiohttp (async): only the I/O is twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import IO, Any

import httpx
from pydantic import SecretStr

from airflow_provider_ice.api.decompress import DEFAULT_MAX_BYTES, BoundedDecoder, ContentDecodingError
from airflow_provider_ice.api.errors import (
    CallLogDownloadError,
    CallLogEncodingError,
    CallLogTooLargeError,
    CallLogUnavailableError,
    CallLogUrlError,
    CallLogUrlExpiredError,
    error_from_response,
    parse_retry_after,
    scrub,
)
from airflow_provider_ice.api.retry import BackoffWait, retry_kwargs
from airflow_provider_ice.api.validation import positive_seconds, validate_flag, validate_int_range

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_REDIRECTS = 5
ERROR_BODY_LIMIT = 4096
#: Default total time of one attempt (connect, headers and the whole body), in seconds.
DEFAULT_ATTEMPT_TIMEOUT = 300.0
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


class NoCookies(CookieJar):
    """A cookie jar that keeps nothing.

    Call-log storage sets no cookie a download needs, and reading every response's headers into
    httpx's default jar costs a noticeable share of a download's CPU.
    """

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


def redact_httpx_logs() -> None:
    """Install the signature scrubber on httpx's logger (once)."""
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


class BodyWriter:
    """Writes the decoded body to the sink, hashing and counting it against the cap."""

    def __init__(self, sink: IO[bytes], max_bytes: int) -> None:
        sink.seek(0)
        sink.truncate()
        self.sink = sink
        self.max_bytes = max_bytes
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > self.max_bytes:
            raise CallLogTooLargeError(f"call log exceeds max_bytes={self.max_bytes} (stopped reading)")
        self.digest.update(piece)
        self.sink.write(piece)

    def result(self, attempt: int, content_type: str | None) -> DownloadResult:
        self.sink.flush()
        return DownloadResult(self.size, self.digest.hexdigest(), attempt, content_type)


@dataclass(frozen=True)
class Head:
    """Status line and case-insensitive headers of an opened response."""

    status: int
    headers: Mapping[str, str]


#: A flow step: open this URL (the driver answers with a :class:`Head`), or READ (raw bytes, b"" at EOF).
READ = None
Step = httpx.URL | None
Flow = Generator[Step, Any, DownloadResult]


def _is_redirect(status: int, headers: Mapping[str, str]) -> bool:
    """Return what ``httpx.Response.is_redirect`` says: a redirect status with a Location."""
    return status in (301, 302, 303, 307, 308) and "location" in headers


class DownloaderBase:
    """Settings and every decision of a download, shared by the sync and async downloaders."""

    def __init__(
        self,
        *,
        allow_http: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_retries: int = 3,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
        verify: bool | str = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.allow_http = validate_flag(allow_http, "allow_http")
        self.max_bytes = validate_int_range(max_bytes, "max_bytes", 1)
        self.max_retries = validate_int_range(max_retries, "max_retries", 0, 20)
        self.timeout = httpx.Timeout(
            positive_seconds(timeout, "timeout", maximum=3600),
            connect=positive_seconds(connect_timeout, "connect_timeout", maximum=3600),
        )
        self.attempt_timeout = positive_seconds(attempt_timeout, "attempt_timeout", maximum=86400)
        wait = BackoffWait(
            positive_seconds(backoff_base, "backoff_base", maximum=3600),
            positive_seconds(backoff_cap, "backoff_cap", maximum=3600),
        )
        self._retry = retry_kwargs(
            self.max_retries,
            wait,
            safe_to_repeat=True,
            retryable=lambda exc: isinstance(exc, CallLogUnavailableError),
        )
        self.verify = verify
        self.chunk_size = validate_int_range(chunk_size, "chunk_size", 1024, 16 * 1024 * 1024)
        redact_httpx_logs()

    def flow(self, target: httpx.URL, sink: IO[bytes], attempt: int) -> Flow:
        """One attempt, sans I/O: redirects, status rules, decoding, the cap and the deadline."""
        deadline = time.monotonic() + self.attempt_timeout
        for _ in range(MAX_REDIRECTS + 1):
            head: Head = yield target
            if _is_redirect(head.status, head.headers):
                target = self._redirect(head.status, head.headers, target)
                continue
            if head.status >= 300:
                body = b""
                while len(body) < ERROR_BODY_LIMIT and (piece := (yield READ)):
                    body += piece
                raise self._failure(head.status, head.headers, target.host, body)
            declared = head.headers.get("content-length")
            # With a Content-Encoding the declared length is the compressed one; the decoded count applies.
            if (
                declared
                and declared.isdigit()
                and "content-encoding" not in head.headers
                and int(declared) > self.max_bytes
            ):
                raise CallLogTooLargeError(
                    f"call log is {int(declared)} bytes, more than max_bytes={self.max_bytes}",
                    http_status=head.status,
                )
            writer = BodyWriter(sink, self.max_bytes)
            try:
                decoder = BoundedDecoder(head.headers.get("content-encoding"), self.chunk_size)
                while raw := (yield READ):
                    for piece in decoder.feed(raw):
                        writer.write(piece)
                    if time.monotonic() > deadline:
                        raise CallLogUnavailableError(
                            f"download from {target.host} took longer than "
                            f"attempt_timeout={self.attempt_timeout:g}s (stopped reading)"
                        )
                for piece in decoder.finish():
                    writer.write(piece)
            except ContentDecodingError as err:
                raise CallLogEncodingError(
                    f"call log from {target.host}: {err}", http_status=head.status
                ) from None
            return writer.result(attempt, head.headers.get("content-type"))
        raise CallLogUrlError(f"call-log storage at {target.host} redirected more than {MAX_REDIRECTS} times")

    def _redirect(self, status: int, headers: Mapping[str, str], current: httpx.URL) -> httpx.URL:
        location = headers.get("location")
        if not location:
            raise CallLogDownloadError(
                f"call-log storage answered HTTP {status} without a Location", http_status=status
            )
        target = current.join(location)
        if target.host != current.host or target.port != current.port:
            raise CallLogUrlError(
                f"call-log storage at {current.host} redirected to another host ({target.host}); refused"
            )
        return check_call_log_url(str(target), allow_http=self.allow_http and current.scheme == "http")

    @staticmethod
    def _failure(status: int, headers: Mapping[str, str], host: str, body: bytes) -> CallLogDownloadError:
        """Return the error for a non-2xx, non-redirect response (a CallLogUnavailableError is retried)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        with contextlib.suppress(ContentDecodingError):  # an encoded error page: best effort, bounded
            decoded = b""
            for piece in BoundedDecoder(lowered.get("content-encoding"), ERROR_BODY_LIMIT).feed(body):
                decoded += piece
                if len(decoded) >= ERROR_BODY_LIMIT:
                    break
            body = decoded or body
        parsed = error_from_response(status, body, lowered)
        detail = f"{parsed.code}: {parsed.message}" if parsed.code else parsed.message
        if status in REFRESH_STATUSES:
            return CallLogUrlExpiredError(
                f"call-log storage at {host} refused the URL (HTTP {status}, {detail}); "
                "it has expired or is not valid: fetch a fresh CallLogUrl",
                http_status=status,
                code=parsed.code,
            )
        message = f"call-log storage at {host} answered HTTP {status} ({detail})"
        if (
            status >= 500
            or status in RETRY_STATUSES
            or (parsed.code or "").startswith(("Throttling", "SlowDown"))
        ):
            retry_after = parse_retry_after(lowered)
            return CallLogUnavailableError(
                message, http_status=status, code=parsed.code, retry_after=retry_after
            )
        return CallLogDownloadError(message, http_status=status, code=parsed.code)

    @staticmethod
    def _transport_failure(err: BaseException, host: str) -> CallLogUnavailableError:
        # httpx puts only the low-level reason in str(err); scrub anyway in case a proxy echoes the URL.
        return CallLogUnavailableError(
            f"download from {host} failed: {type(err).__name__}: {scrub(str(err))[:200]}"
        )

    @staticmethod
    def _gave_up(err: CallLogUnavailableError, attempts: int) -> CallLogUnavailableError:
        return CallLogUnavailableError(
            f"{err} (gave up after {attempts} attempts)", http_status=err.http_status, code=err.code
        )
