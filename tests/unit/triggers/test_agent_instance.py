"""IceAIAgentInstanceTrigger with the hook's async methods mocked (direct polling)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest
from airflow.triggers.base import TriggerEvent

from airflow_provider_ice.api.errors import IceAuthError, IceNotFoundError, IceServerError, IceTransportError
from airflow_provider_ice.api.models import AIAgentInstance
from airflow_provider_ice.api.waiting import InstanceTarget, Observation, Outcome
from airflow_provider_ice.hooks.ice import IceHook
from airflow_provider_ice.triggers.agent_instance import DirectInstancePoller, IceAIAgentInstanceTrigger
from tests.unit.agent_fakes import (
    AGENT_ID,
    AUTH_TOKEN,
    CALL_LOG_URL,
    CHANNEL_ID,
    CONN_JSON,
    INSTANCE_ID,
    instance,
)

CID = "af-0123456789abcdef0123456789abcdef"
REAL_SLEEP = asyncio.sleep
WINDOW_START = "2026-01-01T00:00:00Z"


@pytest.fixture(autouse=True)
def _conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", CONN_JSON)


@pytest.fixture(autouse=True)
def no_sleep():
    """Record the loop's sleeps instead of waiting (still yielding to the event loop)."""

    async def yield_only(_seconds: float) -> None:
        await REAL_SLEEP(0)

    sleep = AsyncMock(side_effect=yield_only)
    with patch("asyncio.sleep", new=sleep):
        yield sleep


def make_trigger(**kwargs: Any) -> IceAIAgentInstanceTrigger:
    kwargs.setdefault("ice_conn_id", "ice_default")
    kwargs.setdefault("agent_id", AGENT_ID)
    kwargs.setdefault("correlation_id", CID)
    kwargs.setdefault("channel_id", CHANNEL_ID)
    kwargs.setdefault("instance_id", INSTANCE_ID)
    kwargs.setdefault("window_start", WINDOW_START)
    kwargs.setdefault("poll_interval", 5.0)
    kwargs.setdefault("end_time", time.time() + 3600)
    kwargs.setdefault("not_found_deadline", time.time() + 3600)
    kwargs.setdefault("coalesce", False)
    return IceAIAgentInstanceTrigger(**kwargs)


def listing(*batches: list[AIAgentInstance] | BaseException):
    """A replacement for IceHook.alist_ai_agent_instances: one batch (or error) per call."""
    queue = list(batches)
    calls: list[dict[str, Any]] = []

    async def _alist(self: IceHook, agent_id: str, **kwargs: Any) -> AsyncIterator[AIAgentInstance]:
        calls.append({"agent_id": agent_id, **kwargs})
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, BaseException):
            raise item
        for entry in item:
            yield entry

    _alist.calls = calls  # type: ignore[attr-defined]
    return _alist


async def collect(trigger: IceAIAgentInstanceTrigger) -> list[TriggerEvent]:
    return [event async for event in trigger.run()]


def expected(status: str, reason: str, **overrides: Any) -> dict[str, Any]:
    return {
        "status": status,
        "reason": reason,
        "agent_id": AGENT_ID,
        "instance_id": INSTANCE_ID,
        "channel_id": CHANNEL_ID,
        "correlation_id": CID,
        **overrides,
    }


def test_serialize_round_trip_without_secrets() -> None:
    trigger = make_trigger(end_time=1234.5, not_found_deadline=99.0, stop_on_kill=True)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_ice.triggers.agent_instance.IceAIAgentInstanceTrigger"
    assert kwargs == {
        "ice_conn_id": "ice_default",
        "agent_id": AGENT_ID,
        "correlation_id": CID,
        "channel_id": CHANNEL_ID,
        "instance_id": INSTANCE_ID,
        "window_start": WINDOW_START,
        "poll_interval": 5.0,
        "end_time": 1234.5,
        "not_found_deadline": 99.0,
        "max_consecutive_errors": 3,
        "stop_on_kill": True,
        "coalesce": False,
    }
    assert IceAIAgentInstanceTrigger(**kwargs).serialize() == (classpath, kwargs)
    # Only JSON-native values (serde-safe), no credentials.
    text = json.dumps(kwargs)
    assert "secret" not in text.lower()
    assert "token" not in text.lower()


async def test_success_event_after_waiting(no_sleep: AsyncMock) -> None:
    fake = listing(
        [instance("Created", correlation_id=CID)],
        [instance("Executing", correlation_id=CID)],
        [instance("Finished", correlation_id=CID, call_log=True)],
    )
    with patch.object(IceHook, "alist_ai_agent_instances", new=fake):
        events = await collect(make_trigger())
    assert len(events) == 1
    payload = events[0].payload
    assert {k: payload[k] for k in expected("success", "finished")} == expected("success", "finished")
    assert payload["instance_status"] == "Finished"
    assert payload["call_log_available"] is True
    assert CALL_LOG_URL not in json.dumps(payload)
    assert AUTH_TOKEN not in json.dumps(payload)
    assert len(fake.calls) == 3  # type: ignore[attr-defined]
    assert fake.calls[0]["start_time"].isoformat().startswith("2026-01-01T00:00:00")  # type: ignore[attr-defined]
    assert [c.args[0] for c in no_sleep.await_args_list] == [5.0, 5.0]


async def test_recovers_from_transient_errors(no_sleep: AsyncMock) -> None:
    fake = listing(
        IceServerError("busy", http_status=503),
        IceTransportError("reset", action="ListAIAgentInstance"),
        [instance("Finished", correlation_id=CID)],
    )
    with patch.object(IceHook, "alist_ai_agent_instances", new=fake):
        events = await collect(make_trigger(max_consecutive_errors=2))
    assert events[0].payload["status"] == "success"
    assert no_sleep.await_count == 2  # the error branches sleep too


async def test_errors_reset_after_a_healthy_poll() -> None:
    error = IceServerError("busy", http_status=503)
    fake = listing(
        error, [instance("Executing", correlation_id=CID)], error, [instance("Finished", correlation_id=CID)]
    )
    with patch.object(IceHook, "alist_ai_agent_instances", new=fake):
        events = await collect(make_trigger(max_consecutive_errors=1))
    assert events[0].payload["status"] == "success"


async def test_too_many_consecutive_errors_is_an_error_event(no_sleep: AsyncMock) -> None:
    fake = listing(IceServerError("busy", http_status=503))
    with patch.object(IceHook, "alist_ai_agent_instances", new=fake):
        events = await collect(make_trigger(max_consecutive_errors=2))
    payload = events[0].payload
    assert payload["status"] == "error"
    assert payload["reason"] == "poll_error"
    assert "3 times in a row" in payload["message"]
    assert len(fake.calls) == 3  # type: ignore[attr-defined]


async def test_permanent_error_fails_at_once() -> None:
    fake = listing(IceAuthError("bad key", code="InvalidAccessKeyId.NotFound", http_status=403))
    with patch.object(IceHook, "alist_ai_agent_instances", new=fake):
        events = await collect(make_trigger())
    assert events[0].payload["status"] == "error"
    assert len(fake.calls) == 1  # type: ignore[attr-defined]


async def test_not_found_after_deadline_names_agent_channel_and_window() -> None:
    fake = listing([instance("Executing", correlation_id="af-other", channel_id="other")])
    with patch.object(IceHook, "alist_ai_agent_instances", new=fake):
        events = await collect(make_trigger(not_found_deadline=time.time() - 1))
    payload = events[0].payload
    assert payload["status"] == "error"
    assert payload["reason"] == "not_found"
    assert AGENT_ID in payload["message"]
    assert CHANNEL_ID in payload["message"]
    assert "2026-01-01T00:00:00Z" in payload["message"]


async def test_not_found_before_deadline_keeps_waiting() -> None:
    fake = listing([], [instance("Finished", correlation_id=CID)])
    with patch.object(IceHook, "alist_ai_agent_instances", new=fake):
        events = await collect(make_trigger())
    assert events[0].payload["status"] == "success"


async def test_deadline_in_the_past_times_out_without_polling() -> None:
    fake = listing([instance("Finished", correlation_id=CID)])
    with patch.object(IceHook, "alist_ai_agent_instances", new=fake):
        events = await collect(make_trigger(end_time=time.time() - 1))
    assert events[0].payload["status"] == "timeout"
    assert events[0].payload["reason"] == "timeout"
    assert fake.calls == []  # type: ignore[attr-defined]


async def test_timeout_carries_the_last_status(no_sleep: AsyncMock) -> None:
    now = [100.0]
    inner = listing([instance("Executing", correlation_id=CID)])

    async def advancing(self: IceHook, agent_id: str, **kwargs: Any) -> AsyncIterator[AIAgentInstance]:
        now[0] = 149.0  # the deadline is one second away after this poll
        async for entry in inner(self, agent_id, **kwargs):
            yield entry

    with (
        patch.object(IceHook, "alist_ai_agent_instances", new=advancing),
        patch("airflow_provider_ice.triggers.agent_instance.time.time", side_effect=lambda: now[0]),
    ):
        task = asyncio.ensure_future(collect(make_trigger(end_time=150.0, not_found_deadline=None)))
        while not no_sleep.await_count:
            await REAL_SLEEP(0)
        # The sleep never overshoots the deadline.
        assert no_sleep.await_args_list[0].args[0] == pytest.approx(1.0)
        now[0] = 151.0
        events = await task
    assert events[0].payload["status"] == "timeout"
    assert events[0].payload["instance_status"] == "Executing"


async def test_unknown_status_keeps_waiting_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    fake = listing(
        [instance("Paused", correlation_id=CID)],
        [instance("Paused", correlation_id=CID)],
        [instance("Finished", correlation_id=CID)],
    )
    with patch.object(IceHook, "alist_ai_agent_instances", new=fake):
        events = await collect(make_trigger())
    assert events[0].payload["status"] == "success"
    assert caplog.text.count("'Paused'") == 1


async def test_still_running_does_not_emit(no_sleep: AsyncMock) -> None:
    async def short(_seconds: float) -> None:
        await REAL_SLEEP(0.01)

    no_sleep.side_effect = short
    fake = listing([instance("Executing", correlation_id=CID)])
    with patch.object(IceHook, "alist_ai_agent_instances", new=fake):
        task = asyncio.create_task(make_trigger().run().__anext__())
        await REAL_SLEEP(0.2)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(fake.calls) > 1  # type: ignore[attr-defined]


async def test_instance_id_only_uses_describe() -> None:
    describe = AsyncMock(side_effect=[IceNotFoundError("no", http_status=404), instance("Finished")])
    with (
        patch.object(IceHook, "adescribe_ai_agent_instance", new=describe),
        patch.object(IceHook, "alist_ai_agent_instances") as list_,
    ):
        events = await collect(make_trigger(correlation_id=None, channel_id=None))
    assert events[0].payload["status"] == "success"
    assert describe.await_count == 2
    list_.assert_not_called()


async def test_poller_seam_can_be_replaced() -> None:
    seen: list[InstanceTarget] = []

    class Shared:
        async def poll_once(self, target: InstanceTarget) -> Observation:
            seen.append(target)
            return Observation(Outcome.FINISHED, instance("Finished", correlation_id=CID))

        async def aclose(self) -> None:
            seen.append("closed")  # type: ignore[arg-type]

    trigger = make_trigger()
    with patch.object(IceAIAgentInstanceTrigger, "make_poller", return_value=Shared()):
        events = await collect(trigger)
    assert events[0].payload["status"] == "success"
    assert seen[0].correlation_id == CID
    assert seen[-1] == "closed"


async def test_a_poller_counting_its_failures_sets_the_error_tolerance() -> None:
    """A shared sweep may fail several times before the trigger reads: its count decides, not the reads."""
    reads: list[int] = []

    class Shared:
        paces_itself = True
        failures_in_a_row = 0

        async def poll_once(self, target: InstanceTarget) -> Observation:
            self.failures_in_a_row += 2  # two failed sweeps per read
            reads.append(self.failures_in_a_row)
            raise IceServerError("busy", http_status=503)

        async def aclose(self) -> None:
            pass

    with patch.object(IceAIAgentInstanceTrigger, "make_poller", return_value=Shared()):
        events = await collect(make_trigger(max_consecutive_errors=3))
    assert events[0].payload["status"] == "error"
    assert "4 times in a row" in events[0].payload["message"]
    assert reads == [2, 4]


def test_default_poller_is_direct_without_coalescing() -> None:
    assert isinstance(make_trigger().make_poller(), DirectInstancePoller)


async def test_on_kill_stops_the_instance_when_asked() -> None:
    with patch.object(IceHook, "astop_ai_agent_instance", new=AsyncMock()) as stop:
        await make_trigger(stop_on_kill=True).on_kill()
        stop.assert_awaited_once_with(INSTANCE_ID)
        stop.reset_mock()
        await make_trigger(stop_on_kill=False).on_kill()
        stop.assert_not_awaited()
        await make_trigger(stop_on_kill=True, instance_id=None).on_kill()
        stop.assert_not_awaited()


async def test_on_kill_never_raises() -> None:
    stop = AsyncMock(side_effect=IceServerError("down", http_status=503))
    with patch.object(IceHook, "astop_ai_agent_instance", new=stop):
        await make_trigger(stop_on_kill=True).on_kill()
    stop.assert_awaited_once()
