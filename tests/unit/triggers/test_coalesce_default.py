"""Deferrable operator and sensor hand the trigger coalesced polling by default, with an opt-out."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_ice.hooks.ice import IceHook
from airflow_provider_ice.operators.agent_call import IceGenerateAIAgentCallOperator
from airflow_provider_ice.sensors.agent_instance import IceAIAgentInstanceSensor
from airflow_provider_ice.triggers.agent_instance import DirectInstancePoller, IceAIAgentInstanceTrigger
from airflow_provider_ice.triggers.coalesced import CoalescedInstancePoller
from tests.unit.agent_fakes import AGENT_ID, CONN_JSON, context, generate_response, instance, listing
from tests.unit.operators.test_agent_call import CID


@pytest.fixture(autouse=True)
def _conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", CONN_JSON)


def _deferred_trigger(task: object) -> IceAIAgentInstanceTrigger:
    with (
        patch.object(IceHook, "generate_ai_agent_call", return_value=generate_response()),
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([instance(correlation_id=CID)])),
        pytest.raises(TaskDeferred) as deferred,
    ):
        task.execute(context())  # type: ignore[attr-defined]
    trigger = deferred.value.trigger
    assert isinstance(trigger, IceAIAgentInstanceTrigger)
    return trigger


@pytest.mark.parametrize("coalesce", [None, True, False])
def test_operator_and_sensor_pass_coalescing_to_the_trigger(coalesce: bool | None) -> None:
    extra = {} if coalesce is None else {"coalesce_polls": coalesce}
    expected = coalesce is not False
    operator = IceGenerateAIAgentCallOperator(
        task_id="call", agent_id=AGENT_ID, wait_for_completion=True, deferrable=True, **extra
    )
    sensor = IceAIAgentInstanceSensor(
        task_id="wait", agent_id=AGENT_ID, correlation_id=CID, deferrable=True, **extra
    )
    for task in (operator, sensor):
        trigger = _deferred_trigger(task)
        assert trigger.serialize()[1]["coalesce"] is expected
        poller = trigger.make_poller()
        assert isinstance(poller, CoalescedInstancePoller if expected else DirectInstancePoller)


def test_instance_id_only_targets_always_poll_on_their_own() -> None:
    trigger = IceAIAgentInstanceTrigger(
        ice_conn_id="ice_default",
        agent_id=AGENT_ID,
        instance_id="inst-1",
        window_start="2026-01-01T00:00:00Z",
    )
    assert trigger.coalesce is True
    assert isinstance(trigger.make_poller(), DirectInstancePoller)
