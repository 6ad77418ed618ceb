"""IceGenerateAIAgentCallOperator / IceStartAIAgentOutboundCallOperator with the IceHook mocked.

Placing, exactly-once adoption and outbound calls; waiting, resuming and killing are in
:mod:`tests.unit.operators.test_agent_call_wait`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from unittest.mock import MagicMock, patch

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_ice._compat import AIRFLOW_V_3_3_PLUS
from airflow_provider_ice.api.correlation import CORRELATION_KEY, embed_correlation_id, make_correlation_id
from airflow_provider_ice.api.errors import (
    IceOutcomeUnknownError,
    IceValidationError,
)
from airflow_provider_ice.api.models import StartAIAgentOutboundCallResponse
from airflow_provider_ice.exceptions import (
    IceAgentCallError,
)
from airflow_provider_ice.hooks.ice import IceHook
from airflow_provider_ice.links import CONSOLE_URL_XCOM_KEY, IceAIAgentInstanceLink, console_url
from airflow_provider_ice.operators.agent_call import (
    STATE_KEY,
    TOKEN_XCOM_KEY,
    IceGenerateAIAgentCallOperator,
    IceStartAIAgentOutboundCallOperator,
)
from tests.airflow_compat import needs_task_state_store
from tests.unit.agent_fakes import (
    AGENT_ID,
    AUTH_TOKEN,
    CHANNEL_ID,
    CID,
    INSTANCE_ID,
    TOKEN,
    FakeStateStore,
    context,
    instance,
    listing,
    make_op,
)

RECORD_KEYS = {
    "agent_id",
    "instance_id",
    "channel_id",
    "ai_agent_user_id",
    "user_id",
    "avatar_user_id",
    "session_id",
    "correlation_id",
    "created_at",
    "adopted",
}


def sent_user_data(generate: MagicMock) -> object:
    return generate.call_args.kwargs["user_data"]


# -- correlation ids and UserData ---------------------------------------------------------------


def test_correlation_id_is_per_task_instance_and_per_clear() -> None:
    base = make_correlation_id("dag", "run-1", "call", -1)
    assert base == make_correlation_id("dag", "run-1", "call", -1, 0)
    others = {
        make_correlation_id("dag", "run-1", "call", 0),
        make_correlation_id("dag", "run-1", "call", 1),
        make_correlation_id("dag", "run-2", "call", -1),
        make_correlation_id("dag", "run-1", "call", -1, 1),
    }
    assert base not in others
    assert len(others) == 4


@pytest.mark.parametrize(
    ("user_data", "expected"),
    [
        (None, {CORRELATION_KEY: "c"}),
        ("", {CORRELATION_KEY: "c"}),
        ({}, {CORRELATION_KEY: "c"}),
        ({"a": 1}, {"a": 1, CORRELATION_KEY: "c"}),
        ('{"a": 1}', {"a": 1, CORRELATION_KEY: "c"}),
        ({CORRELATION_KEY: "c"}, {CORRELATION_KEY: "c"}),
    ],
)
def test_embed_correlation_id(user_data: object, expected: object) -> None:
    assert embed_correlation_id(user_data, "c") == expected


@pytest.mark.parametrize("user_data", ["plain text", "[1, 2]", "{'a': 1}", "7", ["a"], 7])
def test_embed_refuses_user_data_that_is_not_a_json_object(user_data: object) -> None:
    with pytest.raises(IceValidationError, match=r"^user_data: .*JSON object.*correlation=False"):
        embed_correlation_id(user_data, "c")


def test_embed_correlation_id_off_leaves_user_data_alone() -> None:
    assert embed_correlation_id("plain text", None) == "plain text"


def test_embed_rejects_a_foreign_value_under_the_reserved_key() -> None:
    with pytest.raises(IceValidationError, match=r"user_data.*reserved"):
        embed_correlation_id({CORRELATION_KEY: "mine"}, "c")


# -- placing the call ---------------------------------------------------------------------------


def test_execute_places_one_call_and_returns_the_record_without_token(generate: MagicMock) -> None:
    store = FakeStateStore()
    ctx = context(store=store)
    op = make_op(user_data={"name": "Ann"}, user_id="ann", session_id="sess-1", expire=600)
    with patch("airflow.providers.common.compat.sdk.mask_secret") as mask:
        before = datetime.now().astimezone()
        result = op.execute(ctx)
    generate.assert_called_once()
    assert sent_user_data(generate) == {"name": "Ann", CORRELATION_KEY: CID}
    assert generate.call_args.kwargs["expire"] == 600
    assert generate.call_args.kwargs["session_id"] == "sess-1"
    assert set(result) == RECORD_KEYS
    assert result["instance_id"] == INSTANCE_ID
    assert result["channel_id"] == CHANNEL_ID
    assert result["correlation_id"] == CID
    assert result["adopted"] is False
    assert result["session_id"] == "sess-1"
    created = datetime.fromisoformat(result["created_at"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= created <= datetime.now().astimezone()
    assert TOKEN not in json.dumps(result)
    mask.assert_any_call(TOKEN)
    # Recorded for retries where Airflow has a task state store (3.3+; below, it is never touched),
    # and the console link persisted through XCom.
    assert store.data.get(STATE_KEY, {}).get("instance_id") == (INSTANCE_ID if AIRFLOW_V_3_3_PLUS else None)
    ctx["ti"].xcom_push.assert_any_call(
        key=CONSOLE_URL_XCOM_KEY, value=console_url("cn-shanghai", AGENT_ID, INSTANCE_ID)
    )
    assert all(call.kwargs.get("key") != TOKEN_XCOM_KEY for call in ctx["ti"].xcom_push.call_args_list)


def test_push_token_is_an_explicit_opt_in(generate: MagicMock) -> None:
    ctx = context()
    result = make_op(push_token=True).execute(ctx)
    ctx["ti"].xcom_push.assert_any_call(key=TOKEN_XCOM_KEY, value=TOKEN)
    assert TOKEN not in json.dumps(result)


def test_json_string_user_data_gets_the_correlation_id(generate: MagicMock) -> None:
    make_op(user_data='{"name": "Ann"}').execute(context())
    assert sent_user_data(generate) == {"name": "Ann", CORRELATION_KEY: CID}


@pytest.mark.parametrize("user_data", ["call Ann about the parcel", "[1, 2]", "{'name': 'Ann'}"])
def test_user_data_that_is_not_a_json_object_is_refused_before_any_request(
    generate: MagicMock, user_data: str
) -> None:
    store = FakeStateStore()
    with pytest.raises(IceValidationError, match="user_data"):
        make_op(user_data=user_data).execute(context(store=store))
    generate.assert_not_called()
    assert store.data == {}


def test_plain_string_user_data_is_sent_unchanged_with_correlation_off(generate: MagicMock) -> None:
    result = make_op(user_data="call Ann about the parcel", correlation=False).execute(context())
    assert sent_user_data(generate) == "call Ann about the parcel"
    assert result["correlation_id"] is None


def test_correlation_can_be_switched_off(generate: MagicMock) -> None:
    result = make_op(user_data={"name": "Ann"}, correlation=False).execute(context())
    assert sent_user_data(generate) == {"name": "Ann"}
    assert result["correlation_id"] is None


def test_mapped_indexes_get_distinct_correlation_ids(generate: MagicMock) -> None:
    ids = set()
    for index in range(3):
        make_op(user_data={"n": index}).execute(context(map_index=index))
        ids.add(sent_user_data(generate)[CORRELATION_KEY])  # type: ignore[index]
    assert len(ids) == 3


def test_a_cleared_task_places_a_fresh_call(generate: MagicMock) -> None:
    make_op().execute(context(max_tries=1))
    assert sent_user_data(generate) == {CORRELATION_KEY: make_correlation_id("dag", "run-1", "call", -1, 1)}


def test_bad_input_fails_before_any_request(generate: MagicMock) -> None:
    with pytest.raises(IceValidationError, match="expire"):
        make_op(expire=10**9).execute(context())
    with pytest.raises(IceValidationError, match="agent_id"):
        make_op(agent_id="  ").execute(context())
    with pytest.raises(IceValidationError, match="reserved"):
        make_op(user_data={CORRELATION_KEY: "x"}).execute(context())
    generate.assert_not_called()


def test_templated_expire_string_is_coerced(generate: MagicMock) -> None:
    make_op(expire="3600").execute(context())
    assert generate.call_args.kwargs["expire"] == 3600


@pytest.mark.parametrize("parameter", ["poll_interval", "timeout", "not_found_timeout"])
@pytest.mark.parametrize("value", [0, -1, float("inf")])
def test_constructor_rejects_bad_durations(parameter: str, value: float) -> None:
    with pytest.raises(ValueError, match=parameter):
        make_op(**{parameter: value})


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan"), timedelta(seconds=-5)])
def test_constructor_rejects_a_bad_lookup_tolerance(value: object) -> None:
    with pytest.raises(ValueError, match="lookup_tolerance"):
        make_op(lookup_tolerance=value)


def test_lookup_tolerance_defaults_to_two_minutes_and_takes_a_timedelta() -> None:
    assert make_op().lookup_tolerance == 120.0
    assert make_op(lookup_tolerance=timedelta(seconds=30)).lookup_tolerance == 30.0
    assert make_op(lookup_tolerance=0).lookup_tolerance == 0.0


def test_template_fields() -> None:
    assert set(IceGenerateAIAgentCallOperator.template_fields) == {
        "agent_id",
        "user_data",
        "user_id",
        "session_id",
        "expire",
        "agent_config",
        "chat_sync_config",
        "ice_conn_id",
    }
    assert IceGenerateAIAgentCallOperator.template_fields_renderers["user_data"] == "json"
    assert any(isinstance(link, IceAIAgentInstanceLink) for link in make_op().operator_extra_links)


# -- exactly once: retries and lost responses ---------------------------------------------------


@needs_task_state_store()
def test_retry_adopts_the_call_recorded_in_the_task_state_store(generate: MagicMock) -> None:
    first = make_op().execute(context(store=(store := FakeStateStore())))
    generate.reset_mock()
    with patch.object(IceHook, "list_ai_agent_instances") as list_:
        again = make_op().execute(context(try_number=2, store=store))
    generate.assert_not_called()
    list_.assert_not_called()
    assert again["instance_id"] == first["instance_id"]
    assert again["adopted"] is True


def test_retry_finds_the_earlier_call_by_correlation_id(generate: MagicMock) -> None:
    other = instance(correlation_id="af-someone-else", channel_id="other")
    ours = instance(correlation_id=CID, channel_id="ch-ours")
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([other, ours])) as list_:
        result = make_op(user_id="ann").execute(context(try_number=2))
    generate.assert_not_called()
    assert list_.call_args.args == (AGENT_ID,)
    start, end = list_.call_args.kwargs["start_time"], list_.call_args.kwargs["end_time"]
    assert start < end
    assert result["adopted"] is True
    assert result["channel_id"] == "ch-ours"
    assert result["correlation_id"] == CID
    assert result["user_id"] == "ann"
    assert AUTH_TOKEN not in json.dumps(result)


def test_retry_places_the_call_when_no_earlier_call_exists(generate: MagicMock) -> None:
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([])):
        result = make_op().execute(context(try_number=2, store=FakeStateStore()))
    generate.assert_called_once()
    assert result["adopted"] is False


def test_first_try_does_not_look_up(generate: MagicMock) -> None:
    with patch.object(IceHook, "list_ai_agent_instances") as list_:
        make_op().execute(context())
    list_.assert_not_called()


def test_lost_response_adopts_the_instance_instead_of_calling_again(generate: MagicMock) -> None:
    generate.side_effect = IceOutcomeUnknownError("GenerateAIAgentCall", TimeoutError("read timed out"))
    ours = instance(correlation_id=CID, instance_id="inst-from-list")
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([], [ours])):
        result = make_op().execute(context(store=(store := FakeStateStore())))
    generate.assert_called_once()
    assert result["adopted"] is True
    assert result["instance_id"] == "inst-from-list"
    assert store.data.get(STATE_KEY, {}).get("channel_id") == (CHANNEL_ID if AIRFLOW_V_3_3_PLUS else None)


def test_lost_response_with_no_instance_is_retryable_with_a_state_store(generate: MagicMock) -> None:
    generate.side_effect = IceOutcomeUnknownError("GenerateAIAgentCall", TimeoutError("read timed out"))
    store = FakeStateStore()
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([])) as list_,
        pytest.raises(IceAgentCallError, match="not placed") as raised,
    ):
        make_op(lookup_tolerance=0.2).execute(context(store=store))
    assert not isinstance(raised.value, AirflowFailException)
    assert list_.call_count >= 2  # listed again until lookup_tolerance had passed
    generate.assert_called_once()
    assert store.data[STATE_KEY]["pending"] is True


def test_lost_response_with_no_instance_and_no_state_store_fails_without_retry(generate: MagicMock) -> None:
    generate.side_effect = IceOutcomeUnknownError("GenerateAIAgentCall", TimeoutError("read timed out"))
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([])),
        pytest.raises(AirflowFailException, match=r"lookup_tolerance.*ICE \(IMS\) console"),
    ):
        make_op(lookup_tolerance=0.05).execute(context())
    generate.assert_called_once()


def test_lost_response_without_correlation_fails_without_retry(generate: MagicMock) -> None:
    generate.side_effect = IceOutcomeUnknownError("GenerateAIAgentCall", TimeoutError("read timed out"))
    with (
        patch.object(IceHook, "list_ai_agent_instances") as list_,
        pytest.raises(AirflowFailException, match=r"correlation=False.*ICE \(IMS\) console"),
    ):
        make_op(correlation=False).execute(context(store=FakeStateStore()))
    list_.assert_not_called()


# -- outbound calls -----------------------------------------------------------------------------


def make_outbound(**kwargs) -> IceStartAIAgentOutboundCallOperator:
    kwargs.setdefault("task_id", "call")
    kwargs.setdefault("agent_id", AGENT_ID)
    kwargs.setdefault("called_number", "+86 138-0013-8000")
    kwargs.setdefault("caller_number", "02112345678")
    return IceStartAIAgentOutboundCallOperator(**kwargs)


@pytest.mark.parametrize(
    ("field", "value"), [("called_number", "call me"), ("caller_number", "12"), ("called_number", 123)]
)
def test_outbound_validates_numbers_before_any_request(field: str, value: object) -> None:
    with (
        patch.object(IceHook, "start_ai_agent_outbound_call") as start,
        pytest.raises(IceValidationError, match=field),
    ):
        make_outbound(**{field: value}).execute(context())
    start.assert_not_called()


def test_outbound_places_one_call_with_correlation() -> None:
    response = StartAIAgentOutboundCallResponse.model_validate({"InstanceId": "ob-1", "RequestId": "r"})
    with patch.object(IceHook, "start_ai_agent_outbound_call", return_value=response) as start:
        result = make_outbound(user_data={"order": 7}, config={"Greeting": "Hi"}).execute(context())
    start.assert_called_once()
    assert start.call_args.kwargs["called_number"] == "+8613800138000"
    assert start.call_args.kwargs["config"] == {"Greeting": "Hi"}
    assert start.call_args.kwargs["user_data"] == {"order": 7, CORRELATION_KEY: CID}
    assert result["instance_id"] == "ob-1"
    assert result["channel_id"] is None
    assert result["correlation_id"] == CID


def test_outbound_retry_adopts_by_correlation_id() -> None:
    with (
        patch.object(IceHook, "start_ai_agent_outbound_call") as start,
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([instance(correlation_id=CID)])),
    ):
        result = make_outbound().execute(context(try_number=3))
    start.assert_not_called()
    assert result["adopted"] is True
