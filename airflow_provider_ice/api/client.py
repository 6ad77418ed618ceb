"""Signed ICE OpenAPI clients: :class:`IceClient` (httpx, pooled) and :class:`AsyncIceClient`
(aiohttp directly, or any httpx async transport a caller passes).

Both share signing and parsing (:mod:`.transport`), the retry policy (:mod:`.retry`) and the
contract of their senders (:mod:`.senders`). The first attempt of a call runs without tenacity:
a ``Retrying`` object is built only after a retryable failure, and that failure is replayed into
it, so waits, logs and the attempt count are exactly tenacity's.

No Airflow import here: the hook is a thin adapter that builds these from a Connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel
from tenacity import AsyncRetrying, Retrying

from . import operations as ops
from .errors import IceError, IceThrottlingError, IceValidationError
from .models import (
    AIAgentConfig,
    AIAgentInstance,
    DescribeAIAgentInstanceResponse,
    GenerateAIAgentCallResponse,
    ListAIAgentInstanceResponse,
    StartAIAgentOutboundCallResponse,
    StopAIAgentInstanceResponse,
)
from .pagination import ListingPlan, PageRequest
from .ratelimit import RateLimits, client_limiter
from .retry import BackoffWait, is_retryable, outcome_unknown, replay_first, retry_kwargs
from .senders import AiohttpSender, HttpxAsyncSender, HttpxSender, RawResponse
from .signing import Credentials
from .transport import (
    RequestBuilder,
    SecretCallback,
    default_user_agent,
    is_safe_to_repeat,
    parse_endpoint,
    tls_verify,
)
from .validation import validate_int_range

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 3


def _positive_seconds(value: Any, parameter: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise IceValidationError(parameter, f"must be a number of seconds in (0, 3600], got {value!r}")
    return float(value)


class _ClientBase:
    """Configuration shared by both clients (no I/O in the constructor)."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        endpoint: str,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        verify: bool | str = True,
        user_agent: str | None = None,
        on_secret: SecretCallback | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 20.0,
        sign_content_type: bool = False,
        rate_limits: RateLimits | None = None,
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise TypeError("credentials must be an airflow_provider_ice.api.signing.Credentials")
        self._endpoint = parse_endpoint(endpoint)
        self.timeout = httpx.Timeout(
            _positive_seconds(timeout, "timeout"),
            connect=_positive_seconds(connect_timeout, "connect_timeout"),
        )
        self.max_retries = validate_int_range(max_retries, "max_retries", 0, 20)
        self._verify = tls_verify(verify) if self._endpoint.scheme == "https" else True
        agent = default_user_agent()
        self.user_agent = f"{agent} {user_agent}" if user_agent else agent
        self._builder = RequestBuilder(
            credentials, self._endpoint, self.user_agent, on_secret, sign_content_type=sign_content_type
        )
        self._wait = BackoffWait(backoff_base, backoff_cap)
        self._retry = {
            safe: retry_kwargs(self.max_retries, self._wait, safe_to_repeat=safe) for safe in (True, False)
        }
        # Shared by every client of the same AccessKey ID and endpoint in this process (None: off).
        self._limiter = client_limiter((credentials.access_key_id, self._endpoint.url), rate_limits)

    @property
    def endpoint(self) -> str:
        """The endpoint URL, e.g. ``https://ice.cn-shanghai.aliyuncs.com``."""
        return self._endpoint.url

    def _parse(self, model: type[M], data: dict[str, Any], action: str) -> M:
        try:
            return ops.parse_model(model, data, action)
        except IceError as exc:
            converted = outcome_unknown(exc, action, safe_to_repeat=is_safe_to_repeat(action))
            if converted is exc:
                raise
            raise converted from exc

    def _finish(self, action: str, response: RawResponse, started: float) -> dict[str, Any]:
        status, headers, body = response
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "ICE %s -> HTTP %d in %.1f ms (RequestId %s)",
                action,
                status,
                (time.perf_counter() - started) * 1000,
                headers.get("x-acs-request-id", "-"),
            )
        return self._builder.parse(action, status, headers, body)

    def _first_failure(self, exc: IceError, action: str) -> None:
        """After a failed first attempt: raise the final error unless tenacity should take over."""
        if self.max_retries == 0 or not is_retryable(exc, safe_to_repeat=is_safe_to_repeat(action)):
            self._raise_final(exc, action)

    @staticmethod
    def _raise_final(exc: IceError, action: str) -> None:
        converted = outcome_unknown(exc, action, safe_to_repeat=is_safe_to_repeat(action))
        if converted is exc:
            raise exc
        raise converted from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.endpoint!r})"


class IceClient(_ClientBase):
    """Synchronous ICE client on a pooled :class:`httpx.Client`.

    :param credentials: AccessKey pair (and optional STS token).
    :param endpoint: ``https://ice.<region>.aliyuncs.com``, a bare host (HTTPS), or an ``http://`` URL
        (local emulator only).
    :param timeout: read timeout in seconds (default 10).
    :param connect_timeout: connect timeout in seconds (default 5).
    :param max_retries: retries after the first attempt (0..20, default 3); see :mod:`.retry`.
    :param verify: TLS verification: True, False (warned about) or a CA bundle path.
    :param user_agent: appended to ``airflow-provider-ice/<version> ...``.
    :param transport: an httpx transport (tests: :class:`httpx.MockTransport`).
    :param on_secret: called with every secret the client handles (for log masking).
    :param backoff_base: first retry wait in seconds, doubled per attempt, with jitter.
    :param backoff_cap: the longest computed retry wait in seconds.
    :param rate_limits: requests per second per action, shared with every client of the same
        AccessKey ID and endpoint in the process (see :mod:`.ratelimit`); None: unlimited.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        endpoint: str,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        verify: bool | str = True,
        user_agent: str | None = None,
        transport: httpx.BaseTransport | None = None,
        on_secret: SecretCallback | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 20.0,
        rate_limits: RateLimits | None = None,
    ) -> None:
        super().__init__(
            credentials,
            endpoint=endpoint,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            verify=verify,
            user_agent=user_agent,
            on_secret=on_secret,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            rate_limits=rate_limits,
        )
        self._sleep: Callable[[float], None] = time.sleep
        self._sender = HttpxSender(self._endpoint.url, self.timeout, self._verify, transport)

    def _attempt(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        limiter = self._limiter
        if limiter is not None:
            delay, ticket = limiter.reserve(action)
            if delay:
                self._sleep(delay)
        signed = self._builder.sign(action, params)
        started = time.perf_counter()
        try:
            return self._finish(action, self._sender.send(action, signed), started)
        except IceThrottlingError:
            if limiter is not None:
                limiter.on_throttled(action, ticket)
            raise

    def _call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._attempt(action, params)
        except IceError as exc:
            self._first_failure(exc, action)
            first = exc
        retrying = Retrying(sleep=self._sleep, **self._retry[is_safe_to_repeat(action)])
        try:
            return retrying(replay_first(first, self._attempt), action, params)
        except IceError as exc:
            self._raise_final(exc, action)
            raise  # pragma: no cover - _raise_final always raises

    def call_api(self, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call any ICE action; returns the raw JSON body (unknown fields included).

        Actions whose name starts with List/Describe/Get/Query/Search/Stop are retried like reads;
        any other action is treated as creating something and never repeated once it may have
        been sent.
        """
        return self._call(action, ops.raw_params(action, params))

    def generate_ai_agent_call(
        self,
        agent_id: str,
        *,
        user_id: str | None = None,
        user_data: str | dict[str, Any] | None = None,
        session_id: str | None = None,
        expire: int | None = None,
        agent_config: dict[str, Any] | AIAgentConfig | None = None,
        template_config: dict[str, Any] | None = None,
        chat_sync_config: dict[str, Any] | None = None,
    ) -> GenerateAIAgentCallResponse:
        """Start an agent call (GenerateAIAgentCall). Raises IceOutcomeUnknownError when unsure."""
        params = ops.generate_params(
            agent_id,
            user_id=user_id,
            user_data=user_data,
            session_id=session_id,
            expire=expire,
            agent_config=agent_config,
            template_config=template_config,
            chat_sync_config=chat_sync_config,
        )
        return self._parse(GenerateAIAgentCallResponse, self._call(ops.GENERATE, params), ops.GENERATE)

    def start_ai_agent_outbound_call(
        self,
        agent_id: str,
        *,
        called_number: str,
        caller_number: str,
        config: dict[str, Any] | None = None,
        session_id: str | None = None,
        user_data: str | dict[str, Any] | None = None,
    ) -> StartAIAgentOutboundCallResponse:
        """Place a PSTN call (StartAIAgentOutboundCall). Raises IceOutcomeUnknownError when unsure."""
        params = ops.outbound_params(
            agent_id,
            called_number=called_number,
            caller_number=caller_number,
            config=config,
            session_id=session_id,
            user_data=user_data,
        )
        data = self._call(ops.START_OUTBOUND, params)
        return self._parse(StartAIAgentOutboundCallResponse, data, ops.START_OUTBOUND)

    def list_ai_agent_instances_page(
        self,
        agent_id: str,
        *,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        page_size: int = 100,
        page_number: int = 1,
    ) -> ListAIAgentInstanceResponse:
        """One page of ListAIAgentInstance (``StartTime`` inclusive, ``EndTime`` exclusive)."""
        start, end = ops.list_window(agent_id, start_time, end_time, page_size)
        params = ops.list_params(agent_id, start, end, page_size, page_number)
        return self._parse(
            ListAIAgentInstanceResponse, self._call(ops.LIST_INSTANCES, params), ops.LIST_INSTANCES
        )

    def list_ai_agent_instances(
        self,
        agent_id: str,
        *,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        page_size: int = 100,
    ) -> Iterator[AIAgentInstance]:
        """Every instance of ``agent_id`` in the window, newest first, across pages and split
        windows (see :mod:`.pagination`). Arguments are validated when this is called."""
        start, end = ops.list_window(agent_id, start_time, end_time, page_size)
        return self._iterate(agent_id, ListingPlan(start, end, page_size))

    def _iterate(self, agent_id: str, plan: ListingPlan[AIAgentInstance]) -> Iterator[AIAgentInstance]:
        while (request := plan.next_request()) is not None:
            yield from plan.feed(request, self._fetch(agent_id, request))

    def _fetch(self, agent_id: str, request: PageRequest) -> list[AIAgentInstance]:
        params = ops.list_params(agent_id, request.start, request.end, request.page_size, request.page_number)
        data = self._call(ops.LIST_INSTANCES, params)
        return self._parse(ListAIAgentInstanceResponse, data, ops.LIST_INSTANCES).instances

    def describe_ai_agent_instance(self, instance_id: str) -> AIAgentInstance:
        """DescribeAIAgentInstance: status, CallLogUrl (a secret), SessionId, times, CallInfo."""
        data = self._call(ops.DESCRIBE_INSTANCE, ops.instance_params(instance_id))
        return self._parse(DescribeAIAgentInstanceResponse, data, ops.DESCRIBE_INSTANCE).instance

    def stop_ai_agent_instance(self, instance_id: str) -> StopAIAgentInstanceResponse:
        """StopAIAgentInstance (safe to repeat)."""
        data = self._call(ops.STOP_INSTANCE, ops.instance_params(instance_id))
        return self._parse(StopAIAgentInstanceResponse, data, ops.STOP_INSTANCE)

    def close(self) -> None:
        self._sender.close()

    def __enter__(self) -> IceClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncIceClient(_ClientBase):
    """Asynchronous ICE client on aiohttp directly (one pool per event loop).

    Create and use it inside one event loop; the pool is bound to the loop that first sends.

    :param credentials: AccessKey pair (and optional STS token).
    :param endpoint: ``https://ice.<region>.aliyuncs.com``, a bare host (HTTPS), or an ``http://`` URL.
    :param timeout: read timeout in seconds (default 10).
    :param connect_timeout: connect timeout in seconds (default 5).
    :param max_retries: retries after the first attempt (0..20, default 3).
    :param verify: TLS verification: True, False (warned about) or a CA bundle path.
    :param user_agent: appended to ``airflow-provider-ice/<version> ...``.
    :param transport: an async httpx transport to send through instead of aiohttp (tests:
        :class:`httpx.MockTransport`).
    :param on_secret: called with every secret the client handles (for log masking).
    :param backoff_base: first retry wait in seconds, doubled per attempt, with jitter.
    :param backoff_cap: the longest computed retry wait in seconds.
    :param rate_limits: requests per second per action, shared with every client of the same
        AccessKey ID and endpoint in the process (see :mod:`.ratelimit`); None: unlimited.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        endpoint: str,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        verify: bool | str = True,
        user_agent: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        on_secret: SecretCallback | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 20.0,
        rate_limits: RateLimits | None = None,
    ) -> None:
        super().__init__(
            credentials,
            endpoint=endpoint,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            verify=verify,
            user_agent=user_agent,
            on_secret=on_secret,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            rate_limits=rate_limits,
            # aiohttp adds "content-type: application/octet-stream" to a body-less POST; an
            # unsigned content-type is rejected (IncompleteSignature), so send a signed one.
            sign_content_type=True,
        )
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        # aiohttp (imported by AiohttpSender, ~100 ms) only when no httpx transport is given.
        self._sender: AiohttpSender | HttpxAsyncSender = (
            AiohttpSender(self._endpoint.url, self.timeout, self._verify)
            if transport is None
            else HttpxAsyncSender(self._endpoint.url, self.timeout, transport)
        )

    async def _attempt(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        limiter = self._limiter
        if limiter is not None:
            delay, ticket = limiter.reserve(action)
            if delay:
                await self._sleep(delay)
        signed = self._builder.sign(action, params)
        started = time.perf_counter()
        try:
            return self._finish(action, await self._sender.send(action, signed), started)
        except IceThrottlingError:
            if limiter is not None:
                limiter.on_throttled(action, ticket)
            raise

    async def _call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._attempt(action, params)
        except IceError as exc:
            self._first_failure(exc, action)
            first = exc
        retrying = AsyncRetrying(sleep=self._sleep, **self._retry[is_safe_to_repeat(action)])
        try:
            return await retrying(replay_first(first, self._attempt), action, params)
        except IceError as exc:
            self._raise_final(exc, action)
            raise  # pragma: no cover

    async def call_api(self, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Async twin of :meth:`IceClient.call_api`."""
        return await self._call(action, ops.raw_params(action, params))

    async def generate_ai_agent_call(
        self,
        agent_id: str,
        *,
        user_id: str | None = None,
        user_data: str | dict[str, Any] | None = None,
        session_id: str | None = None,
        expire: int | None = None,
        agent_config: dict[str, Any] | AIAgentConfig | None = None,
        template_config: dict[str, Any] | None = None,
        chat_sync_config: dict[str, Any] | None = None,
    ) -> GenerateAIAgentCallResponse:
        """Async twin of :meth:`IceClient.generate_ai_agent_call`."""
        params = ops.generate_params(
            agent_id,
            user_id=user_id,
            user_data=user_data,
            session_id=session_id,
            expire=expire,
            agent_config=agent_config,
            template_config=template_config,
            chat_sync_config=chat_sync_config,
        )
        return self._parse(GenerateAIAgentCallResponse, await self._call(ops.GENERATE, params), ops.GENERATE)

    async def start_ai_agent_outbound_call(
        self,
        agent_id: str,
        *,
        called_number: str,
        caller_number: str,
        config: dict[str, Any] | None = None,
        session_id: str | None = None,
        user_data: str | dict[str, Any] | None = None,
    ) -> StartAIAgentOutboundCallResponse:
        """Async twin of :meth:`IceClient.start_ai_agent_outbound_call`."""
        params = ops.outbound_params(
            agent_id,
            called_number=called_number,
            caller_number=caller_number,
            config=config,
            session_id=session_id,
            user_data=user_data,
        )
        data = await self._call(ops.START_OUTBOUND, params)
        return self._parse(StartAIAgentOutboundCallResponse, data, ops.START_OUTBOUND)

    async def list_ai_agent_instances_page(
        self,
        agent_id: str,
        *,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        page_size: int = 100,
        page_number: int = 1,
    ) -> ListAIAgentInstanceResponse:
        """Async twin of :meth:`IceClient.list_ai_agent_instances_page`."""
        start, end = ops.list_window(agent_id, start_time, end_time, page_size)
        params = ops.list_params(agent_id, start, end, page_size, page_number)
        data = await self._call(ops.LIST_INSTANCES, params)
        return self._parse(ListAIAgentInstanceResponse, data, ops.LIST_INSTANCES)

    def list_ai_agent_instances(
        self,
        agent_id: str,
        *,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[AIAgentInstance]:
        """Async twin of :meth:`IceClient.list_ai_agent_instances`: use ``async for``."""
        start, end = ops.list_window(agent_id, start_time, end_time, page_size)
        return self._iterate(agent_id, ListingPlan(start, end, page_size))

    async def _iterate(
        self, agent_id: str, plan: ListingPlan[AIAgentInstance]
    ) -> AsyncIterator[AIAgentInstance]:
        while (request := plan.next_request()) is not None:
            for instance in plan.feed(request, await self._fetch(agent_id, request)):
                yield instance

    async def _fetch(self, agent_id: str, request: PageRequest) -> list[AIAgentInstance]:
        params = ops.list_params(agent_id, request.start, request.end, request.page_size, request.page_number)
        data = await self._call(ops.LIST_INSTANCES, params)
        return self._parse(ListAIAgentInstanceResponse, data, ops.LIST_INSTANCES).instances

    async def describe_ai_agent_instance(self, instance_id: str) -> AIAgentInstance:
        """Async twin of :meth:`IceClient.describe_ai_agent_instance`."""
        data = await self._call(ops.DESCRIBE_INSTANCE, ops.instance_params(instance_id))
        return self._parse(DescribeAIAgentInstanceResponse, data, ops.DESCRIBE_INSTANCE).instance

    async def stop_ai_agent_instance(self, instance_id: str) -> StopAIAgentInstanceResponse:
        """Async twin of :meth:`IceClient.stop_ai_agent_instance`."""
        data = await self._call(ops.STOP_INSTANCE, ops.instance_params(instance_id))
        return self._parse(StopAIAgentInstanceResponse, data, ops.STOP_INSTANCE)

    async def aclose(self) -> None:
        await self._sender.aclose()

    async def __aenter__(self) -> AsyncIceClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
