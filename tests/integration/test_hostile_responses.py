"""Hostile answers from the ICE endpoint and the call-log storage, through the public surface.

A tiny stdlib HTTP server plays a broken or malicious service: non-JSON and HTML bodies, missing or
wrongly typed fields, unknown statuses, an instance that never shows up, a 50 MB or truncated or
non-UTF-8 call log, redirects to another host. Every case must end in a typed, readable error (or
the documented fallback), never a raw KeyError/TypeError/UnicodeDecodeError, and never leave a file
under its final name (nor a temporary one).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, PokeReturnValue

from airflow_provider_ice.api import waiting as waiting_module
from airflow_provider_ice.api.errors import (
    IceApiError,
    IceOutcomeUnknownError,
    IceResponseError,
    IceServerError,
)
from airflow_provider_ice.exceptions import (
    IceAgentInstanceNotFoundError,
)
from airflow_provider_ice.hooks.ice import IceHook
from airflow_provider_ice.operators.agent_call import IceGenerateAIAgentCallOperator
from airflow_provider_ice.sensors import agent_instance as sensor_module
from airflow_provider_ice.sensors.agent_instance import IceAIAgentInstanceSensor
from tests.integration.hostile import (
    AGENT,
    CORRELATION,
    Answer,
    HostileServer,
    context,
    expect_typed,
    instance_entry,
    json_answer,
    listed,
)

pytestmark = pytest.mark.integration


API_CASES: dict[str, tuple[str, Answer, type[BaseException], str]] = {
    "200-not-json": (
        "DescribeAIAgentInstance",
        Answer(200, b"OK, done!"),
        IceResponseError,
        "not a JSON object",
    ),
    "200-json-array": ("DescribeAIAgentInstance", json_answer([1, 2]), IceResponseError, "not a JSON object"),
    "200-empty-body": ("DescribeAIAgentInstance", Answer(200, b""), IceResponseError, "not a JSON object"),
    "200-invalid-utf8": (
        "DescribeAIAgentInstance",
        Answer(200, b'{"Instance": {"Status": "\xff\xfe"}}', {"Content-Type": "application/json"}),
        IceResponseError,
        "not a JSON object",
    ),
    "502-html-proxy-page": (
        "DescribeAIAgentInstance",
        Answer(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", {"Content-Type": "text/html"}),
        IceServerError,
        "HTTP 502",
    ),
    "500-invalid-utf8-error-body": (
        "DescribeAIAgentInstance",
        Answer(500, b'{"Code": "\xff\xfe", "Message": 1}'),
        IceServerError,
        "500",
    ),
    "400-error-fields-wrong-types": (
        "DescribeAIAgentInstance",
        json_answer({"Code": ["x"], "Message": {"a": 1}, "RequestId": 7}, 400),
        IceApiError,
        "400",
    ),
    "instance-wrong-type": (
        "DescribeAIAgentInstance",
        json_answer({"Instance": "Finished"}),
        IceResponseError,
        "unexpected response shape",
    ),
    "runtime-config-wrong-type": (
        "DescribeAIAgentInstance",
        json_answer({"Instance": {"Status": "Finished", "RuntimeConfig": ["a"]}}),
        IceResponseError,
        "RuntimeConfig",
    ),
    "instances-not-a-list": (
        "ListAIAgentInstance",
        json_answer({"Instances": "abc"}),
        IceResponseError,
        "Instances",
    ),
    "instances-items-wrong-type": (
        "ListAIAgentInstance",
        json_answer({"Instances": [42]}),
        IceResponseError,
        "Instances",
    ),
    "call-log-url-wrong-type": (
        "ListAIAgentInstance",
        json_answer({"Instances": [{"Status": "Finished", "CallLogUrl": 12}]}),
        IceResponseError,
        "CallLogUrl",
    ),
    "302-redirect-elsewhere": (
        "DescribeAIAgentInstance",
        Answer(302, b"", {"Location": "{elsewhere}/"}),
        IceApiError,
        "302",
    ),
}


@pytest.mark.parametrize(
    ("action", "answer", "error", "words"), list(API_CASES.values()), ids=list(API_CASES)
)
def test_hostile_api_answers_become_typed_errors(
    hostile: HostileServer, elsewhere: HostileServer, action: str, answer: Answer, error: type, words: str
) -> None:
    answer.headers = {k: v.replace("{elsewhere}", elsewhere.url) for k, v in answer.headers.items()}
    hostile.actions[action] = answer
    hook = IceHook()
    if action == "ListAIAgentInstance":
        call: Callable[[], Any] = lambda: list(hook.list_ai_agent_instances(AGENT))  # noqa: E731
    else:
        call = lambda: hook.describe_ai_agent_instance("i-1")  # noqa: E731
    caught = expect_typed(call, error)
    assert words in str(caught)
    assert "hostile-secret" not in str(caught)
    assert elsewhere.requests == [], "a redirect of a signed API request was followed"


def test_unreadable_create_answer_is_outcome_unknown_then_looked_up_not_repeated(
    hostile: HostileServer,
) -> None:
    """GenerateAIAgentCall answered 200 without InstanceId: the documented fallback is "outcome unknown",
    a lookup by correlation id for ``lookup_tolerance``, and (with no task state store to tell a retry
    when it was sent) a failure without retry; never a second GenerateAIAgentCall."""
    hostile.actions["GenerateAIAgentCall"] = json_answer({"RequestId": "r", "ChannelId": 5})
    hostile.actions["ListAIAgentInstance"] = json_answer({"Instances": []})
    with pytest.raises(IceOutcomeUnknownError):
        IceHook().generate_ai_agent_call(AGENT)
    operator = IceGenerateAIAgentCallOperator(
        task_id="call", agent_id=AGENT, poll_interval=0.01, lookup_tolerance=0.2
    )
    failure = expect_typed(lambda: operator.execute(context()), AirflowFailException)  # type: ignore[arg-type]
    assert "correlation id" in str(failure)
    assert "lookup_tolerance" in str(failure)
    assert "ICE (IMS) console" in str(failure)
    assert [r for r in hostile.requests if r[1] == "GenerateAIAgentCall"] == [
        ("POST", "GenerateAIAgentCall")
    ] * 2


def sensor(**kwargs: Any) -> IceAIAgentInstanceSensor:
    return IceAIAgentInstanceSensor(
        task_id="wait",
        agent_id=AGENT,
        correlation_id=CORRELATION,
        created_after=datetime.now(timezone.utc) - timedelta(minutes=1),
        poke_interval=0.01,
        **kwargs,
    )


def test_unknown_status_keeps_waiting_with_one_warning(
    hostile: HostileServer, caplog: pytest.LogCaptureFixture
) -> None:
    hostile.actions["ListAIAgentInstance"] = listed(instance_entry("Hibernating"))
    waiting = sensor()
    with caplog.at_level(logging.WARNING):
        assert waiting.poke(context()) is False  # type: ignore[arg-type]
        assert waiting.poke(context()) is False  # type: ignore[arg-type]
    warnings = [r for r in caplog.records if "Hibernating" in r.getMessage()]
    assert len(warnings) == 1
    hostile.actions["ListAIAgentInstance"] = listed(instance_entry("Finished"))
    done = waiting.poke(context())  # type: ignore[arg-type]
    assert isinstance(done, PokeReturnValue)
    assert done.is_done
    assert done.xcom_value["status"] == "Finished"  # type: ignore[index]


def test_a_status_of_the_wrong_type_is_kept_as_an_unknown_status(hostile: HostileServer) -> None:
    """Documented fallback: Status keeps any value; a non-string one is an unknown, non-terminal status."""
    hostile.actions["DescribeAIAgentInstance"] = json_answer({"Instance": {"Status": {"nested": True}}})
    instance = IceHook().describe_ai_agent_instance("i-1")
    assert instance.status is not None
    assert not instance.status.is_known
    assert not instance.status.is_terminal


class _Clock:
    """The ``time`` module, except that ``time()`` only moves when the test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_empty_instances_forever_ends_with_not_found_naming_agent_and_window(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sensor's clock (when waiting began) and the waiting rules' clock (when a poll answered)
    # are the test's: a first poke slower than not_found_timeout on a loaded machine must not
    # already be past the deadline.
    clock = _Clock()
    monkeypatch.setattr(sensor_module, "time", clock)
    monkeypatch.setattr(waiting_module, "time", clock)
    hostile.actions["ListAIAgentInstance"] = listed()
    waiting = sensor(not_found_timeout=0.3)
    started = clock.now
    assert waiting.poke(context()) is False  # type: ignore[arg-type]
    clock.now = started + 0.29
    assert waiting.poke(context()) is False  # type: ignore[arg-type]
    clock.now = started + 0.3
    error = expect_typed(lambda: waiting.poke(context()), IceAgentInstanceNotFoundError)  # type: ignore[arg-type]
    message = str(error)
    assert AGENT in message
    assert CORRELATION in message
    assert "created between" in message
    assert "not_found_timeout" in message


# -- call-log downloads --------------------------------------------------------------------------
