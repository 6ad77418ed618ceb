"""Unit tests of the coalesced poller against an in-memory ListAIAgentInstance (newest first)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_ice.api.errors import IceServerError
from airflow_provider_ice.api.models import ListAIAgentInstanceResponse
from airflow_provider_ice.api.waiting import InstanceTarget
from airflow_provider_ice.triggers.poller import CoalescedPoller, active_pollers, coalesced_wait, get_poller
from tests.unit.triggers.poller_fakes import (
    AGENT,
    T0,
    WAIT,
    FakeClient,
    WaiterStack,
    client_factory,
    listed_instance,
    until,
    wait_for,
)


async def test_one_sweep_serves_all_waiters_with_ceil_n_over_100_pages() -> None:
    client = FakeClient(250)
    async with wait_for(client, 0, interval=30) as w0:
        poller = active_pollers()[0]
        waiters = [w0]
        async with WaiterStack(client, range(1, 250), interval=30) as others:
            waiters += others
            observations = await asyncio.gather(*(w.next_result(timeout=WAIT) for w in waiters))
    assert all(o is not None and o.found and not o.failed for o in observations)
    assert [o.instance.channel_id for o in observations if o and o.instance] == [
        f"chan-{n}" for n in range(250)
    ]
    # The oldest waiter (n=0) is on the last page: 3 pages, the last one short, in one sweep.
    assert client.pages == [1, 2, 3]
    await asyncio.wait_for(poller._task, WAIT)  # type: ignore[arg-type]
    assert client.closed  # the poller stopped with its last waiter and closed its client
    assert active_pollers() == []


async def test_sweep_stops_paging_once_every_waiter_is_matched() -> None:
    client = FakeClient(1000)
    async with WaiterStack(client, [999, 950, 901], interval=30) as waiters:
        results = [await w.next_result(timeout=WAIT) for w in waiters]
        assert client.pages == [1]
    # Each waiter got its own instance, not just some instance.
    got = [(r.instance.channel_id, r.instance.user_data) if r and r.instance else None for r in results]
    assert got == [(f"chan-{n}", listed_instance(n)["UserData"]) for n in (999, 950, 901)]
    assert all(r is not None and not r.failed and r.consecutive_failures == 0 for r in results)


async def test_channel_only_and_both_identifiers_match() -> None:
    client = FakeClient(5)
    async with wait_for(client, 1, by="chan") as by_chan, wait_for(client, 2, by="both") as by_both:
        o1 = await by_chan.next_result(timeout=WAIT)
        o2 = await by_both.next_result(timeout=WAIT)
    assert o1 is not None
    assert o1.instance is not None
    assert o1.instance.channel_id == "chan-1"
    assert o2 is not None
    assert o2.instance is not None
    assert o2.instance.channel_id == "chan-2"


async def test_unchanged_status_is_not_delivered_but_finished_is() -> None:
    client = FakeClient(3)
    async with wait_for(client, 1, interval=0.02) as w:
        first = await w.next_result(timeout=WAIT)
        assert first is not None
        assert first.instance is not None
        assert str(first.instance.status) == "Executing"
        # Several sweeps of the same status wake nobody (counted, not timed: a loaded machine sweeps late).
        poller = active_pollers()[0]
        await until(lambda: poller.sweeps >= 4)
        assert await w.next_result(timeout=0) is None
        client.set_status(1, "Finished")
        done = await w.next_result(timeout=WAIT)
    assert done is not None
    assert done.instance is not None
    assert done.instance.status.is_terminal


async def test_unknown_status_is_delivered_once_then_its_change() -> None:
    client = FakeClient(2)
    client.set_status(0, "Paused")
    async with wait_for(client, 0, interval=0.02) as w:
        obs = await w.next_result(timeout=WAIT)
        assert obs is not None
        assert obs.instance is not None
        assert not obs.instance.status.is_known
        poller = active_pollers()[0]
        await until(lambda: poller.sweeps >= 3)  # sweep 2 is over: the same unknown status, no news
        assert await w.next_result(timeout=0) is None
        client.set_status(0, "Finished")
        obs = await w.next_result(timeout=WAIT)
    assert obs is not None
    assert obs.instance is not None
    assert obs.instance.status.is_terminal


async def test_not_found_is_reported_every_sweep() -> None:
    client = FakeClient(3)
    async with wait_for(client, 42, interval=0.02) as w:
        for _ in range(3):
            obs = await w.next_result(timeout=WAIT)
            assert obs is not None
            assert not obs.found
            assert not obs.failed
        # The instance shows up later (e.g. the service is eventually consistent).
        client.instances.insert(0, listed_instance(42, "Finished"))
        while True:
            obs = await w.next_result(timeout=WAIT)
            assert obs is not None
            if obs.found:
                break
    assert obs.instance is not None
    assert obs.instance.status.is_terminal


async def test_transient_sweep_failures_are_counted_then_recovered() -> None:
    client = FakeClient(3)
    client.fail_pages = 2
    # A waiter's mailbox keeps only the latest news, and a sweep that overran its interval is followed
    # at once by the next: the test gives each sweep its turn once it has read the previous one.
    client.turns = asyncio.Semaphore(0)
    results = []
    async with wait_for(client, 1, interval=0.02) as w:
        for _ in range(3):
            client.turns.release()
            results.append(await w.next_result(timeout=WAIT))
    client.turns.release()  # the sweep under way ends, and with it the poller
    first, second, third = results
    assert first is not None
    assert isinstance(first.error, IceServerError)
    assert first.consecutive_failures == 1
    assert second is not None
    assert second.failed
    assert second.consecutive_failures == 2
    assert third is not None
    assert third.found
    assert third.consecutive_failures == 0


async def test_failure_midway_still_delivers_waiters_matched_before_it() -> None:
    client = FakeClient(250)
    async with WaiterStack(client, [249, 0]) as (newest, oldest):
        client.fail_pages = 0
        # Fail on page 2 only: the newest waiter was matched on page 1.
        original = client.list_ai_agent_instances_page

        async def flaky(agent_id: str, **kw: Any) -> ListAIAgentInstanceResponse:
            if kw["page_number"] == 2:
                raise IceServerError("boom", code="InternalError", request_id="r", http_status=500)
            return await original(agent_id, **kw)

        client.list_ai_agent_instances_page = flaky  # type: ignore[method-assign]
        o_new = await newest.next_result(timeout=WAIT)
        o_old = await oldest.next_result(timeout=WAIT)
    assert o_new is not None
    assert o_new.found
    assert not o_new.failed
    assert o_old is not None
    assert o_old.failed
    assert not o_old.found


async def test_join_during_sweep_is_served_by_next_sweep_and_leave_drops_out() -> None:
    client = FakeClient(250)
    client.gate = asyncio.Event()
    async with wait_for(client, 0, interval=0.05) as first:
        await asyncio.wait_for(client.page_started.wait(), WAIT)  # sweep 1 is in flight
        poller = active_pollers()[0]
        async with wait_for(client, 100) as joined:
            leaving_cm = wait_for(client, 200)
            leaving = await leaving_cm.__aenter__()
            await leaving_cm.__aexit__(None, None, None)  # leaves during the same sweep
            client.gate.set()
            o_first = await first.next_result(timeout=WAIT)
            o_joined = await joined.next_result(timeout=WAIT)
            assert poller.sweeps >= 2  # the joiner's first news came from a later sweep
    assert o_first is not None
    assert o_first.found
    assert o_joined is not None
    assert o_joined.instance is not None
    assert o_joined.instance.channel_id == "chan-100"
    assert leaving.next_result is not None
    assert leaving._pending is None


async def test_everyone_leaving_mid_sweep_stops_paging_and_the_poller() -> None:
    client = FakeClient(1000)
    client.gate = asyncio.Event()
    cm = wait_for(client, 0)
    await cm.__aenter__()
    await asyncio.wait_for(client.page_started.wait(), WAIT)
    poller = active_pollers()[0]
    await cm.__aexit__(None, None, None)
    client.gate.set()
    await asyncio.wait_for(poller._task, WAIT)  # type: ignore[arg-type]
    assert client.pages == [1]
    assert client.closed
    assert not poller.running
    assert active_pollers() == []


async def test_cancelled_waiter_leaves_the_poller() -> None:
    client = FakeClient(3)

    async def trigger_like() -> None:
        async with wait_for(client, 1, interval=0.02) as w:
            while True:
                await w.next_result()

    task = asyncio.create_task(trigger_like())
    await until(lambda: bool(active_pollers()) and active_pollers()[0].sweeps >= 2)
    poller = active_pollers()[0]
    assert poller.waiter_count == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert poller.waiter_count == 0
    await asyncio.wait_for(poller._task, WAIT)  # type: ignore[arg-type]
    assert active_pollers() == []
    assert client.closed


async def test_interval_is_min_of_waiters_intervals() -> None:
    client = FakeClient(3)
    loop = asyncio.get_running_loop()
    async with wait_for(client, 1, interval=30) as slow:
        await slow.next_result(timeout=WAIT)
        poller = active_pollers()[0]
        assert poller.sweeps == 1
        await asyncio.sleep(0.2)
        assert poller.sweeps == 1  # 30 s interval: no second sweep yet
        joined = loop.time()
        async with wait_for(client, 2, interval=0.05):
            # Four more sweeps, where the slow interval alone would allow one per 30 s ...
            await until(lambda: poller.sweeps >= 5)
            fast_sweeps, elapsed = poller.sweeps, loop.time() - joined
        # ... and never more often than the fast interval: sweeps start at least 0.05 s apart.
        assert fast_sweeps - 1 <= elapsed / 0.05 + 1
        await asyncio.sleep(0.3)
        assert poller.sweeps <= fast_sweeps + 1  # back to the slow waiter's interval


async def test_pollers_are_per_key_and_per_event_loop() -> None:
    client = FakeClient(1)
    a = get_poller("c", AGENT, client_factory(client))
    assert get_poller("c", AGENT, client_factory(client)) is a
    assert get_poller("other", AGENT, client_factory(client)) is not a

    def other_loop() -> CoalescedPoller:
        async def inner() -> CoalescedPoller:
            return get_poller("c", AGENT, client_factory(client))

        return asyncio.run(inner())

    b = await asyncio.get_running_loop().run_in_executor(None, other_loop)
    assert b is not a


async def test_client_factory_failure_is_a_sweep_failure() -> None:
    attempts = 0
    client = FakeClient(2)

    async def flaky_factory() -> Any:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("connection lookup failed")
        return client

    target = InstanceTarget(agent_id=AGENT, correlation_id="corr-1", window_start=T0)
    async with coalesced_wait(
        conn_id="c", target=target, client_factory=flaky_factory, poll_interval=0.02
    ) as w:
        client.turns = asyncio.Semaphore(0)  # the second sweep's page waits until the failure is read
        o1 = await w.next_result(timeout=WAIT)
        client.turns.release()
        o2 = await w.next_result(timeout=WAIT)
    client.turns.release()  # the sweep under way ends, and with it the poller
    assert o1 is not None
    assert isinstance(o1.error, ConnectionError)
    assert o2 is not None
    assert o2.found


async def test_window_start_is_min_of_waiters() -> None:
    client = FakeClient(2)
    seen: list[Any] = []
    original = client.list_ai_agent_instances_page

    async def spy(agent_id: str, **kw: Any) -> ListAIAgentInstanceResponse:
        seen.append(kw["start_time"])
        return await original(agent_id, **kw)

    client.list_ai_agent_instances_page = spy  # type: ignore[method-assign]
    early = T0 - timedelta(hours=1)
    async with (
        coalesced_wait(
            conn_id="c",
            target=InstanceTarget(agent_id=AGENT, correlation_id="corr-0", window_start=early),
            client_factory=client_factory(client),
            poll_interval=0.02,
        ) as a,
        wait_for(client, 1) as b,
    ):
        await a.next_result(timeout=WAIT)
        await b.next_result(timeout=WAIT)
    assert seen
    assert all(s == "2025-12-31T23:00:00Z" for s in seen)
