"""IceCampaignTrigger: serialization, and real runs against the emulator through the coalesced poller."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_provider_ice.api.client import AsyncIceClient
from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.triggers.campaign import IceCampaignTrigger
from airflow_provider_ice.triggers.poller import CoalescedPoller
from airflow_provider_ice.triggers.waiter import Waiter

pytestmark = pytest.mark.integration

AGENT = "agent-campaign-trigger"


def make(correlation_ids: list[str], **kwargs: Any) -> IceCampaignTrigger:
    window_start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    settings: dict[str, Any] = {
        "poll_interval": 0.2,
        "resume_after": 1,
        "wake_at": time.time() + 20,
        **kwargs,
    }
    return IceCampaignTrigger(
        ice_conn_id="ice_default",
        agent_id=AGENT,
        correlation_ids=correlation_ids,
        window_start=window_start,
        **settings,
    )


async def first_event(trigger: IceCampaignTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("the trigger ended without an event")


async def place(emulator: IceEmulator, durations: dict[str, float]) -> None:
    async with AsyncIceClient(emulator.credentials, endpoint=emulator.url) as client:
        for cid, duration in durations.items():
            await client.generate_ai_agent_call(
                AGENT,
                user_data={
                    "AirflowCorrelationId": cid,
                    "EmulatorScenario": {"UserJoinDelay": 0.05, "CallDuration": duration},
                },
            )


def test_serialization_pins_classpath_and_kwargs() -> None:
    trigger = IceCampaignTrigger(
        ice_conn_id="c",
        agent_id="a",
        correlation_ids=["x", "y"],
        window_start="2026-01-01T00:00:00Z",
        poll_interval=5.0,
        resume_after=2,
        wake_at=123.0,
    )
    assert trigger.serialize() == (
        "airflow_provider_ice.triggers.campaign.IceCampaignTrigger",
        {
            "ice_conn_id": "c",
            "agent_id": "a",
            "correlation_ids": ["x", "y"],
            "window_start": "2026-01-01T00:00:00Z",
            "poll_interval": 5.0,
            "resume_after": 2,
            "wake_at": 123.0,
            "max_consecutive_errors": 3,
        },
    )


def test_without_calls_it_only_waits_for_wake_at() -> None:
    started = time.time()
    event = asyncio.run(first_event(make([], wake_at=started + 0.3)))
    assert event == {
        "status": "success",
        "reason": "wake",
        "agent_id": AGENT,
        "finished": [],
        "waited_for": 0,
        "message": "",
    }
    assert time.time() - started >= 0.3


def test_fires_once_enough_calls_are_finished_and_shares_one_sweep(
    ice_connection: IceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    durations = {"short-1": 0.2, "short-2": 0.3, "long-1": 30.0, "long-2": 30.0}
    # Which poller each call's wait joined, recorded as it joins (a look at active_pollers() after a
    # fixed sleep came before the trigger's first registration on a loaded machine).
    joined: list[CoalescedPoller] = []
    register = CoalescedPoller.register

    def recording(poller: CoalescedPoller, waiter: Waiter) -> Waiter:
        joined.append(poller)
        return register(poller, waiter)

    monkeypatch.setattr(CoalescedPoller, "register", recording)

    async def scenario() -> dict[str, Any]:
        await place(ice_connection, durations)
        return await first_event(make(list(durations), resume_after=2))

    event = asyncio.run(scenario())
    assert len(joined) == len(durations)
    assert all(poller is joined[0] for poller in joined), "all calls of the campaign share one poller"
    assert event["reason"] == "finished"
    assert sorted(event["finished"]) == ["short-1", "short-2"]
    assert event["waited_for"] == 4


def test_wakes_at_wake_at_when_too_few_calls_finish(ice_connection: IceEmulator) -> None:
    async def scenario() -> dict[str, Any]:
        await place(ice_connection, {"quick": 0.1, "slow": 30.0})
        return await first_event(make(["quick", "slow"], resume_after=2, wake_at=time.time() + 2.0))

    event = asyncio.run(scenario())
    assert (event["status"], event["reason"], event["finished"]) == ("success", "wake", ["quick"])
