"""Restarts: a trigger rebuilt from ``serialize()`` mid-wait, a task killed mid-wait, retries per step.

What ``tests/unit`` already proves with fakes (the trigger's serialize round trip, a retry adopting
through the task state store or by correlation id) is shown here end to end: real signed HTTP to the
emulator, Airflow's own kill (``execution_timeout``) and retries through ``dag.test()``, and counts
from the emulator's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk._shared.module_loading import import_string
from airflow.triggers.base import TriggerEvent

from airflow_provider_ice.api.client import IceClient
from airflow_provider_ice.api.correlation import CORRELATION_KEY, make_correlation_id
from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.operators import _publish
from airflow_provider_ice.operators._agent_wait import WINDOW_MARGIN, iso, utcnow
from airflow_provider_ice.operators.agent_call import IceGenerateAIAgentCallOperator
from airflow_provider_ice.sensors.agent_instance import IceAIAgentInstanceSensor
from airflow_provider_ice.triggers.agent_instance import IceAIAgentInstanceTrigger
from tests.reliability._support import audit_run, task_tries, xcom_value

AGENT = "reliability-restarts"


async def _collect(trigger: IceAIAgentInstanceTrigger, events: list[TriggerEvent]) -> None:
    async for event in trigger.run():
        events.append(event)


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "direct"])
async def test_trigger_dropped_mid_wait_and_rebuilt_from_serialize_completes_once(
    ice_emulator_factory: Callable[..., IceEmulator],
    dag_conn: Callable[..., dict[str, Any]],
    coalesce: bool,
) -> None:
    emulator = ice_emulator_factory(user_join_delay=0.1, call_duration=1.2)
    dag_conn(emulator)
    correlation_id = f"af-restart-{coalesce}"
    with IceClient(emulator.credentials, endpoint=emulator.url) as client:
        placed = client.generate_ai_agent_call(AGENT, user_data={CORRELATION_KEY: correlation_id})
    trigger = IceAIAgentInstanceTrigger(
        ice_conn_id="ice_default",
        agent_id=AGENT,
        correlation_id=correlation_id,
        channel_id=placed.channel_id,
        instance_id=placed.instance_id,
        window_start=iso(utcnow() - WINDOW_MARGIN),
        poll_interval=0.1,
        end_time=time.time() + 30,
        not_found_deadline=time.time() + 10,
        coalesce=coalesce,
    )
    # What the triggerer stores: it must survive JSON (the trigger table) unchanged.
    classpath, kwargs = trigger.serialize()
    stored = json.loads(json.dumps(kwargs))

    events: list[TriggerEvent] = []
    first = asyncio.ensure_future(_collect(trigger, events))
    await asyncio.sleep(0.4)
    assert not first.done(), "the call was still running; the trigger must still wait"
    assert not events
    assert emulator.state(AGENT)["instances"][0]["Status"] != "Finished"
    polls_before = emulator.state()["request_counts"]["ListAIAgentInstance"]
    first.cancel()  # the triggerer dies (or the trigger moves to another triggerer)
    with contextlib.suppress(asyncio.CancelledError):
        await first
    assert polls_before >= 1

    rebuilt = import_string(classpath)(**stored)
    assert rebuilt.serialize() == (classpath, kwargs)
    await asyncio.wait_for(_collect(rebuilt, events), timeout=20)

    assert len(events) == 1, events
    payload = events[0].payload
    assert payload["status"] == "success", payload
    assert payload["instance_status"] == "Finished"
    assert payload["channel_id"] == placed.channel_id
    assert payload["correlation_id"] == correlation_id
    state = emulator.state()
    assert len(state["instances"]) == 1
    assert state["request_counts"]["GenerateAIAgentCall"] == 1
    assert state["request_counts"].get("StopAIAgentInstance", 0) == 0
    # The resumed operator completes with the call it placed, once.
    operator = IceGenerateAIAgentCallOperator(task_id="place_call", agent_id=AGENT)
    record = {"agent_id": AGENT, "instance_id": placed.instance_id, "channel_id": placed.channel_id}
    assert operator.execute_complete({}, event=payload, call=record) == record


@pytest.mark.parametrize(
    ("dag_id", "stopped"),
    [("ice_reliability_kill_wait_keep", False), ("ice_reliability_kill_wait_stop", True)],
    ids=["left-running", "stopped-on-kill"],
)
def test_task_killed_during_sync_wait_is_retried_and_adopts_the_same_instance(
    airflow_db: str,
    ice_emulator_factory: Callable[..., IceEmulator],
    dag_conn: Callable[..., dict[str, Any]],
    dag_id: str,
    stopped: bool,
) -> None:
    # The call lasts longer than the task may run: the first try is killed while it waits.
    emulator = ice_emulator_factory(user_join_delay=0.1, call_duration=2.0)
    dag_conn(emulator)
    dag = getattr(importlib.import_module("tests.dags.ice_reliability_restarts"), dag_id)
    run = dag.test()
    state, attempt = task_tries(dag.dag_id, run.run_id)["place_call"]
    assert (str(run.state), state) == ("success", "success")
    assert attempt >= 2, "the first try should have been killed by execution_timeout"

    emulator_state = emulator.state()
    assert emulator_state["request_counts"]["GenerateAIAgentCall"] == 1
    [instance] = emulator_state["instances"]
    record = xcom_value(dag.dag_id, run.run_id, "place_call")
    assert record["instance_id"] == instance["InstanceId"]
    assert record["adopted"] is True
    assert instance["Status"] == "Finished"
    if stopped:
        assert instance["EndReason"] == "Stopped"
        assert emulator_state["request_counts"]["StopAIAgentInstance"] >= 1
    else:
        assert instance["EndReason"] != "Stopped"
        assert emulator_state["request_counts"].get("StopAIAgentInstance", 0) == 0


def _fail_once(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, *, run_first: bool) -> list[int]:
    """Make ``owner.name`` raise on its first call (after really running it when ``run_first``)."""
    original = getattr(owner, name)
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            if run_first:
                original(*args, **kwargs)
            raise RuntimeError(f"injected failure in {name}: the worker died here")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)
    return calls


#: Where each step fails once: after the call was placed, after the wait ended, after the file was
#: published, and while the summary reads it back.
STEP_FAILURES: dict[str, tuple[Any, str, bool]] = {
    "place_call": (IceGenerateAIAgentCallOperator, "send", True),
    "wait_for_call": (IceAIAgentInstanceSensor, "execute_complete", False),
    "fetch_call_log": (_publish, "publish_file", True),
    "summarise_conversation": (
        importlib.import_module("airflow_provider_ice.api.calllog"),
        "parse_call_log",
        False,
    ),
}


@pytest.mark.parametrize("step", list(STEP_FAILURES))
def test_airflow_retry_after_an_exception_in_each_step_never_places_a_second_call(
    airflow_db: str,
    ice_emulator_factory: Callable[..., IceEmulator],
    dag_conn: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    step: str,
) -> None:
    emulator = ice_emulator_factory(user_join_delay=0.1, call_duration=0.4)
    dag_conn(emulator)
    owner, name, run_first = STEP_FAILURES[step]
    calls = _fail_once(monkeypatch, owner, name, run_first=run_first)
    dag = importlib.import_module("tests.dags.ice_reliability_pipeline").dag
    run = dag.test(run_conf={"agent_id": AGENT, "destination": str(tmp_path)})

    tries = task_tries(dag.dag_id, run.run_id)
    assert str(run.state) == "success", tries
    # The failure was injected (the retry may not call the patched function again: a retried
    # place_call adopts without sending, a retried sensor finds the call already Finished).
    assert calls, f"the injected failure in {name} never ran"
    assert tries[step] == ("success", 2)
    assert emulator.state()["request_counts"]["GenerateAIAgentCall"] == 1
    correlation_id = make_correlation_id(dag.dag_id, run.run_id, "place_call", -1)
    audit = audit_run(emulator, AGENT, correlation_id, tmp_path, run.run_id, str(run.state))
    assert not audit.problems, audit.problems
    assert audit.saved_once == 1
    if step == "place_call":
        assert xcom_value(dag.dag_id, run.run_id, "place_call")["adopted"] is True
