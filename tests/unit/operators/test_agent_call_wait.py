"""The call operators' waiting with the IceHook mocked: sync polls, deferral, resuming, on_kill."""

from __future__ import annotations

import json
from unittest.mock import MagicMock, patch

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from airflow_provider_ice.api.errors import (
    IceServerError,
    IceTransportError,
)
from airflow_provider_ice.exceptions import (
    IceAgentCallError,
    IceAgentInstanceNotFoundError,
    IceAgentWaitTimeout,
    IceTriggerEventError,
)
from airflow_provider_ice.hooks.ice import IceHook
from airflow_provider_ice.operators.agent_call import CALL_XCOM_KEY
from airflow_provider_ice.triggers.agent_instance import IceAIAgentInstanceTrigger
from tests.unit.agent_fakes import (
    AGENT_ID,
    CHANNEL_ID,
    CID,
    INSTANCE_ID,
    TOKEN,
    context,
    instance,
    listing,
    logged,
    make_op,
)

# -- waiting ------------------------------------------------------------------------------------


def test_sync_wait_polls_until_finished(generate: MagicMock) -> None:
    batches = listing(
        [instance("Created", correlation_id=CID)],
        IceServerError("boom", http_status=503),
        [instance("Executing", correlation_id=CID)],
        [instance("Finished", correlation_id=CID, call_log=True)],
    )
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=batches) as list_:
        result = make_op(wait_for_completion=True, deferrable=False).execute(context())
    assert list_.call_count == 4
    assert result["instance_id"] == INSTANCE_ID
    assert "call_log_url" not in result


def test_sync_wait_timeout_stops_the_instance(generate: MagicMock, stop: MagicMock) -> None:
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([instance(correlation_id=CID)])),
        pytest.raises(IceAgentWaitTimeout, match="did not finish"),
    ):
        make_op(wait_for_completion=True, deferrable=False, timeout=0.05).execute(context())
    stop.assert_called_once_with(INSTANCE_ID)


def test_sync_wait_timeout_without_stop_on_kill(generate: MagicMock, stop: MagicMock) -> None:
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([instance(correlation_id=CID)])),
        pytest.raises(IceAgentWaitTimeout),
    ):
        make_op(wait_for_completion=True, deferrable=False, timeout=0.05, stop_on_kill=False).execute(
            context()
        )
    stop.assert_not_called()


def test_sync_wait_not_found_fails_without_retry(generate: MagicMock) -> None:
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([])),
        pytest.raises(IceAgentInstanceNotFoundError, match=f"agent '{AGENT_ID}'.*channel '{CHANNEL_ID}'"),
    ):
        make_op(wait_for_completion=True, deferrable=False, not_found_timeout=0.05).execute(context())
    assert issubclass(IceAgentInstanceNotFoundError, AirflowFailException)


def test_sync_wait_too_many_errors(generate: MagicMock) -> None:
    error = IceTransportError("connection reset", action="ListAIAgentInstance")
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing(error)) as list_,
        pytest.raises(IceAgentCallError, match="3 times in a row"),
    ):
        make_op(wait_for_completion=True, deferrable=False, max_consecutive_errors=2).execute(context())
    assert list_.call_count == 3


def test_deferrable_checks_once_then_defers_with_absolute_deadlines(generate: MagicMock) -> None:
    op = make_op(wait_for_completion=True, deferrable=True, timeout=600, not_found_timeout=60)
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([instance(correlation_id=CID)])),
        patch("airflow_provider_ice.operators._call_base.time.time", return_value=1_000_000.0),
        pytest.raises(TaskDeferred) as deferred,
    ):
        op.execute(context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, IceAIAgentInstanceTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout is None
    call = deferred.value.kwargs["call"]
    assert call["instance_id"] == INSTANCE_ID
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_ice.triggers.agent_instance.IceAIAgentInstanceTrigger"
    window_start = kwargs.pop("window_start")
    assert window_start.endswith("Z")
    assert kwargs == {
        "ice_conn_id": "ice_default",
        "agent_id": AGENT_ID,
        "correlation_id": CID,
        "channel_id": CHANNEL_ID,
        "instance_id": INSTANCE_ID,
        "poll_interval": 0.01,
        "end_time": 1_000_600.0,
        "not_found_deadline": 1_000_060.0,
        "max_consecutive_errors": 3,
        "stop_on_kill": True,
        "coalesce": True,
    }
    assert TOKEN not in json.dumps([kwargs, deferred.value.kwargs])


def test_deferrable_does_not_defer_when_already_finished(generate: MagicMock) -> None:
    with patch.object(
        IceHook, "list_ai_agent_instances", side_effect=listing([instance("Finished", correlation_id=CID)])
    ):
        result = make_op(wait_for_completion=True, deferrable=True).execute(context())
    assert result["instance_id"] == INSTANCE_ID


def test_no_wait_returns_right_after_the_call(generate: MagicMock) -> None:
    with patch.object(IceHook, "list_ai_agent_instances") as list_:
        make_op(deferrable=True).execute(context())
    list_.assert_not_called()


def _event(status: str, reason: str = "finished", **extra: object) -> dict:
    return {
        "status": status,
        "message": f"{status} message",
        "reason": reason,
        "agent_id": AGENT_ID,
        "instance_id": INSTANCE_ID,
        "channel_id": CHANNEL_ID,
        "correlation_id": CID,
        "instance_status": "Finished" if status == "success" else "Executing",
        "user_data": None,
        "call_log_available": status == "success",
        **extra,
    }


CALL = {"agent_id": AGENT_ID, "instance_id": INSTANCE_ID, "channel_id": CHANNEL_ID}


def test_execute_complete_success_returns_the_call() -> None:
    assert make_op().execute_complete(context(), _event("success"), call=CALL) == CALL


def test_execute_complete_timeout_stops_then_fails(stop: MagicMock) -> None:
    with pytest.raises(IceAgentWaitTimeout, match="timeout message"):
        make_op().execute_complete(context(), _event("timeout", "timeout"), call=CALL)
    stop.assert_called_once_with(INSTANCE_ID)


def test_execute_complete_timeout_stop_failure_does_not_hide_the_timeout(stop: MagicMock) -> None:
    stop.side_effect = IceServerError("down", http_status=503)
    with pytest.raises(IceAgentWaitTimeout):
        make_op().execute_complete(context(), _event("timeout", "timeout"), call=CALL)


@pytest.mark.parametrize(
    ("reason", "error"),
    [("not_found", IceAgentInstanceNotFoundError), ("poll_error", IceAgentCallError)],
)
def test_execute_complete_error_does_not_stop(stop: MagicMock, reason: str, error: type) -> None:
    with pytest.raises(error, match="error message"):
        make_op().execute_complete(context(), _event("error", reason), call=CALL)
    stop.assert_not_called()


@pytest.mark.parametrize("event", [None, {"status": "cancelled"}, {"message": "x"}, "success"])
def test_execute_complete_rejects_bad_events(event: object) -> None:
    with pytest.raises(IceTriggerEventError):
        make_op().execute_complete(context(), event, call=CALL)  # type: ignore[arg-type]


def test_execute_complete_rejects_an_event_for_another_agent() -> None:
    with pytest.raises(IceTriggerEventError, match="another agent"):
        make_op().execute_complete(context(), _event("success", agent_id="other"), call=CALL)


# -- on_kill ------------------------------------------------------------------------------------


def test_on_kill_stops_the_placed_instance(generate: MagicMock, stop: MagicMock) -> None:
    op = make_op()
    op.execute(context())
    op.on_kill()
    stop.assert_called_once_with(INSTANCE_ID)


def test_on_kill_never_raises(
    generate: MagicMock, stop: MagicMock, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    stop.side_effect = IceServerError("down", http_status=503)
    op = make_op()
    op.execute(context())
    op.on_kill()
    assert "Could not stop agent instance" in logged(caplog, capsys)


def test_on_kill_before_any_call_does_nothing(stop: MagicMock) -> None:
    make_op().on_kill()
    stop.assert_not_called()


def test_on_kill_respects_stop_on_kill(generate: MagicMock, stop: MagicMock) -> None:
    op = make_op(stop_on_kill=False)
    op.execute(context())
    op.on_kill()
    stop.assert_not_called()


def test_deferral_keeps_the_call_in_xcom_for_runners_that_drop_defer_kwargs(generate: MagicMock) -> None:
    ctx = context()
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([instance(correlation_id=CID)])),
        pytest.raises(TaskDeferred),
    ):
        make_op(wait_for_completion=True, deferrable=True).execute(ctx)
    pushed = {c.kwargs["key"]: c.kwargs["value"] for c in ctx["ti"].xcom_push.call_args_list}
    assert pushed[CALL_XCOM_KEY]["instance_id"] == INSTANCE_ID
    ctx["ti"].xcom_pull.return_value = pushed[CALL_XCOM_KEY]
    assert make_op().execute_complete(ctx, _event("success")) == pushed[CALL_XCOM_KEY]
    ctx["ti"].xcom_pull.assert_called_once_with(task_ids="call", key=CALL_XCOM_KEY, map_indexes=-1)
