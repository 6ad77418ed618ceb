"""The exactly-once rule set of the call operators, decision by decision, with the IceHook mocked.

Retry or Clear is told from ``ti.max_tries`` as Airflow sets it (unchanged by an automatic retry,
raised by a Clear of this task instance); the DAG-level proof with real Airflow state is in
tests/integration/test_call_clears.py.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from unittest.mock import MagicMock, patch

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_ice.api.correlation import CORRELATION_KEY, make_correlation_id
from airflow_provider_ice.api.errors import IceThrottlingError
from airflow_provider_ice.api.validation import iso
from airflow_provider_ice.hooks.ice import IceHook
from airflow_provider_ice.operators._call_store import STATE_KEY, clear_generation
from tests.unit.agent_fakes import (
    AGENT_ID,
    INSTANCE_ID,
    FakeStateStore,
    context,
    generate_response,
    instance,
    listing,
    logged,
    make_op,
)

CID = make_correlation_id("dag", "run-1", "call", -1)


@pytest.fixture
def generate():
    with patch.object(IceHook, "generate_ai_agent_call", return_value=generate_response("inst-new")) as mock:
        yield mock


def placed(*, agent_id: str = AGENT_ID, max_tries: int | None = 0, correlation_id: str = CID) -> dict:
    return {
        "agent_id": agent_id,
        "instance_id": INSTANCE_ID,
        "channel_id": "ch-earlier",
        "correlation_id": correlation_id,
        "created_at": iso(datetime.now(timezone.utc) - timedelta(minutes=3)),
        "max_tries": max_tries,
    }


def pending(*, sent_ago: float, correlation_id: str | None = CID, max_tries: int = 0) -> dict:
    return {
        "agent_id": AGENT_ID,
        "instance_id": None,
        "correlation_id": correlation_id,
        "created_at": iso(datetime.now(timezone.utc) - timedelta(seconds=sent_ago)),
        "pending": True,
        "max_tries": max_tries,
    }


def describe(status: str):
    return patch.object(IceHook, "describe_ai_agent_instance", return_value=instance(status))


# -- the generation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_tries", "retries", "expected"),
    [(0, 0, 0), (3, 3, 0), (4, 3, 1), (5, 0, 5), (None, 2, 0), (-1, 0, 0)],
)
def test_clear_generation_counts_the_tries_before_the_latest_clear(
    max_tries: int | None, retries: int, expected: int
) -> None:
    ctx = context()
    ctx["ti"].max_tries = max_tries
    assert clear_generation(ctx, retries) == expected


def test_the_correlation_id_ignores_clears_elsewhere_in_the_run(generate: MagicMock) -> None:
    ctx = context(max_tries=2)
    ctx["dag_run"].clear_number = 7  # siblings were cleared seven times
    make_op(retries=2).execute(ctx)
    assert generate.call_args.kwargs["user_data"] == {CORRELATION_KEY: CID}


# -- automatic retries -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["Created", "Executing", "Finished"])
def test_a_retry_adopts_the_stored_call_whatever_its_status(generate: MagicMock, status: str) -> None:
    store = FakeStateStore({STATE_KEY: placed(max_tries=2)})
    with describe(status) as describe_, patch.object(IceHook, "list_ai_agent_instances") as list_:
        result = make_op(retries=2).execute(context(try_number=2, max_tries=2, store=store))
    generate.assert_not_called()
    describe_.assert_not_called()
    list_.assert_not_called()
    assert (result["adopted"], result["instance_id"], result["correlation_id"]) == (True, INSTANCE_ID, CID)
    assert not {"max_tries", "pending"} & set(result)  # the store's bookkeeping stays out of XCom


def test_a_retry_does_not_adopt_a_record_of_another_agent(
    generate: MagicMock, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    store = FakeStateStore({STATE_KEY: placed(agent_id="agent-of-the-first-try")})
    with (
        caplog.at_level(logging.WARNING),
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([])),
    ):
        result = make_op().execute(context(try_number=2, store=store))
    generate.assert_called_once()
    assert generate.call_args.args[0] == AGENT_ID
    assert result["adopted"] is False
    assert result["instance_id"] == "inst-new"
    assert store.data[STATE_KEY]["agent_id"] == AGENT_ID
    assert "not adopted" in logged(caplog, capsys)


def test_a_retry_looks_for_a_pending_attempt_until_the_tolerance_has_passed(generate: MagicMock) -> None:
    """The listing shows the instance only on the third look: still adopted, never called again."""
    store = FakeStateStore({STATE_KEY: pending(sent_ago=1)})
    ours = instance("Executing", correlation_id=CID)
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([], [], [ours])) as list_:
        result = make_op(lookup_tolerance=30).execute(context(try_number=2, store=store))
    generate.assert_not_called()
    assert list_.call_count == 3
    assert result["adopted"] is True
    assert result["correlation_id"] == CID
    assert store.data[STATE_KEY]["channel_id"] == ours.channel_id
    assert "pending" not in store.data[STATE_KEY]


def test_a_retry_places_the_call_once_a_pending_attempt_is_past_the_tolerance(generate: MagicMock) -> None:
    store = FakeStateStore({STATE_KEY: pending(sent_ago=300)})
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([])) as list_:
        result = make_op(lookup_tolerance=120).execute(context(try_number=2, store=store))
    assert list_.call_count == 1  # one last look
    generate.assert_called_once()
    assert result["adopted"] is False
    assert result["correlation_id"] == CID
    assert store.data[STATE_KEY]["instance_id"] == "inst-new"


def test_a_pending_attempt_without_correlation_id_fails_without_retry(generate: MagicMock) -> None:
    store = FakeStateStore({STATE_KEY: pending(sent_ago=300, correlation_id=None)})
    with pytest.raises(AirflowFailException, match=r"unknown.*ICE \(IMS\) console"):
        make_op(correlation=False).execute(context(try_number=2, store=store))
    generate.assert_not_called()


def test_a_retry_without_a_state_store_keeps_looking_for_the_tolerance(generate: MagicMock) -> None:
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([])) as list_:
        make_op(lookup_tolerance=0.2).execute(context(try_number=2))
    assert list_.call_count >= 2
    generate.assert_called_once()


def test_the_write_ahead_record_is_stored_before_the_request(generate: MagicMock) -> None:
    store = FakeStateStore()
    seen: list[dict] = []
    generate.side_effect = lambda *a, **k: (seen.append(dict(store.data[STATE_KEY])), generate_response())[1]
    make_op().execute(context(max_tries=0, store=store))
    [ahead] = seen
    assert ahead["pending"] is True
    assert ahead["correlation_id"] == CID
    assert ahead["instance_id"] is None
    assert ahead["max_tries"] == 0
    assert store.data[STATE_KEY]["instance_id"] == INSTANCE_ID
    assert "pending" not in store.data[STATE_KEY]


# -- a user's Clear of this task instance ------------------------------------------------------------


@pytest.mark.parametrize("status", ["Created", "Executing"])
def test_a_clear_adopts_an_earlier_call_that_is_still_running(generate: MagicMock, status: str) -> None:
    store = FakeStateStore({STATE_KEY: placed(max_tries=0)})
    with describe(status) as describe_:
        result = make_op().execute(context(try_number=2, max_tries=1, store=store))
    describe_.assert_called_once_with(INSTANCE_ID)
    generate.assert_not_called()
    assert (result["adopted"], result["instance_id"], result["correlation_id"]) == (True, INSTANCE_ID, CID)
    assert store.data[STATE_KEY]["max_tries"] == 1  # a retry after this Clear adopts it again


def test_a_clear_places_a_new_call_after_the_earlier_one_finished(generate: MagicMock) -> None:
    store = FakeStateStore({STATE_KEY: placed(max_tries=0)})
    with describe("Finished"):
        result = make_op().execute(context(try_number=2, max_tries=1, store=store))
    generate.assert_called_once()
    new_id = make_correlation_id("dag", "run-1", "call", -1, 1)
    assert generate.call_args.kwargs["user_data"] == {CORRELATION_KEY: new_id}
    assert (result["adopted"], result["instance_id"], result["correlation_id"]) == (False, "inst-new", new_id)
    assert store.data[STATE_KEY]["correlation_id"] == new_id


def test_a_clear_looks_up_an_adopted_call_without_instance_id_in_the_listing(generate: MagicMock) -> None:
    record = {**placed(max_tries=0), "instance_id": None}
    store = FakeStateStore({STATE_KEY: record})
    with patch.object(
        IceHook, "list_ai_agent_instances", side_effect=listing([instance(correlation_id=CID)])
    ):
        result = make_op().execute(context(try_number=2, max_tries=1, store=store))
    generate.assert_not_called()
    assert result["adopted"] is True


def test_a_clear_after_a_pending_attempt_whose_call_finished_places_a_new_call(generate: MagicMock) -> None:
    store = FakeStateStore({STATE_KEY: pending(sent_ago=1)})
    finished = instance("Finished", correlation_id=CID)
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=listing([finished])):
        result = make_op().execute(context(try_number=2, max_tries=1, store=store))
    generate.assert_called_once()
    assert result["correlation_id"] == make_correlation_id("dag", "run-1", "call", -1, 1)


def test_a_transient_listing_error_while_looking_means_look_again(generate: MagicMock) -> None:
    store = FakeStateStore({STATE_KEY: pending(sent_ago=1)})
    throttled = IceThrottlingError("slow down", code="Throttling.User", action="ListAIAgentInstance")
    ours = instance(correlation_id=CID)
    with patch.object(IceHook, "list_ai_agent_instances", side_effect=listing(throttled, [ours])):
        result = make_op(lookup_tolerance=30).execute(context(try_number=2, store=store))
    generate.assert_not_called()
    assert result["adopted"] is True


def test_a_failed_last_look_never_passes_for_not_placed(generate: MagicMock) -> None:
    store = FakeStateStore({STATE_KEY: pending(sent_ago=300)})
    throttled = IceThrottlingError("slow down", code="Throttling.User", action="ListAIAgentInstance")
    with (
        patch.object(IceHook, "list_ai_agent_instances", side_effect=listing(throttled)),
        pytest.raises(IceThrottlingError),
    ):
        make_op().execute(context(try_number=2, store=store))
    generate.assert_not_called()
    assert store.data[STATE_KEY]["pending"] is True
