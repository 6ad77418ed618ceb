"""Streaming download of a ``CallLogUrl`` (sync and async), with no Airflow import.

A CallLogUrl is a signed, expiring bearer URL (OSS-style ``Expires``/``Signature``). This module:

* accepts only ``https://`` URLs, or plain ``http://`` when the caller says the ICE endpoint itself
  is explicitly ``http://`` (the local emulator);
* never follows a redirect to another host (a signed URL must not leak its signature elsewhere);
* streams the body into a caller-supplied binary file (``seek``/``truncate`` are used to restart it
  on a retry), hashing it on the way, and stops at a size cap counted on the *decoded* bytes, which
  are decoded in bounded pieces (:mod:`.decompress`), so a small gzip body cannot balloon in memory;
* gives every attempt a total deadline (``attempt_timeout``), so a body trickled a byte at a time
  ends too;
* retries 5xx, 429/throttling, dropped or truncated connections and attempts over their deadline
  with the client's retry policy (:mod:`.retry`: tenacity, ``backoff_base``/``backoff_cap``,
  ``Retry-After`` honoured);
* raises :class:`CallLogUrlExpiredError` on 401/403/404/410, so that the caller fetches a *fresh*
  URL (ListAIAgentInstance/DescribeAIAgentInstance) instead of retrying a dead one.

Every decision of an attempt is written once, in :mod:`.download_flow` (a generator in the manner
of httpx's ``Auth.auth_flow``); the downloaders here only carry out its I/O and run the retries.

The URL never appears in a log line or an exception message: errors name only the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr
from tenacity import AsyncRetrying, Retrying

from airflow_provider_ice.api.decompress import ACCEPT_ENCODING
from airflow_provider_ice.api.download_flow import (
    DEFAULT_ATTEMPT_TIMEOUT,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_BYTES,
    READ,
    DownloaderBase,
    DownloadResult,
    Flow,
    Head,
    NoCookies,
    check_call_log_url,
)
from airflow_provider_ice.api.errors import CallLogUnavailableError

if TYPE_CHECKING:
    from airflow_provider_ice.api.senders import AiohttpPool

__all__ = [
    "DEFAULT_ATTEMPT_TIMEOUT",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_BYTES",
    "AsyncCallLogDownloader",
    "CallLogDownloader",
    "DownloadResult",
    "adownload_call_log",
    "check_call_log_url",
    "download_call_log",
]


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


async def _asleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class CallLogDownloader(DownloaderBase):
    """Synchronous call-log downloader (one pooled :class:`httpx.Client`).

    :param allow_http: accept plain ``http://`` URLs (only for an explicit ``http://`` ICE endpoint).
    :param max_bytes: size cap of the decoded body, in bytes.
    :param max_retries: retries after the first attempt on 5xx, throttling, dropped connections and
        attempts over ``attempt_timeout`` (0-20).
    :param timeout: read timeout per network operation, in seconds.
    :param connect_timeout: connect timeout, in seconds.
    :param attempt_timeout: total time of one attempt, in seconds (checked as the body arrives).
    :param backoff_base: first retry wait in seconds, doubled per attempt, with jitter.
    :param backoff_cap: the longest computed retry wait in seconds.
    :param verify: TLS verification: True, False, or a CA bundle path.
    :param chunk_size: bytes read, and at most decoded, per step (the only buffer held).
    :param transport: an httpx transport (tests).
    """

    def __init__(self, *, transport: httpx.BaseTransport | None = None, **settings: Any) -> None:
        super().__init__(**settings)
        self._client = httpx.Client(
            timeout=self.timeout,
            verify=self.verify,
            follow_redirects=False,
            transport=transport,
            cookies=NoCookies(),
            headers={"accept-encoding": ACCEPT_ENCODING},
        )

    def download(self, url: str | SecretStr, sink: IO[bytes]) -> DownloadResult:
        """Stream ``url`` into ``sink`` (restarted on each retry); return its size and SHA-256."""
        target = check_call_log_url(url, allow_http=self.allow_http)
        attempts = 0
        try:
            for attempt in Retrying(sleep=_sleep, **self._retry):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    return self._drive(self.flow(target, sink, attempts))
        except CallLogUnavailableError as err:
            raise self._gave_up(err, attempts) from None
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _drive(self, flow: Flow) -> DownloadResult:
        """Carry out the flow's I/O with httpx."""
        host = ""
        with contextlib.ExitStack() as stack:
            try:
                step = next(flow)
                chunks: Iterator[bytes] = iter(())
                while True:
                    if step is READ:
                        step = flow.send(next(chunks, b""))
                        continue
                    stack.close()  # the previous response of a redirect
                    host = step.host
                    response = stack.enter_context(self._client.stream("GET", step))
                    chunks = response.iter_raw()  # as the network delivers: no buffering to a size
                    step = flow.send(Head(response.status_code, response.headers))
            except StopIteration as done:
                return done.value
            except httpx.TransportError as err:
                raise self._transport_failure(err, host) from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CallLogDownloader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCallLogDownloader(DownloaderBase):
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

            # Raw bytes: the flow decodes them in bounded pieces.
            self._pool = AiohttpPool(self.timeout, self.verify, auto_decompress=False)
            self._errors = self._pool.errors
        else:
            self._client = httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, transport=transport, cookies=NoCookies()
            )

    async def download(self, url: str | SecretStr, sink: IO[bytes]) -> DownloadResult:
        """Async twin of :meth:`CallLogDownloader.download`."""
        target = check_call_log_url(url, allow_http=self.allow_http)
        attempts = 0
        try:
            async for attempt in AsyncRetrying(sleep=_asleep, **self._retry):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    return await self._drive(self.flow(target, sink, attempts))
        except CallLogUnavailableError as err:
            raise self._gave_up(err, attempts) from None
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _open(self, stack: contextlib.AsyncExitStack, url: httpx.URL) -> tuple[Head, Any]:
        headers = {"accept-encoding": ACCEPT_ENCODING}
        if self._pool is not None:
            from yarl import URL

            # str(url) is already normalised and percent-encoded by httpx: yarl keeps it as is.
            get = self._pool.session().get(
                URL(str(url), encoded=True), allow_redirects=False, headers=headers
            )
            reply = await stack.enter_async_context(get)
            return Head(reply.status, reply.headers), reply.content.iter_chunked(self.chunk_size)
        assert self._client is not None
        response = await stack.enter_async_context(self._client.stream("GET", url, headers=headers))
        return Head(response.status_code, response.headers), response.aiter_raw()

    async def _drive(self, flow: Flow) -> DownloadResult:
        """Carry out the flow's I/O with aiohttp (or the given httpx transport)."""
        host = ""
        async with contextlib.AsyncExitStack() as stack:
            try:
                step = next(flow)
                chunks: Any = None
                while True:
                    if step is READ:
                        step = flow.send(await anext(chunks, b"") if chunks is not None else b"")
                        continue
                    await stack.aclose()  # the previous response of a redirect
                    host = step.host
                    head, chunks = await self._open(stack, step)
                    step = flow.send(head)
            except StopIteration as done:
                return done.value
            except self._errors as err:
                raise self._transport_failure(err, host) from None

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        if self._client is not None:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncCallLogDownloader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def download_call_log(url: str | SecretStr, sink: IO[bytes], **settings: Any) -> DownloadResult:
    """Download once with a throw-away client; see :class:`CallLogDownloader` for ``settings``."""
    with CallLogDownloader(**settings) as downloader:
        return downloader.download(url, sink)


async def adownload_call_log(url: str | SecretStr, sink: IO[bytes], **settings: Any) -> DownloadResult:
    """Download once asynchronously; see :class:`AsyncCallLogDownloader` for ``settings``."""
    async with AsyncCallLogDownloader(**settings) as downloader:
        return await downloader.download(url, sink)
