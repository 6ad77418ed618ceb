"""Putting a signed request on the wire: one small sender per HTTP stack, all with one contract.

``send(action, signed)`` returns ``(status, headers, body)`` or raises
:class:`~.errors.IceTransportError` saying whether the request may have reached the service.
Signing, response parsing and retries live in :mod:`.protocol`, :mod:`.retry` and :mod:`.client`
and are the same whatever the sender.

* :class:`HttpxSender` (sync) and :class:`HttpxAsyncSender` hand an :class:`httpx.Request` straight
  to an httpx transport. ``httpx.Client.send`` around it adds a cookie jar, auth and redirect
  handling that ICE never uses (its cost is measured in ``benchmarks/analysis.md``).
* :class:`AiohttpSender` (the async default) uses aiohttp directly: httpx over aiohttp's transport
  re-wraps every request and response in httpx models (figures in ``benchmarks/analysis.md``). The
  async client takes the httpx path only when a caller passes an httpx transport (tests use
  :class:`httpx.MockTransport`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from .errors import IceTransportError, scrub
from .signing import SignedRequest

if TYPE_CHECKING:
    import aiohttp

#: What a sender returns: HTTP status, case-insensitive response headers, the whole body.
RawResponse = tuple[int, Mapping[str, str], bytes]

#: Pool size and idle keep-alive of the aiohttp pool: httpx's defaults, as before.
MAX_CONNECTIONS = 100
KEEPALIVE_SECONDS = 5.0


def transport_error(exc: BaseException, action: str) -> IceTransportError:
    """Wrap an httpx or aiohttp error, recording whether the request may have reached the service."""
    return IceTransportError(
        f"{type(exc).__name__}: {scrub(str(exc)) or 'no detail'}",
        action=action,
        sent=_may_have_been_sent(exc),
    )


def _may_have_been_sent(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
    if cause is not None and type(cause).__module__.startswith("aiohttp"):
        # Judge aiohttp errors by aiohttp's own classes: httpx-aiohttp maps every connection error
        # (a server disconnect or reset after the request went out included) to ConnectTimeout.
        import aiohttp

        return not isinstance(cause, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
    # Connection refused, DNS failure, TLS handshake failure, connect/pool timeout: nothing was sent.
    return not isinstance(
        exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
    )


def _httpx_request(url: str, signed: SignedRequest, timeout: dict[str, Any]) -> httpx.Request:
    return httpx.Request(
        signed.method,
        url,
        headers=signed.headers,
        content=signed.body,
        extensions={"timeout": timeout},
    )


class HttpxSender:
    """Synchronous sender on an httpx transport.

    :param base_url: ``scheme://host[:port]`` of the endpoint.
    :param timeout: connect/read/write/pool timeouts.
    :param verify: ``True``, ``False`` or an SSL context (see :func:`.protocol.tls_verify`).
    :param transport: an httpx transport; by default the one :class:`httpx.Client` would pick for
        ``base_url`` (a pooled HTTP/1.1 transport, or a proxy from the environment).
    """

    def __init__(
        self,
        base_url: str,
        timeout: httpx.Timeout,
        verify: bool | ssl.SSLContext,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._base_url = base_url
        self._timeout = timeout.as_dict()
        # The client owns the pool (and closes it); requests skip its per-call machinery.
        self._client = httpx.Client(timeout=timeout, verify=verify, transport=transport)
        self._transport = self._client._transport_for_url(httpx.URL(base_url))

    def send(self, action: str, signed: SignedRequest) -> RawResponse:
        request = _httpx_request(self._base_url + signed.target, signed, self._timeout)
        try:
            response = self._transport.handle_request(request)
            try:
                body = response.read()
            finally:
                response.close()
        except httpx.TransportError as exc:
            raise transport_error(exc, action) from exc
        return response.status_code, response.headers, body

    def close(self) -> None:
        self._client.close()


class HttpxAsyncSender:
    """Asynchronous sender on a caller's httpx transport (tests: :class:`httpx.MockTransport`).

    :param base_url: ``scheme://host[:port]`` of the endpoint.
    :param timeout: connect/read/write/pool timeouts.
    :param transport: the async httpx transport to send through.
    """

    def __init__(self, base_url: str, timeout: httpx.Timeout, transport: httpx.AsyncBaseTransport) -> None:
        self._base_url = base_url
        self._timeout = timeout.as_dict()
        self._transport = transport

    async def send(self, action: str, signed: SignedRequest) -> RawResponse:
        request = _httpx_request(self._base_url + signed.target, signed, self._timeout)
        try:
            response = await self._transport.handle_async_request(request)
            try:
                body = await response.aread()
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            raise transport_error(exc, action) from exc
        return response.status_code, response.headers, body

    async def aclose(self) -> None:
        await self._transport.aclose()


class AiohttpPool:
    """A lazily opened aiohttp session with httpx's TLS set-up and timeouts, and no cookie jar.

    The session is opened on first use inside the running event loop (aiohttp sessions are bound
    to their loop). Shared by the client's :class:`AiohttpSender` and the call-log downloader.

    :param timeout: connect/read/pool timeouts, applied as httpx (and httpx-aiohttp) apply them.
    :param verify: ``True``, ``False``, a CA bundle path or an SSL context, as httpx takes it.
    :param skip_auto_headers: headers aiohttp must not add on its own.
    :param auto_decompress: let aiohttp undo ``Content-Encoding`` (False: the caller decodes).
    """

    def __init__(
        self,
        timeout: httpx.Timeout,
        verify: bool | str | ssl.SSLContext,
        *,
        skip_auto_headers: tuple[str, ...] = (),
        auto_decompress: bool = True,
    ) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        # The same TLS context httpx would build (certifi CAs, SSL_CERT_FILE, or no verification).
        self._ssl = httpx.create_ssl_context(verify=verify)
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout.pool, sock_connect=timeout.connect, sock_read=timeout.read
        )
        self._skip = skip_auto_headers
        self._auto_decompress = auto_decompress
        self._session: aiohttp.ClientSession | None = None
        #: What aiohttp raises for a failed exchange (timeouts included).
        self.errors: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            aiohttp = self._aiohttp
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS, ssl=self._ssl
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=self._skip,
                timeout=self._timeout,
                auto_decompress=self._auto_decompress,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class AiohttpSender:
    """Asynchronous sender on aiohttp directly, one pool per sender.

    No headers of aiohttp's own: every header sent is one the signer chose (``content-type``
    included, and signed).

    :param base_url: ``scheme://host[:port]`` of the endpoint.
    :param timeout: connect/read/pool timeouts.
    :param verify: ``True``, ``False`` or an SSL context (see :func:`.protocol.tls_verify`).
    """

    def __init__(self, base_url: str, timeout: httpx.Timeout, verify: bool | ssl.SSLContext) -> None:
        from yarl import URL

        self._url = URL
        self._base_url = base_url
        self._pool = AiohttpPool(
            timeout, verify, skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
        )

    async def send(self, action: str, signed: SignedRequest) -> RawResponse:
        # The target is already percent-encoded exactly as signed: yarl must not re-encode it.
        url = self._url(self._base_url + signed.target, encoded=True)
        try:
            async with self._pool.session().request(
                signed.method, url, data=signed.body or None, headers=signed.headers, allow_redirects=False
            ) as response:
                return response.status, response.headers, await response.read()
        except self._pool.errors as exc:
            raise transport_error(exc, action) from exc

    async def aclose(self) -> None:
        await self._pool.aclose()
