"""IceAIAgentInstanceSensor in poke, reschedule and deferrable mode, with the IceHook mocked."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from unittest.mock import patch

import pytest
from airflow.exceptions import AirflowRescheduleException  # not in common-compat; same class in 2.x/3.x
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    PokeReturnValue,
    TaskDeferred,
)

from airflow_provider_ice.api.errors import IceAuthError, IceServerError, IceValidationError
from airflow_provider_ice.exceptions import (
    IceAgentCallError,
    IceAgentInstanceNotFoundError,
    IceTriggerEventError,
)
from airflow_provider_ice.hooks.ice import IceHook
from airflow_provider_ice.sensors.agent_instance import ERRORS_STATE_KEY, IceAIAgentInstanceSensor
from airflow_provider_ice.triggers.agent_instance import IceAIAgentInstanceTrigger
from tests.airflow_compat import needs_task_state_store
from tests.unit.agent_fakes import (
    AGENT_ID,
    AUTH_TOKEN,
    CALL_LOG_URL,
    CHANNEL_ID,
    CONN_JSON,
    INSTANCE_ID,
    FakeStateStore,
    context,
    instance,
    listing,
    logged,
)

CID = "af-0123456789abcdef0123456789abcdef"
CALL = {
    "agent_id": AGENT_ID,
    "instance_id": INSTANCE_ID,
    "channel_id": CHANNEL_ID,
    "correlation_id": CID,
    "created_at": "2026-01-01T10:00:00Z",
}
RECORD_KEYS = {
    "agent_id",
    "instance_id",
    "channel_id",
    "status",
    "user_data",
    "correlation_id",
    "call_log_available",
}


@pytest.fixture(autouse=True)
def _conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", CONN_JSON)


def make_sensor(**kwargs) -> IceAIAgentInstanceSensor:
    kwargs.setdefault("task_id", "wait")
    if "agent_id" not in kwargs:
        kwargs.setdefault("call", CALL)
    kwargs.setdefault("poke_interval", 0)
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("deferrable", False)
    return IceAIAgentInstanceSensor(**kwargs)


# -- poke ---------------------------------------------------------------------------------------


def test_poke_finished_returns_the_record_without_secrets() -> None:
    fake = listing([instance("Finished", correlation_id=CID, call_log=True)])
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=fake) as list_,
        patch("airflow.providers.common.compat.sdk.mask_secret") as mask,
    ):
        result = make_sensor().poke(context())
    assert isinstance(result, PokeReturnValue)
    assert result.is_done
    record = result.xcom_value
    assert set(record) == RECORD_KEYS
    assert record["status"] == "Finished"
    assert record["correlation_id"] == CID
    assert record["channel_id"] == CHANNEL_ID
    assert record["call_log_available"] is True
    assert CALL_LOG_URL not in json.dumps(record)
    assert AUTH_TOKEN not in json.dumps(record)
    mask.assert_any_call(CALL_LOG_URL)  # masked in logs even when not pushed
    # The window starts shortly before created_at and ends a little after now.
    start = list_.call_args.kwargs["start_time"]
    assert start.isoformat() == "2026-01-01T09:55:00+00:00"


def test_include_call_log_url_is_opt_in() -> None:
    fake = listing([instance("Finished", correlation_id=CID, call_log=True)])
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=fake):
        result = make_sensor(include_call_log_url=True).poke(context())
    assert result.xcom_value["call_log_url"] == CALL_LOG_URL  # type: ignore[union-attr]


@pytest.mark.parametrize("status", ["Created", "Executing"])
def test_poke_keeps_waiting(status: str) -> None:
    fake = listing([instance(status, correlation_id=CID)])
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=fake):
        assert make_sensor().poke(context()) is False


def test_unknown_status_warns_once(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    sensor = make_sensor()
    fake = listing([instance("Suspended", correlation_id=CID)])
    with caplog.at_level(logging.WARNING), patch.object(IceHook, "list_ai_agent_instances", side_effect=fake):
        assert sensor.poke(context()) is False
        assert sensor.poke(context()) is False
    assert logged(caplog, capsys).count("'Suspended'") == 1


def test_matches_by_channel_for_calls_placed_outside_airflow() -> None:
    other = instance("Finished", channel_id="someone-else")
    ours = instance("Executing", channel_id="ch-x", user_data="free text")
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([other, ours])):
        sensor = make_sensor(agent_id=AGENT_ID, channel_id="ch-x", created_after="2026-01-01T10:00:00+08:00")
        assert sensor.poke(context()) is False


def test_not_found_fails_naming_agent_channel_and_window() -> None:
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([])),
        pytest.raises(IceAgentInstanceNotFoundError) as error,
    ):
        make_sensor(not_found_timeout=0).poke(context())
    message = str(error.value)
    assert AGENT_ID in message
    assert CHANNEL_ID in message
    assert "2026-01-01T09:55:00Z" in message


def test_transient_errors_are_tolerated_then_fail() -> None:
    sensor = make_sensor(max_consecutive_errors=2)
    with patch.object(
        IceHook, "list_ai_agent_instances", side_effect=listing(IceServerError("busy", http_status=503))
    ):
        assert sensor.poke(context()) is False
        assert sensor.poke(context()) is False
        with pytest.raises(IceAgentCallError, match="3 times in a row"):
            sensor.poke(context())


def test_permanent_error_fails_at_once() -> None:
    with (
        patch.object(
            IceHook, "list_ai_agent_instances", side_effect=listing(IceAuthError("no", http_status=403))
        ),
        pytest.raises(IceAgentCallError, match="no"),
    ):
        make_sensor().poke(context())


# -- execute: poke and reschedule ---------------------------------------------------------------


def test_execute_poke_mode_returns_the_record() -> None:
    fake = listing([instance("Executing", correlation_id=CID)], [instance("Finished", correlation_id=CID)])
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=fake):
        record = make_sensor().execute(context())
    assert record["status"] == "Finished"


def test_execute_timeout_raises_sensor_timeout() -> None:
    fake = listing([instance("Executing", correlation_id=CID)])
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=fake),
        pytest.raises(AirflowSensorTimeout),
    ):
        make_sensor(timeout=0.01).execute(context())


def test_soft_fail_skips_on_timeout_and_on_not_found() -> None:
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([instance(correlation_id=CID)])),
        pytest.raises(AirflowSkipException),
    ):
        make_sensor(timeout=0.01, soft_fail=True).execute(context())
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([])),
        pytest.raises(AirflowSkipException),
    ):
        make_sensor(not_found_timeout=0, soft_fail=True).execute(context())


@needs_task_state_store()
def test_reschedule_mode_reschedules_and_keeps_its_error_budget() -> None:
    store = FakeStateStore({ERRORS_STATE_KEY: 2})
    error = IceServerError("busy", http_status=503)
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=listing(error)):
        sensor = make_sensor(mode="reschedule", max_consecutive_errors=3, poke_interval=5)
        with pytest.raises(AirflowRescheduleException):
            sensor.execute(context(store=store))
        assert store.data[ERRORS_STATE_KEY] == 3
        # A new process for the next poke: the count comes back from the store.
        with pytest.raises(IceAgentCallError, match="4 times in a row"):
            make_sensor(mode="reschedule", max_consecutive_errors=3).execute(context(store=store))


@needs_task_state_store()
def test_reschedule_mode_resets_the_error_count_after_a_good_poke() -> None:
    store = FakeStateStore({ERRORS_STATE_KEY: 2})
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([instance(correlation_id=CID)])),
        pytest.raises(AirflowRescheduleException),
    ):
        make_sensor(mode="reschedule", poke_interval=5).execute(context(store=store))
    assert store.data[ERRORS_STATE_KEY] == 0


# -- deferrable ---------------------------------------------------------------------------------


def test_deferrable_checks_once_then_defers_with_the_sensor_timeout() -> None:
    sensor = make_sensor(deferrable=True, timeout=600, poke_interval=7, not_found_timeout=120)
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([instance(correlation_id=CID)])),
        patch("airflow_provider_ice.sensors.agent_instance.time.time", return_value=1_000_000.0),
        pytest.raises(TaskDeferred) as deferred,
    ):
        sensor.execute(context())
    assert deferred.value.timeout == timedelta(seconds=600)
    assert deferred.value.method_name == "execute_complete"
    trigger = deferred.value.trigger
    assert isinstance(trigger, IceAIAgentInstanceTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs["window_start"] == "2026-01-01T09:55:00Z"
    assert kwargs["poll_interval"] == 7
    assert kwargs["not_found_deadline"] == 1_000_120.0
    assert kwargs["end_time"] == 1_000_000.0 + 600 + 7 + 60
    assert kwargs["stop_on_kill"] is False
    assert (kwargs["agent_id"], kwargs["channel_id"], kwargs["correlation_id"]) == (AGENT_ID, CHANNEL_ID, CID)


def test_deferrable_returns_at_once_when_finished() -> None:
    fake = listing([instance("Finished", correlation_id=CID)])
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=fake):
        record = make_sensor(deferrable=True).execute(context())
    assert record["status"] == "Finished"


def _event(status: str, reason: str = "finished") -> dict:
    return {
        "status": status,
        "message": f"{status} message",
        "reason": reason,
        "agent_id": AGENT_ID,
        "instance_id": INSTANCE_ID,
        "channel_id": CHANNEL_ID,
        "correlation_id": CID,
        "instance_status": "Finished",
        "user_data": "{}",
        "call_log_available": True,
    }


def test_execute_complete_success() -> None:
    record = make_sensor().execute_complete(context(), _event("success"))
    assert record == {
        "agent_id": AGENT_ID,
        "instance_id": INSTANCE_ID,
        "channel_id": CHANNEL_ID,
        "status": "Finished",
        "user_data": "{}",
        "correlation_id": CID,
        "call_log_available": True,
    }


def test_execute_complete_fetches_a_fresh_url_on_the_worker() -> None:
    fake = listing([instance("Finished", correlation_id=CID, call_log=True)])
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=fake):
        record = make_sensor(include_call_log_url=True).execute_complete(context(), _event("success"))
    assert record["call_log_url"] == CALL_LOG_URL


def test_execute_complete_timeout_and_errors() -> None:
    with pytest.raises(AirflowSensorTimeout):
        make_sensor().execute_complete(context(), _event("timeout", "timeout"))
    with pytest.raises(IceAgentInstanceNotFoundError):
        make_sensor().execute_complete(context(), _event("error", "not_found"))
    with pytest.raises(IceAgentCallError):
        make_sensor().execute_complete(context(), _event("error", "poll_error"))


@pytest.mark.parametrize("event", [None, {"status": "weird"}])
def test_execute_complete_rejects_bad_events(event: object) -> None:
    with pytest.raises(IceTriggerEventError):
        make_sensor().execute_complete(context(), event)  # type: ignore[arg-type]


def test_deferred_soft_fail_skips_through_resume_execution() -> None:
    sensor = make_sensor(soft_fail=True)
    with pytest.raises(AirflowSkipException):
        sensor.resume_execution("execute_complete", {"event": _event("timeout", "timeout")}, context())


# -- parameters ---------------------------------------------------------------------------------


def test_constructor_requires_an_identity() -> None:
    with pytest.raises(ValueError, match="call=<operator output> or agent_id"):
        IceAIAgentInstanceSensor(task_id="s")
    with pytest.raises(ValueError, match="channel_id or correlation_id"):
        IceAIAgentInstanceSensor(task_id="s", agent_id=AGENT_ID)


@pytest.mark.parametrize("call", ["inst-1", {"instance_id": "x"}])
def test_bad_call_value_names_the_parameter(call: object) -> None:
    with (
        patch.object(IceHook, "list_ai_agent_instances") as list_,
        pytest.raises(IceValidationError, match="call"),
    ):
        make_sensor(call=call).poke(context())
    list_.assert_not_called()


def test_naive_created_after_is_rejected() -> None:
    with pytest.raises(IceValidationError, match="created_after"):
        make_sensor(agent_id=AGENT_ID, channel_id="c", created_after="2026-01-01T10:00:00").poke(context())


def test_template_fields() -> None:
    assert set(IceAIAgentInstanceSensor.template_fields) == {
        "call",
        "agent_id",
        "channel_id",
        "correlation_id",
        "created_after",
        "ice_conn_id",
        "poke_interval",
    }


def test_a_templated_poke_interval_is_what_the_trigger_polls_with() -> None:
    """The ``poke_interval`` Param of a DAG reaches the trigger (it used to be read at parse time)."""
    sensor = make_sensor(deferrable=True, poke_interval="{{ params.poke_interval }}")
    sensor.render_template_fields({"params": {"poke_interval": 3}})
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([instance(correlation_id=CID)])),
        pytest.raises(TaskDeferred) as deferred,
    ):
        sensor.execute(context())
    assert deferred.value.trigger.serialize()[1]["poll_interval"] == 3.0


@pytest.mark.parametrize("rendered", ["soon", "-1", "nan", True])
def test_a_bad_poke_interval_names_the_parameter_before_any_request(rendered: object) -> None:
    sensor = make_sensor(poke_interval="{{ params.poke_interval }}")
    sensor.render_template_fields({"params": {"poke_interval": rendered}})
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=AssertionError("no request")),
        pytest.raises(Exception, match="poke_interval") as raised,
    ):
        sensor.execute(context())
    assert isinstance(raised.value.__cause__ or raised.value, IceValidationError)


@pytest.mark.parametrize(("permanent", "retried"), [(True, False), (False, True)])
def test_an_error_event_fails_without_retry_only_when_permanent(permanent: bool, retried: bool) -> None:
    """A trigger that gave up on refused credentials says so in its event; the task is not retried."""
    event = {"status": "error", "reason": "poll_error", "message": "refused", "permanent": permanent}
    with pytest.raises(IceAgentCallError) as raised:
        make_sensor(deferrable=True).execute_complete(context(), event)
    assert isinstance(raised.value, AirflowFailException) is not retried


def test_refused_credentials_while_poking_fail_without_retry() -> None:
    refused = IceAuthError("InvalidAccessKeyId.NotFound", code="InvalidAccessKeyId.NotFound")
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=refused),
        pytest.raises(AirflowFailException, match="InvalidAccessKeyId"),
    ):
        make_sensor().execute(context())
