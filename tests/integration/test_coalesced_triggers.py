"""Coalesced polling with real IceAIAgentInstanceTrigger coroutines over signed HTTP to the emulator.

Concurrency cases of the shared poller: many triggers in one loop share the sweeps; a trigger
restarted from its serialized kwargs just registers again; two triggerer processes each run their
own poller; a failing sweep is tolerated; the opt-out polls on its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ice.api.client import AsyncIceClient
from airflow_provider_ice.triggers.agent_instance import IceAIAgentInstanceTrigger
from airflow_provider_ice.triggers.poller import active_pollers

pytestmark = pytest.mark.integration

AGENT = "agent-coalesce"
REPO = Path(__file__).resolve().parents[2]


async def _place(emulator: Any, prefix: str, n: int, duration: float = 1.0) -> list[str]:
    """Place ``n`` calls; return their InstanceIds."""
    async with AsyncIceClient(emulator.credentials, endpoint=emulator.url) as client:
        return [
            (
                await client.generate_ai_agent_call(
                    AGENT,
                    user_data={
                        "AirflowCorrelationId": f"{prefix}-{i}",
                        "EmulatorScenario": {"UserJoinDelay": 0.1, "CallDuration": duration},
                    },
                )
            ).instance_id
            for i in range(n)
        ]


async def _stop(emulator: Any, instance_ids: list[str]) -> None:
    async with AsyncIceClient(emulator.credentials, endpoint=emulator.url) as client:
        for instance_id in instance_ids:
            await client.stop_ai_agent_instance(instance_id)


def _trigger(
    correlation_id: str, *, coalesce: bool = True, interval: float = 0.3
) -> IceAIAgentInstanceTrigger:
    now = time.time()
    return IceAIAgentInstanceTrigger(
        ice_conn_id="ice_default",
        agent_id=AGENT,
        correlation_id=correlation_id,
        window_start=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
        poll_interval=interval,
        end_time=now + 30,
        not_found_deadline=now + 30,
        max_consecutive_errors=5,
        coalesce=coalesce,
    )


async def _events(trigger: IceAIAgentInstanceTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


async def _until(condition: Callable[[], bool], task: asyncio.Future[Any] | None = None) -> None:
    """Wait until ``condition()`` holds (generous deadline); fail early if ``task`` ends first."""
    deadline = time.monotonic() + 30
    while not condition():
        assert task is None or not task.done(), task.result() if task else None
        assert time.monotonic() < deadline, "condition not met within 30 s"
        await asyncio.sleep(0.02)


def _lists(emulator: Any) -> int:
    return int(emulator.state("-")["request_counts"].get("ListAIAgentInstance", 0))


async def test_many_triggers_share_one_sweep(ice_connection: Any) -> None:
    await _place(ice_connection, "many", 30)
    results = await asyncio.gather(*(_events(_trigger(f"many-{i}")) for i in range(30)))
    for i, events in enumerate(results):
        assert len(events) == 1
        assert events[0]["status"] == "success"
        assert events[0]["correlation_id"] == f"many-{i}"
        assert events[0]["instance_status"] == "Finished"
    # 30 waits of ~1.1 s polled every 0.3 s: naive polling needs >= 30 x 3 requests; one shared
    # sweep per interval needs about one page per interval.
    assert _lists(ice_connection) <= 15
    await asyncio.sleep(0)
    assert active_pollers() == []  # the poller stopped with its last waiter


async def test_opt_out_polls_on_its_own(ice_connection: Any) -> None:
    # The calls end when the test stops them, not after a wall-clock duration that a loaded machine
    # may spend before the triggers' first polls.
    instance_ids = await _place(ice_connection, "solo", 5, duration=600.0)
    waiting = asyncio.gather(*(_events(_trigger(f"solo-{i}", coalesce=False)) for i in range(5)))
    deadline = time.monotonic() + 25
    while _lists(ice_connection) < 5 * 2 and not waiting.done() and time.monotonic() < deadline:
        assert active_pollers() == []  # no shared sweep, at any time
        await asyncio.sleep(0.05)
    assert not waiting.done(), waiting.result()
    # Taken before any StopAIAgentInstance is sent: the emulator counts and answers a listing in one
    # step of its loop, so every listing that saw a call Finished is counted after this.
    before_stop = _lists(ice_connection)
    assert before_stop >= 5 * 2
    await _stop(ice_connection, instance_ids)
    results = await asyncio.wait_for(waiting, 60)
    assert all(events[0]["status"] == "success" for events in results)
    assert active_pollers() == []
    # Each trigger saw its call Finished through a ListAIAgentInstance of its own (one shared sweep
    # would have seen all five at once), and all of them polled several times.
    assert _lists(ice_connection) - before_stop >= 5
    assert _lists(ice_connection) >= 5 * 3


async def test_restart_from_serialized_kwargs_registers_again(ice_connection: Any) -> None:
    await _place(ice_connection, "restart", 1, duration=2.0)
    first = _trigger("restart-0")
    task = asyncio.create_task(_events(first))
    deadline = time.monotonic() + 20  # the trigger imports its modules in a worker thread first
    while not active_pollers() and not task.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert active_pollers()[0].waiter_count == 1
    task.cancel()  # the triggerer restarts: the running trigger is cancelled ...
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(p.waiter_count == 0 for p in active_pollers())
    _classpath, kwargs = first.serialize()
    assert kwargs["coalesce"] is True
    json.dumps(kwargs)  # plain data: the triggerer stores it in the database
    events = await _events(IceAIAgentInstanceTrigger(**kwargs))  # ... and rebuilt from its kwargs
    assert [e["status"] for e in events] == ["success"]
    assert events[0]["correlation_id"] == "restart-0"


@pytest.mark.ice_emulator(error_rate=0.3, seed=3, actions=["ListAIAgentInstance"])
async def test_failing_sweeps_are_tolerated(ice_connection: Any) -> None:
    await _place(ice_connection, "flaky", 10)
    results = await asyncio.gather(*(_events(_trigger(f"flaky-{i}")) for i in range(10)))
    assert all(len(events) == 1 and events[0]["status"] == "success" for events in results)
    assert ice_connection.state("-")["error_counts"]  # some sweeps did fail


_PROCESS = """
import asyncio, json, sys, time
from airflow_provider_ice.triggers.agent_instance import IceAIAgentInstanceTrigger
from airflow_provider_ice.triggers.poller import CoalescedPoller

joined = []  # the poller each wait joined, as it joins
register = CoalescedPoller.register

def recording(poller, waiter):
    joined.append(poller)
    return register(poller, waiter)

CoalescedPoller.register = recording

async def main(ids):
    now = time.time()
    triggers = [IceAIAgentInstanceTrigger(ice_conn_id="ice_default", agent_id=sys.argv[1], correlation_id=cid,
        window_start=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)), poll_interval=0.3,
        end_time=now + 120, not_found_deadline=now + 120) for cid in ids]
    async def one(t):
        return [e.payload async for e in t.run()]
    task = asyncio.gather(*(one(t) for t in triggers))
    # The triggers import their modules in a worker thread first (cold in a fresh process).
    while len(joined) < len(ids) and not task.done():
        await asyncio.sleep(0.02)
    print("registered", flush=True)  # the test ends the calls now
    results = await task
    print(json.dumps({"pollers": len({id(p) for p in joined}), "waits": len(joined), "events": results}))

asyncio.run(main(sys.argv[2].split(",")))
"""


def test_two_triggerer_processes_each_run_their_own_poller(ice_connection: Any, tmp_path: Path) -> None:
    # The calls run until every wait of both processes has joined its poller (a process starts in
    # seconds on a loaded machine: calls of fixed length could end before its first sweep).
    instance_ids = asyncio.run(_place(ice_connection, "proc", 12, duration=600.0))
    env = {**os.environ}  # carries AIRFLOW_CONN_ICE_DEFAULT from the fixture
    # Overlapping sets: instances 4..7 are awaited in both processes (HA triggerers may do that).
    sets = [[f"proc-{i}" for i in range(0, 8)], [f"proc-{i}" for i in range(4, 12)]]
    errs = [tmp_path / f"stderr-{n}.txt" for n in range(len(sets))]
    procs = []
    for ids, err_path in zip(sets, errs, strict=True):
        with err_path.open("w") as err_file:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", _PROCESS, AGENT, ",".join(ids)],
                    stdout=subprocess.PIPE,
                    stderr=err_file,
                    text=True,
                    env=env,
                    cwd=REPO,
                )
            )
    for proc, err_path in zip(procs, errs, strict=True):
        assert proc.stdout is not None
        # Airflow logs to stdout too; an empty line is the end of the output.
        while (line := proc.stdout.readline()) and line.strip() != "registered":
            pass
        assert line, err_path.read_text()[-2000:]
    asyncio.run(_stop(ice_connection, instance_ids))
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    for out, ids, proc, err_path in zip(outputs, sets, procs, errs, strict=True):
        assert proc.returncode == 0, err_path.read_text()[-2000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["waits"] == len(ids)
        assert result["pollers"] == 1  # one shared poller per process for the agent
        assert [events[0]["correlation_id"] for events in result["events"]] == ids
        assert all(len(events) == 1 and events[0]["status"] == "success" for events in result["events"])


@pytest.mark.ice_emulator(security_token="STS-TOKEN-BEFORE-ROTATION")
async def test_a_credential_rotation_mid_wait_is_picked_up_by_the_shared_poller(
    ice_connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The calls run until the test stops them, once the rotation has been dealt with.
    instance_ids = await _place(ice_connection, "rot", 2, duration=600.0)
    first = asyncio.ensure_future(_events(_trigger("rot-0", interval=0.1)))
    await _until(lambda: bool(active_pollers()) and active_pollers()[0].sweeps >= 2)
    [poller] = active_pollers()
    assert poller.clients_built == 1
    # The STS token rotates: the old one is refused from now on, the connection holds the new one.
    ice_connection.rotate_credentials(security_token="STS-TOKEN-AFTER-ROTATION")
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", ice_connection.airflow_conn_json())
    rotated_at = poller.sweeps
    second = asyncio.ensure_future(_events(_trigger("rot-1", interval=0.1)))
    # Both waits on the poller, and ten sweeps after the rotation: enough to look up once per sweep.
    await _until(lambda: poller.waiter_count == 2 and poller.sweeps >= rotated_at + 10, first)
    await _stop(ice_connection, instance_ids)
    results = await asyncio.wait_for(asyncio.gather(first, second), 20)
    for n, events in enumerate(results):
        # Neither wait saw a failure: the refused sweep was re-run with the re-resolved connection.
        assert [(e["status"], e["reason"], e["correlation_id"]) for e in events] == [
            ("success", "finished", f"rot-{n}")
        ]
    refused = ice_connection.state("-")["error_counts"]
    assert sum(count for code, count in refused.items() if code.startswith("InvalidSecurityToken")) == 1
    assert poller.clients_built == 2  # looked the connection up once more, not once per sweep


async def test_the_shared_poller_looks_the_connection_up_again_at_an_interval(
    ice_connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_ice.triggers import poller as poller_module

    monkeypatch.setattr(poller_module, "CLIENT_MAX_AGE", 0.3)
    # The call runs until the test stops it, once the poller has looked the connection up 3 times.
    instance_ids = await _place(ice_connection, "age", 1, duration=600.0)
    waiting = asyncio.ensure_future(_events(_trigger("age-0", interval=0.1)))
    await _until(lambda: bool(active_pollers()) and active_pollers()[0].clients_built >= 3, waiting)
    [poller] = active_pollers()
    await _stop(ice_connection, instance_ids)
    assert [e["status"] for e in await asyncio.wait_for(waiting, 20)] == ["success"]
    assert poller.clients_built >= 3  # a fresh lookup every 0.3 s, without any refusal
    assert ice_connection.state("-")["error_counts"] == {}
