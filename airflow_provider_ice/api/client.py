"""Signed ICE OpenAPI clients: :class:`IceClient` (httpx) and :class:`AsyncIceClient` (aiohttp).

The async client sends on aiohttp directly, or through any httpx async transport a caller passes.

Both share signing and parsing (:mod:`.protocol`), the retry policy (:mod:`.retry`) and the
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
from typing import Any

import httpx
from tenacity import AsyncRetrying, Retrying

from . import params as ops
from .errors import IceError, IceThrottlingError
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
from .protocol import ClientBase, is_safe_to_repeat
from .retry import replay_first
from .senders import AiohttpSender, HttpxAsyncSender, HttpxSender

log = logging.getLogger(__name__)


# The API methods below stand three times on purpose: here, in AsyncIceClient (the I/O twin: the
# same signatures, each call awaited) and in IceHook (typed pass-throughs, hooks/ice.py). Their
# parameters are built once (params.py) and every decision is taken once (ClientBase).
class IceClient(ClientBase):
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

    def _open(self, transport: httpx.BaseTransport | None) -> None:
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
        """Return every instance of ``agent_id`` in the window, newest first.

        Pages and split windows are followed (see :mod:`.pagination`); arguments are validated when
        this is called.
        """
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


# AsyncIceClient is IceClient's I/O twin: the same API methods with the same signatures, each an
# ``await`` where the sync one calls. Parameters are built (params.py), decisions taken (ClientBase)
# and answers parsed once; only sending and sleeping differ (``duplicates`` lists the pair).
class AsyncIceClient(ClientBase):
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

    # aiohttp adds "content-type: application/octet-stream" to a body-less POST; an unsigned
    # content-type is rejected (IncompleteSignature), so send a signed one.
    sign_content_type = True

    def _open(self, transport: httpx.AsyncBaseTransport | None) -> None:
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        # aiohttp (imported by AiohttpSender, a slow import) only when no httpx transport is given.
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
