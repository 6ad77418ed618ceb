"""Unit tests of the coalesced poller's paging: prefetch, early stop, per-page delivery, >100 pages."""

from __future__ import annotations

import asyncio
from typing import Any

from airflow_provider_ice.api.models import ListAIAgentInstanceResponse
from airflow_provider_ice.triggers.poller import active_pollers
from tests.unit.triggers.poller_fakes import WAIT, FakeClient, wait_for


async def test_later_sweeps_prefetch_the_pages_the_last_sweep_needed_in_order() -> None:
    client = FakeClient(350)
    in_flight = 0
    peaks: dict[int, int] = {}  # sweep number -> most pages in flight at once
    asked: list[int] = []  # pages asked of the client, served or cancelled
    original = client.list_ai_agent_instances_page

    async def slow(agent_id: str, **kw: Any) -> ListAIAgentInstanceResponse:
        nonlocal in_flight
        asked.append(kw["page_number"])
        sweep = active_pollers()[0].sweeps
        in_flight += 1
        peaks[sweep] = max(peaks.get(sweep, 0), in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return await original(agent_id, **kw)

    client.list_ai_agent_instances_page = slow  # type: ignore[method-assign]
    async with wait_for(client, 0, interval=0.05) as oldest:
        poller = active_pollers()[0]
        first = await oldest.next_result(timeout=WAIT)
        assert first is not None
        assert first.found
        client.set_status(0, "Finished")
        done = await oldest.next_result(timeout=WAIT)
    assert done is not None
    assert done.instance is not None
    assert done.instance.status.is_terminal
    assert client.pages[:4] == [1, 2, 3, 4]
    assert peaks[1] == 1  # the first sweep knows nothing: one page at a time
    assert peaks[2] > 1  # the next one asks for the 4 pages it will need at once
    assert sorted(client.pages[4:8]) == [1, 2, 3, 4]
    # A sweep that overran its interval is followed at once by the next, whose pages the leaving
    # waiter cancels before they are served: count what was asked, once the poller has stopped.
    await asyncio.wait_for(poller._task, WAIT)  # type: ignore[arg-type]
    assert poller.requests == len(asked)


async def test_early_stop_cancels_prefetched_pages() -> None:
    client = FakeClient(1000)
    async with wait_for(client, 0, interval=30) as oldest:
        assert (await oldest.next_result(timeout=WAIT)) is not None
        poller = active_pollers()[0]
    assert client.pages == list(range(1, 11))
    await asyncio.wait_for(poller._task, WAIT)  # type: ignore[arg-type]  # the newcomer starts anew
    # A newcomer on page 1 now: the hint says 10 pages, but only PREFETCH_PAGES are ever in flight.
    async with wait_for(client, 999, interval=30) as newest:
        poller = active_pollers()[0]
        poller._pages_hint = 10
        found = await newest.next_result(timeout=WAIT)
    assert found is not None
    assert found.found
    assert client.pages[10] == 1
    assert len(client.pages) - 10 <= 4


async def test_a_window_beyond_100_full_pages_is_handed_to_the_client_listing() -> None:
    client = FakeClient(10_050)
    listed: list[Any] = []

    async def list_ai_agent_instances(agent_id: str, **kw: Any) -> Any:
        listed.append(kw)
        for item in client.instances[10_000:]:  # what the client's window split finds past page 100
            yield ListAIAgentInstanceResponse.model_validate({"Instances": [item]}).instances[0]

    client.list_ai_agent_instances = list_ai_agent_instances  # type: ignore[attr-defined]
    async with wait_for(client, 3, interval=30) as oldest:
        result = await oldest.next_result(timeout=WAIT)
    assert result is not None
    assert result.instance is not None
    assert result.instance.channel_id == "chan-3"
    assert client.pages == list(range(1, 101))
    assert len(listed) == 1


async def test_a_waiter_hears_of_its_instance_when_its_page_is_read_not_when_the_sweep_ends() -> None:
    client = FakeClient(300)
    last_page = asyncio.Event()
    read_page = client.list_ai_agent_instances_page

    async def held_last_page(agent_id: str, **kw: Any) -> ListAIAgentInstanceResponse:
        if kw["page_number"] == 3:
            await last_page.wait()
        return await read_page(agent_id, **kw)

    client.list_ai_agent_instances_page = held_last_page  # type: ignore[method-assign]
    async with wait_for(client, 299, interval=30) as newest, wait_for(client, 0, interval=30) as oldest:
        first = await newest.next_result(timeout=WAIT)  # page 1, while the sweep waits for page 3
        assert first is not None
        assert first.instance is not None
        assert first.instance.channel_id == "chan-299"
        assert await oldest.next_result(timeout=0.2) is None
        last_page.set()
        last = await oldest.next_result(timeout=WAIT)
        assert last is not None
        assert last.instance is not None
        assert last.instance.channel_id == "chan-0"
