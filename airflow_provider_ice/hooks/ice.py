"""IceHook: builds the ICE clients of :mod:`airflow_provider_ice.api` from an ``alibaba_ice`` connection."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

from airflow_provider_ice._compat import mask_secret_nonblocking
from airflow_provider_ice.api.errors import IceApiError, IceAuthError, IceError
from airflow_provider_ice.hooks.connection import (
    ENV_ACCESS_KEY_ID,
    IceConnectionSettings,
    settings_from_connection,
)
from airflow_provider_ice.hooks.connection_form import connection_form_widgets, ui_field_behaviour

if TYPE_CHECKING:
    import httpx
    from airflow.providers.common.compat.sdk import Connection

    from airflow_provider_ice.api.client import AsyncIceClient, IceClient
    from airflow_provider_ice.api.models import (
        AIAgentConfig,
        AIAgentInstance,
        GenerateAIAgentCallResponse,
        StartAIAgentOutboundCallResponse,
        StopAIAgentInstanceResponse,
    )

_log = logging.getLogger(__name__)


class IceHook(BaseHook):
    """Interact with Alibaba Cloud ICE (Intelligent Media Services) AI agents.

    Connection (type ``alibaba_ice``): login = AccessKey ID, password = AccessKey secret; extras
    ``region`` (default cn-shanghai), ``endpoint`` (a host or a full URL; plain ``http://`` only
    when written so), ``security_token`` (STS), ``timeout``, ``connect_timeout``, ``max_retries``,
    ``verify`` (true or false; an older connection's CA bundle path there still works),
    ``ca_bundle`` (a CA bundle path to verify with), ``rate_limit`` (requests per second for every
    action) and ``rate_limits`` (per-action overrides, e.g. ``{"GenerateAIAgentCall": 5}``); the
    limits are shared by every client of the same AccessKey in the process. Without keys on the
    connection, the ``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``_SECRET`` / ``ALIBABA_CLOUD_SECURITY_TOKEN``
    environment variables are used.

    :param ice_conn_id: the Airflow connection id.
    :param transport: an httpx transport for the sync client (tests only).
    :param async_transport: an async httpx transport for the async client (tests only).
    """

    conn_name_attr = "ice_conn_id"
    default_conn_name = "ice_default"
    conn_type = "alibaba_ice"
    hook_name = "Alibaba Cloud ICE"

    # The connection form of Airflow < 3.2; 3.2+ reads the declarative conn-fields instead.
    get_connection_form_widgets = staticmethod(connection_form_widgets)
    get_ui_field_behaviour = staticmethod(ui_field_behaviour)

    def __init__(
        self,
        ice_conn_id: str = default_conn_name,
        *,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ice_conn_id = ice_conn_id
        self._transport = transport
        self._async_transport = async_transport
        self._async_clients: dict[int, tuple[asyncio.AbstractEventLoop, AsyncIceClient]] = {}

    # -- connection ---------------------------------------------------------------------------

    @cached_property
    def settings(self) -> IceConnectionSettings:
        """Settings from the connection (sync lookup; never used from a coroutine)."""
        try:
            conn: Connection | None = self.get_connection(self.ice_conn_id)
        except AirflowNotFoundException:
            conn = None
        return self._settings(conn, conn.extra_dejson if conn is not None else {})

    async def aget_settings(self) -> IceConnectionSettings:
        """Return the settings resolved with the async connection lookup (safe inside a triggerer)."""
        if "settings" in self.__dict__:
            return self.settings
        # Imported here: only triggers look connections up asynchronously (it is not free at DAG parse).
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

        try:
            conn: Connection | None = await get_async_connection(self.ice_conn_id, hook=type(self))
        except AirflowNotFoundException:
            conn = None
        extras = await get_async_extra_dejson(conn) if conn is not None else {}
        settings = self._settings(conn, extras)
        self.__dict__["settings"] = settings
        return settings

    def _settings(self, conn: Connection | None, extras: Mapping[str, Any]) -> IceConnectionSettings:
        if conn is None and not os.environ.get(ENV_ACCESS_KEY_ID):
            raise AirflowNotFoundException(
                f"The conn_id `{self.ice_conn_id}` isn't defined and {ENV_ACCESS_KEY_ID} is not set"
            )
        return settings_from_connection(
            self.ice_conn_id,
            conn.login if conn is not None else None,
            conn.password if conn is not None else None,
            extras,
        )

    # Read-only views of the connection's settings (pass-throughs, no logic), like the emulator's
    # url and access_key_* (emulator/server.py).
    @property
    def endpoint(self) -> str:
        """The ICE endpoint URL the clients use."""
        return self.settings.endpoint

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def allows_plain_http(self) -> bool:
        """True only when the connection's endpoint explicitly says ``http://`` (local emulator)."""
        return self.settings.endpoint.startswith("http://")

    def download_options(self) -> dict[str, Any]:
        """Return how this connection fetches call-log URLs: a downloader's ``allow_http`` and ``verify``.

        It looks the connection up synchronously: call it before an event loop starts.
        """
        return {"allow_http": self.allows_plain_http, "verify": self.settings.verify}

    # -- clients ------------------------------------------------------------------------------

    @cached_property
    def client(self) -> IceClient:
        """The sync client (pooled; built once per hook)."""
        from airflow.providers.common.compat.sdk import mask_secret

        from airflow_provider_ice.api.client import IceClient

        settings = self.settings
        return IceClient(
            settings.credentials, transport=self._transport, on_secret=mask_secret, **settings.client_kwargs()
        )

    def _new_async_client(
        self, settings: IceConnectionSettings, loop: asyncio.AbstractEventLoop
    ) -> AsyncIceClient:
        """Return a new async client whose secrets are masked through ``loop``."""
        from airflow_provider_ice.api.client import AsyncIceClient

        return AsyncIceClient(
            settings.credentials,
            transport=self._async_transport,
            on_secret=functools.partial(mask_secret_nonblocking, loop=loop),
            **settings.client_kwargs(),
        )

    def get_conn(self) -> IceClient:
        """Return the sync :class:`~airflow_provider_ice.api.client.IceClient`."""
        return self.client

    async def aget_async_client(self) -> AsyncIceClient:
        """Return the async client for the running event loop (one per loop: aiohttp pools are loop-bound).

        It is built in a worker thread: the first one imports aiohttp and every one loads the CA
        bundle into an SSL context, blocking work that would stall a triggerer's event loop.
        """
        loop = asyncio.get_running_loop()
        cached = self._async_clients.get(id(loop))
        if cached is not None and cached[0] is loop:
            return cached[1]
        settings = await self.aget_settings()
        client = await asyncio.to_thread(self._new_async_client, settings, loop)
        cached = self._async_clients.get(id(loop))
        if cached is not None and cached[0] is loop:
            return cached[1]  # another coroutine built one meanwhile; ours has opened nothing yet
        # Drop clients of closed loops so a long-lived hook does not keep dead pools.
        self._async_clients = {k: v for k, v in self._async_clients.items() if not v[0].is_closed()}
        self._async_clients[id(loop)] = (loop, client)
        return client

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        cached = self._async_clients.pop(id(loop), None)
        if cached is not None:
            await cached[1].aclose()

    # -- API ----------------------------------------------------------------------------------
    # Typed pass-throughs to the client (the hook's public API, mocked by operator tests); they
    # repeat the client's signatures on purpose and add no logic, so they also look like each other.

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
        """GenerateAIAgentCall; see :meth:`IceClient.generate_ai_agent_call`."""
        return self.client.generate_ai_agent_call(
            agent_id,
            user_id=user_id,
            user_data=user_data,
            session_id=session_id,
            expire=expire,
            agent_config=agent_config,
            template_config=template_config,
            chat_sync_config=chat_sync_config,
        )

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
        """StartAIAgentOutboundCall; see :meth:`IceClient.start_ai_agent_outbound_call`."""
        return self.client.start_ai_agent_outbound_call(
            agent_id,
            called_number=called_number,
            caller_number=caller_number,
            config=config,
            session_id=session_id,
            user_data=user_data,
        )

    def list_ai_agent_instances(
        self,
        agent_id: str,
        *,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        page_size: int = 100,
    ) -> Iterator[AIAgentInstance]:
        """Every instance in the window across all pages (``StartTime`` inclusive, ``EndTime`` exclusive)."""
        return self.client.list_ai_agent_instances(
            agent_id, start_time=start_time, end_time=end_time, page_size=page_size
        )

    def describe_ai_agent_instance(self, instance_id: str) -> AIAgentInstance:
        return self.client.describe_ai_agent_instance(instance_id)

    def stop_ai_agent_instance(self, instance_id: str) -> StopAIAgentInstanceResponse:
        return self.client.stop_ai_agent_instance(instance_id)

    def call_api(self, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Any ICE action, raw JSON back; unknown non-read actions are never retried blindly."""
        return self.client.call_api(action, params)

    async def alist_ai_agent_instances(
        self,
        agent_id: str,
        *,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[AIAgentInstance]:
        """Async iterator twin of :meth:`list_ai_agent_instances`."""
        client = await self.aget_async_client()
        async for instance in client.list_ai_agent_instances(
            agent_id, start_time=start_time, end_time=end_time, page_size=page_size
        ):
            yield instance

    async def adescribe_ai_agent_instance(self, instance_id: str) -> AIAgentInstance:
        return await (await self.aget_async_client()).describe_ai_agent_instance(instance_id)

    async def astop_ai_agent_instance(self, instance_id: str) -> StopAIAgentInstanceResponse:
        return await (await self.aget_async_client()).stop_ai_agent_instance(instance_id)

    async def acall_api(self, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await (await self.aget_async_client()).call_api(action, params)

    # -- UI -----------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """One cheap read (ListAIAgentInstance, PageSize 1, a dummy agent id).

        An authentication error means bad credentials; any other answer from the service (even
        "agent not found" or "invalid parameter") proves that the keys and endpoint work.
        """
        try:
            self.client.list_ai_agent_instances_page("airflow-connection-test", page_size=1)
        except IceAuthError as exc:
            return False, f"Authentication failed: {exc}"
        except IceApiError as exc:
            if exc.http_status is not None and exc.http_status < 500 and exc.code:
                return True, f"Connection works (the service answered {exc.code} for a dummy agent id)"
            return False, f"ICE error: {exc}"
        except IceError as exc:
            return False, str(exc)
        except AirflowNotFoundException as exc:
            return False, str(exc)
        return True, f"Connection works ({self.endpoint})"


class IceHookMixin:
    """Give an operator or a sensor its :class:`IceHook`, built on first use from ``ice_conn_id``."""

    ice_conn_id: str

    @cached_property
    def hook(self) -> IceHook:
        """Return the hook of this task's ``ice_conn_id``."""
        return IceHook(ice_conn_id=self.ice_conn_id)
