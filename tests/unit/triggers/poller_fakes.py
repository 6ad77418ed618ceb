"""An in-memory ListAIAgentInstance (newest first) and helpers for the coalesced poller's tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from airflow_provider_ice.api.correlation import CORRELATION_KEY
from airflow_provider_ice.api.errors import IceServerError
from airflow_provider_ice.api.models import ListAIAgentInstanceResponse
from airflow_provider_ice.api.waiting import InstanceTarget
from airflow_provider_ice.triggers import poller as poller_mod
from airflow_provider_ice.triggers.poller import coalesced_wait
from airflow_provider_ice.triggers.waiter import Waiter

AGENT = "agent-1"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
#: Seconds a test waits for news it expects: generous, for a loaded machine (news ends the wait).
WAIT = 60.0


def listed_instance(n: int, status: str = "Executing") -> dict[str, Any]:
    return {
        "Status": status,
        "UserData": json.dumps({CORRELATION_KEY: f"corr-{n}", "n": n}),
        "RuntimeConfig": {"ChannelId": f"chan-{n}", "AgentUserId": f"agent-user-{n}"},
    }


class FakeClient:
    """ListAIAgentInstance over a list kept newest first; counts pages and can fail or block."""

    def __init__(self, count: int = 0) -> None:
        self.instances = [listed_instance(n) for n in reversed(range(count))]
        self.pages: list[int] = []
        self.fail_pages = 0
        self.gate: asyncio.Event | None = None
        #: When set, every page waits for a turn the test gives (``turns.release()``): the test
        #: decides when the next sweep may go on, whatever the wall clock and the machine's load.
        self.turns: asyncio.Semaphore | None = None
        self.page_started = asyncio.Event()
        self.closed = False

    def set_status(self, n: int, status: str) -> None:
        for item in self.instances:
            if json.loads(item["UserData"])["n"] == n:
                item["Status"] = status

    async def list_ai_agent_instances_page(
        self, agent_id: str, *, start_time: Any, end_time: Any, page_size: int, page_number: int
    ) -> ListAIAgentInstanceResponse:
        assert agent_id == AGENT
        assert start_time is not None
        assert end_time is not None
        self.pages.append(page_number)
        self.page_started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.turns is not None:
            await self.turns.acquire()
        if self.fail_pages:
            self.fail_pages -= 1
            raise IceServerError("try later", code="ServiceUnavailable", request_id="r", http_status=503)
        chunk = self.instances[(page_number - 1) * page_size : page_number * page_size]
        return ListAIAgentInstanceResponse.model_validate({"RequestId": "r", "Instances": chunk})

    async def call_api(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """The raw page, as the real client's call_api returns it (the poller pages raw)."""
        assert action == "ListAIAgentInstance"
        response = await self.list_ai_agent_instances_page(
            params["AIAgentId"],
            start_time=params.get("StartTime"),
            end_time=params.get("EndTime"),
            page_size=params["PageSize"],
            page_number=params["PageNumber"],
        )
        return response.to_wire()

    async def aclose(self) -> None:
        self.closed = True


async def until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Yield to the loop until ``condition()`` holds; fail after ``timeout`` seconds."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


def client_factory(client: FakeClient) -> poller_mod.ClientFactory:
    async def make() -> Any:
        return client

    return make


def wait_for(client: FakeClient, n: int, *, interval: float = 0.05, by: str = "corr") -> Any:
    target = InstanceTarget(
        agent_id=AGENT,
        correlation_id=f"corr-{n}" if by in ("corr", "both") else None,
        channel_id=f"chan-{n}" if by in ("chan", "both") else None,
        window_start=T0,
    )
    return coalesced_wait(
        conn_id="c", target=target, client_factory=client_factory(client), poll_interval=interval
    )


class WaiterStack:
    """Register many waiters at once (an AsyncExitStack over coalesced_wait)."""

    def __init__(self, client: FakeClient, numbers: Any, **kw: Any) -> None:
        import contextlib

        self._stack = contextlib.AsyncExitStack()
        self._client, self._numbers, self._kw = client, list(numbers), kw

    async def __aenter__(self) -> list[Waiter]:
        return [
            await self._stack.enter_async_context(wait_for(self._client, n, **self._kw))
            for n in self._numbers
        ]

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
