"""Unit tests of a waiter's registration and of the trigger's coalesced poller seam."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_ice.api.errors import IceServerError, IceValidationError
from airflow_provider_ice.triggers.poller import active_pollers
from airflow_provider_ice.triggers.waiter import Waiter
from tests.unit.triggers.poller_fakes import (
    AGENT,
    T0,
    WAIT,
    FakeClient,
    client_factory,
    until,
)


def test_waiter_validation() -> None:
    with pytest.raises(ValueError, match="correlation_id, channel_id"):
        Waiter(correlation_id=None, channel_id=None, window_start=T0, poll_interval=1)
    for bad_interval in (0, None, "30", float("nan")):
        with pytest.raises(IceValidationError, match=r"^poll_interval: must be a positive"):
            Waiter(correlation_id="x", channel_id=None, window_start=T0, poll_interval=bad_interval)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        Waiter(correlation_id="x", channel_id=None, window_start=datetime(2026, 1, 1), poll_interval=1)


def _target(n: int) -> Any:
    from airflow_provider_ice.api.waiting import InstanceTarget

    return InstanceTarget(agent_id=AGENT, correlation_id=f"corr-{n}", window_start=T0)


async def test_instance_poller_seam_returns_on_news_and_raises_sweep_errors() -> None:
    from airflow_provider_ice.api.waiting import Outcome
    from airflow_provider_ice.triggers.coalesced import CoalescedInstancePoller

    client = FakeClient(3)
    # One sweep per turn, given once the previous news is read (a waiter keeps only the latest news).
    client.turns = asyncio.Semaphore(0)
    seam = CoalescedInstancePoller(conn_id="c", client_factory=client_factory(client), poll_interval=0.02)
    try:
        client.turns.release()
        assert (await seam.poll_once(_target(1))).outcome is Outcome.WAITING
        client.fail_pages = 1
        client.turns.release()
        with pytest.raises(IceServerError):
            await seam.poll_once(_target(1))
        assert seam.failures_in_a_row == 1
        client.set_status(1, "Finished")
        client.turns.release()
        done = await seam.poll_once(_target(1))
        assert done.outcome is Outcome.FINISHED
        assert seam.failures_in_a_row == 0
    finally:
        await seam.aclose()
    assert active_pollers()[0].waiter_count == 0
    client.turns.release()  # the sweep under way ends, and with it the poller


async def test_a_late_reader_reads_the_latest_sweep_with_every_failure_counted() -> None:
    from airflow_provider_ice.triggers.coalesced import CoalescedInstancePoller

    client = FakeClient(3)
    client.fail_pages = 3
    client.turns = asyncio.Semaphore(0)
    seam = CoalescedInstancePoller(conn_id="c", client_factory=client_factory(client), poll_interval=0.02)
    try:
        client.turns.release()
        with pytest.raises(IceServerError):
            await seam.poll_once(_target(1))
        assert seam.failures_in_a_row == 1
        # Two more sweeps fail before the trigger looks again: the one error it reads stands for both.
        poller = active_pollers()[0]
        client.turns.release()
        client.turns.release()
        await until(lambda: poller.sweeps >= 4)  # sweep 4 waits for a turn: sweeps 2 and 3 are over
        with pytest.raises(IceServerError):
            await seam.poll_once(_target(1))
        assert seam.failures_in_a_row == 3
    finally:
        await seam.aclose()
        client.turns.release()


async def test_instance_poller_seam_returns_last_observation_at_deadlines() -> None:
    import time

    from airflow_provider_ice.api.waiting import Outcome
    from airflow_provider_ice.triggers.coalesced import CoalescedInstancePoller

    client = FakeClient(3)
    end = time.time() + 0.3
    seam = CoalescedInstancePoller(
        conn_id="c", client_factory=client_factory(client), poll_interval=0.02, end_time=end
    )
    try:
        assert (await seam.poll_once(_target(1))).outcome is Outcome.WAITING
        # Executing never changes: no news, so the call returns at the deadline with the last status.
        again = await asyncio.wait_for(seam.poll_once(_target(1)), WAIT)
        assert again.outcome is Outcome.WAITING
        assert time.time() >= end
    finally:
        await seam.aclose()
    # The poller stops with its last waiter; joining it before that would wait for its next sweep.
    await until(lambda: not active_pollers())

    missing = CoalescedInstancePoller(
        conn_id="c",
        client_factory=client_factory(client),
        poll_interval=10,
        not_found_deadline=time.time() + 0.2,
    )
    try:
        assert (await missing.poll_once(_target(77))).outcome is Outcome.NOT_FOUND
        # Interval 10 s, but the not-found deadline bounds the wait: back before any second sweep.
        second = await asyncio.wait_for(missing.poll_once(_target(77)), WAIT)
        assert second.outcome is Outcome.NOT_FOUND
        assert active_pollers()[0].sweeps == 1
    finally:
        await missing.aclose()
