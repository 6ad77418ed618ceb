"""IceHook: builds the ICE clients of :mod:`airflow_provider_ice.api` from an ``alibaba_ice`` connection."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

from airflow_provider_ice._compat import mask_secret_nonblocking
from airflow_provider_ice.api.errors import IceApiError, IceAuthError, IceError, IceValidationError
from airflow_provider_ice.api.signing import Credentials
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

DEFAULT_REGION = "cn-shanghai"
ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IceConnectionSettings:
    """Everything a client needs, resolved from a Connection (and the environment)."""

    credentials: Credentials
    region: str
    endpoint: str
    timeout: float
    connect_timeout: float
    max_retries: int
    verify: bool | str

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "timeout": self.timeout,
            "connect_timeout": self.connect_timeout,
            "max_retries": self.max_retries,
            "verify": self.verify,
        }


def _number(extras: Mapping[str, Any], name: str, default: float) -> float:
    value = extras.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise IceValidationError(
            name, f"connection extra must be a number of seconds, got {value!r}"
        ) from None
    if not 0 < number <= 3600:
        raise IceValidationError(name, f"connection extra must be between 0 and 3600 seconds, got {value!r}")
    return number


def _integer(extras: Mapping[str, Any], name: str, default: int) -> int:
    value = extras.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise IceValidationError(name, f"connection extra must be an integer 0..20, got {value!r}") from None
    if not 0 <= number <= 20:
        raise IceValidationError(name, f"connection extra must be between 0 and 20, got {number}")
    return number


def _verify(extras: Mapping[str, Any]) -> bool | str:
    value = extras.get("verify")
    if value is None or value == "" or value is True:
        return True
    if value is False:
        return False
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        return value.strip()  # a CA bundle path; the client checks that it exists
    raise IceValidationError(
        "verify", f"connection extra must be true, false or a CA bundle path, got {value!r}"
    )


def _credentials(
    conn_id: str, login: str | None, password: str | None, extras: Mapping[str, Any]
) -> Credentials:
    login, password = (login or "").strip(), (password or "").strip()
    token = str(extras.get("security_token") or "").strip() or None
    source = f"connection {conn_id!r}"
    if not login and not password:
        login = os.environ.get(ENV_ACCESS_KEY_ID, "").strip()
        password = os.environ.get(ENV_ACCESS_KEY_SECRET, "").strip()
        token = token or os.environ.get(ENV_SECURITY_TOKEN, "").strip() or None
        source = (
            f"connection {conn_id!r} (no keys) and the environment "
            f"({ENV_ACCESS_KEY_ID}/{ENV_ACCESS_KEY_SECRET})"
        )
    if not login or not password:
        missing = "AccessKey ID (login)" if not login else "AccessKey secret (password)"
        if not login and not password:
            raise IceValidationError(
                "credentials",
                f"no AccessKey found in {source}; set login (AccessKey ID) and password "
                "(AccessKey secret) on the connection, or the environment variables",
            )
        raise IceValidationError(
            "credentials", f"{source} has only half an AccessKey pair: the {missing} is missing"
        )
    return Credentials(login, password, token)


def settings_from_connection(
    conn_id: str, login: str | None, password: str | None, extras: Mapping[str, Any]
) -> IceConnectionSettings:
    """Resolve client settings from connection fields (pure: no Airflow calls, easy to test)."""
    region = str(extras.get("region") or DEFAULT_REGION).strip()
    if not _REGION_RE.match(region):
        raise IceValidationError(
            "region", f"must be an Alibaba Cloud region id such as cn-shanghai, got {region!r}"
        )
    endpoint = str(extras.get("endpoint") or "").strip() or f"https://ice.{region}.aliyuncs.com"
    from airflow_provider_ice.api.transport import parse_endpoint

    parsed = parse_endpoint(endpoint)  # rejects an unknown scheme before any request
    return IceConnectionSettings(
        credentials=_credentials(conn_id, login, password, extras),
        region=region,
        endpoint=parsed.url,
        timeout=_number(extras, "timeout", 10.0),
        connect_timeout=_number(extras, "connect_timeout", 5.0),
        max_retries=_integer(extras, "max_retries", 3),
        verify=_verify(extras),
    )


class IceHook(BaseHook):
    """Interact with Alibaba Cloud ICE (Intelligent Media Services) AI agents.

    Connection (type ``alibaba_ice``): login = AccessKey ID, password = AccessKey secret; extras
    ``region`` (default cn-shanghai), ``endpoint`` (a host or a full URL; plain ``http://`` only
    when written so), ``security_token`` (STS), ``timeout``, ``connect_timeout``, ``max_retries``
    and ``verify`` (true, false, or a CA bundle path). Without keys on the connection, the
    ``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``_SECRET`` / ``ALIBABA_CLOUD_SECURITY_TOKEN`` environment
    variables are used.

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
        """Settings resolved with the async connection lookup (safe inside a triggerer)."""
        if "settings" in self.__dict__:
            return self.settings
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

    def get_conn(self) -> IceClient:
        """The sync :class:`~airflow_provider_ice.api.client.IceClient`."""
        return self.client

    async def aget_async_client(self) -> AsyncIceClient:
        """The async client for the running event loop (one per loop: aiohttp pools are loop-bound)."""
        from airflow_provider_ice.api.client import AsyncIceClient

        loop = asyncio.get_running_loop()
        cached = self._async_clients.get(id(loop))
        if cached is not None and cached[0] is loop:
            return cached[1]
        settings = await self.aget_settings()
        client = AsyncIceClient(
            settings.credentials,
            transport=self._async_transport,
            on_secret=mask_secret_nonblocking,
            **settings.client_kwargs(),
        )
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
