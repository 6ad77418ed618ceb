"""Every bad argument of every public entry point fails before any request, naming the parameter.

One table over the hook, both call operators, the sensor, the call-log fetch and the analytics
operator. Each case runs against a live emulator (real signed HTTP would follow if validation let
anything through) and asserts that the emulator received nothing: no API call, no download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.emulator import IceEmulator
from tests.integration.adversarial import (
    AGENT,
    AWARE,
    NAIVE,
    UNSERIALISABLE,
    analytics,
    fetch,
    generate,
    hook,
    nothing_reached,
    outbound,
    sensor,
)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Case:
    """One bad input: what to call, the parameter the error must name, words of the allowed range."""

    call: Callable[[Path], Callable[[], Any]]
    parameter: str
    allowed: tuple[str, ...] = ()


CASES: dict[str, Case] = {
    # -- hook (and through it, both clients' validation) -------------------------------------
    "hook-empty-agent-id": Case(lambda t: hook("generate_ai_agent_call", ""), "AIAgentId", ("non-empty",)),
    "hook-blank-agent-id": Case(lambda t: hook("generate_ai_agent_call", "   "), "AIAgentId", ("non-empty",)),
    "hook-expire-negative": Case(
        lambda t: hook("generate_ai_agent_call", AGENT, expire=-1), "Expire", ("0", "604800")
    ),
    "hook-expire-over-a-week": Case(
        lambda t: hook("generate_ai_agent_call", AGENT, expire=604801), "Expire", ("0", "604800")
    ),
    "hook-expire-not-a-number": Case(
        lambda t: hook("generate_ai_agent_call", AGENT, expire="abc"), "Expire", ("integer", "604800")
    ),
    "hook-user-id-65-chars": Case(
        lambda t: hook("generate_ai_agent_call", AGENT, user_id="u" * 65), "UserId", ("at most 64",)
    ),
    "hook-user-data-unserialisable": Case(
        lambda t: hook("generate_ai_agent_call", AGENT, user_data=UNSERIALISABLE), "UserData", ("JSON",)
    ),
    "hook-user-data-wrong-type": Case(
        lambda t: hook("generate_ai_agent_call", AGENT, user_data=12), "UserData", ("string", "JSON")
    ),
    "hook-agent-config-not-json": Case(
        lambda t: hook("generate_ai_agent_call", AGENT, agent_config="{oops"), "AgentConfig", ("JSON object",)
    ),
    "hook-called-number-letters": Case(
        lambda t: hook(
            "start_ai_agent_outbound_call", AGENT, called_number="call-me", caller_number="0571800"
        ),
        "CalledNumber",
        ("digits", "3 to 20"),
    ),
    "hook-caller-number-too-short": Case(
        lambda t: hook("start_ai_agent_outbound_call", AGENT, called_number="0571800", caller_number="12"),
        "CallerNumber",
        ("digits", "3 to 20"),
    ),
    "hook-called-number-not-a-string": Case(
        lambda t: hook(
            "start_ai_agent_outbound_call", AGENT, called_number=8613800000000, caller_number="0571"
        ),
        "CalledNumber",
        ("phone number",),
    ),
    "hook-list-naive-start": Case(
        lambda t: hook("list_ai_agent_instances", AGENT, start_time=NAIVE), "StartTime", ("time zone",)
    ),
    "hook-list-naive-end": Case(
        lambda t: hook("list_ai_agent_instances", AGENT, start_time=AWARE, end_time=NAIVE),
        "EndTime",
        ("time zone",),
    ),
    "hook-list-start-equals-end": Case(
        lambda t: hook("list_ai_agent_instances", AGENT, start_time=AWARE, end_time=AWARE),
        "StartTime",
        ("before EndTime",),
    ),
    "hook-list-start-after-end": Case(
        lambda t: hook("list_ai_agent_instances", AGENT, start_time="2026-02-01T00:00:00Z", end_time=AWARE),
        "StartTime",
        ("before EndTime",),
    ),
    "hook-list-garbage-time": Case(
        lambda t: hook("list_ai_agent_instances", AGENT, start_time="yesterday"), "StartTime", ("ISO-8601",)
    ),
    "hook-list-page-size-0": Case(
        lambda t: hook("list_ai_agent_instances", AGENT, page_size=0), "PageSize", ("1", "100")
    ),
    "hook-list-page-size-101": Case(
        lambda t: hook("list_ai_agent_instances", AGENT, page_size=101), "PageSize", ("1", "100")
    ),
    "hook-list-empty-agent-id": Case(
        lambda t: hook("list_ai_agent_instances", ""), "AIAgentId", ("non-empty",)
    ),
    "hook-describe-empty-id": Case(
        lambda t: hook("describe_ai_agent_instance", ""), "InstanceId", ("non-empty",)
    ),
    "hook-stop-empty-id": Case(lambda t: hook("stop_ai_agent_instance", ""), "InstanceId", ("non-empty",)),
    "hook-call-api-bad-action": Case(
        lambda t: hook("call_api", "drop table; --", {}), "action", ("ICE action name",)
    ),
    "hook-call-api-params-not-a-dict": Case(
        lambda t: hook("call_api", "DescribeAIAgentInstance", ["InstanceId"]), "params", ("dict",)
    ),
    # -- the generate operator ----------------------------------------------------------------
    "generate-empty-agent-id": Case(lambda t: generate(agent_id=""), "agent_id", ("non-empty",)),
    "generate-expire-negative": Case(lambda t: generate(expire=-1), "expire", ("0", "604800")),
    "generate-expire-over-a-week": Case(lambda t: generate(expire=604801), "expire", ("0", "604800")),
    "generate-expire-abc": Case(lambda t: generate(expire="abc"), "expire", ("integer", "604800")),
    "generate-user-id-65-chars": Case(lambda t: generate(user_id="x" * 65), "user_id", ("at most 64",)),
    "generate-user-data-unserialisable": Case(
        lambda t: generate(user_data=UNSERIALISABLE), "UserData", ("JSON-serialisable",)
    ),
    "generate-user-data-reserved-key": Case(
        lambda t: generate(user_data={"AirflowCorrelationId": "forged"}), "user_data", ("reserved",)
    ),
    "generate-agent-config-list": Case(lambda t: generate(agent_config=[1, 2]), "AgentConfig", ("dict",)),
    "generate-poll-interval-zero": Case(lambda t: generate(poll_interval=0), "poll_interval", ("positive",)),
    "generate-poll-interval-none": Case(
        lambda t: generate(poll_interval=None), "poll_interval", ("positive", "seconds")
    ),
    "generate-max-errors-string": Case(
        lambda t: generate(max_consecutive_errors="3"), "max_consecutive_errors", ("integer >= 0",)
    ),
    "generate-timeout-negative": Case(lambda t: generate(timeout=-5), "timeout", ("positive",)),
    "generate-max-errors-negative": Case(
        lambda t: generate(max_consecutive_errors=-1), "max_consecutive_errors", (">= 0",)
    ),
    # -- the outbound operator ----------------------------------------------------------------
    "outbound-empty-agent-id": Case(lambda t: outbound(agent_id=""), "agent_id", ("non-empty",)),
    "outbound-called-number-words": Case(
        lambda t: outbound(called_number="not a number"), "called_number", ("digits", "3 to 20")
    ),
    "outbound-called-number-two-plus": Case(
        lambda t: outbound(called_number="++8613800000000"), "called_number", ("digits",)
    ),
    "outbound-caller-number-21-digits": Case(
        lambda t: outbound(caller_number="1" * 21), "caller_number", ("3 to 20",)
    ),
    "outbound-caller-number-none": Case(lambda t: outbound(caller_number=None), "caller_number", ("phone",)),
    # -- the sensor ---------------------------------------------------------------------------
    "sensor-empty-agent-id": Case(lambda t: sensor(agent_id="", channel_id="c"), "agent_id", ()),
    "sensor-agent-without-identifier": Case(
        lambda t: sensor(agent_id=AGENT), "channel_id", ("correlation_id",)
    ),
    "sensor-call-not-an-operator-output": Case(lambda t: sensor(call="oops"), "call", ("dict",)),
    "sensor-call-without-agent": Case(lambda t: sensor(call={"channel_id": "c"}), "call", ("dict",)),
    "sensor-naive-created-after": Case(
        lambda t: sensor(agent_id=AGENT, channel_id="c", created_after=NAIVE), "created_after", ("time zone",)
    ),
    "sensor-garbage-created-after": Case(
        lambda t: sensor(agent_id=AGENT, channel_id="c", created_after="last week"),
        "created_after",
        ("ISO-8601",),
    ),
    "sensor-max-errors-negative": Case(
        lambda t: sensor(agent_id=AGENT, channel_id="c", max_consecutive_errors=-1),
        "max_consecutive_errors",
        (">= 0",),
    ),
    # -- the call-log fetch -------------------------------------------------------------------
    "fetch-empty-agent-id": Case(lambda t: fetch(t, agent_id=""), "agent_id", ("required",)),
    "fetch-no-identifier": Case(
        lambda t: fetch(t, correlation_id=None), "channel_id", ("correlation_id", "instance_id")
    ),
    "fetch-call-not-json": Case(lambda t: fetch(t, agent_id=None, call="{not json"), "call", ("dict",)),
    "fetch-max-bytes-zero": Case(lambda t: fetch(t, max_bytes=0), "max_bytes", (">= 1",)),
    "fetch-max-bytes-string": Case(lambda t: fetch(t, max_bytes="10"), "max_bytes", ("integer >= 1",)),
    "fetch-max-bytes-nan": Case(lambda t: fetch(t, max_bytes=float("nan")), "max_bytes", ("integer",)),
    "fetch-download-timeout-negative": Case(
        lambda t: fetch(t, download_timeout=-1), "download_timeout", ("positive", "3600")
    ),
    "fetch-negative-retries": Case(
        lambda t: fetch(t, download_retries=-1), "download_retries", ("between 0 and 20",)
    ),
    "fetch-naive-created-after": Case(
        lambda t: fetch(t, created_after=NAIVE), "created_after", ("time zone",)
    ),
    # -- the session analytics ----------------------------------------------------------------
    "analytics-no-agent": Case(lambda t: analytics(t, agent_ids=""), "agent_ids", ("at least one",)),
    "analytics-agents-wrong-type": Case(lambda t: analytics(t, agent_ids=42), "agent_ids", ("list",)),
    "analytics-start-equals-end": Case(
        lambda t: analytics(t, end_time=AWARE), "end_time", ("after start_time",)
    ),
    "analytics-start-after-end": Case(
        lambda t: analytics(t, start_time="2026-03-01T00:00:00Z"), "end_time", ("after start_time",)
    ),
    "analytics-garbage-time": Case(lambda t: analytics(t, start_time="soon"), "start_time", ("ISO-8601",)),
    "analytics-page-size-0": Case(lambda t: analytics(t, page_size=0), "page_size", ("1", "100")),
    "analytics-page-size-101": Case(lambda t: analytics(t, page_size=101), "page_size", ("1", "100")),
    "analytics-concurrency-string": Case(
        lambda t: analytics(t, concurrency="8"), "concurrency", ("1", "256")
    ),
    "analytics-max-bytes-nan": Case(lambda t: analytics(t, max_bytes=float("nan")), "max_bytes", (">= 1",)),
    "analytics-download-timeout-negative": Case(
        lambda t: analytics(t, download_timeout=-1), "download_timeout", ("positive",)
    ),
    "analytics-naive-start": Case(lambda t: analytics(t, start_time=NAIVE), "start_time", ("time zone",)),
}


def _params() -> list[Any]:
    return [pytest.param(case, id=name) for name, case in CASES.items()]


@pytest.mark.parametrize("case", _params())
def test_bad_input_fails_before_any_request_naming_the_parameter(
    case: Case, ice_connection: IceEmulator, tmp_path: Path
) -> None:
    with pytest.raises(IceValidationError) as caught:
        case.call(tmp_path)()
    error = caught.value
    message = str(error)
    assert error.parameter == case.parameter, message
    assert case.parameter in message, message
    for words in case.allowed:
        assert words in message, f"{words!r} missing from {message!r}"
    nothing_reached(ice_connection)
    assert not any(tmp_path.iterdir()), "nothing may be written for a refused input"
