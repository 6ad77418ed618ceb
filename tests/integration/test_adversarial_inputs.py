"""Every bad argument of every public entry point fails before any request, naming the parameter.

One table over the hook, both call operators, the sensor, the call-log fetch and the analytics
operator. Each case runs against a live emulator (real signed HTTP would follow if validation let
anything through) and asserts that the emulator received nothing: no API call, no download.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.hooks.ice import IceHook
from airflow_provider_ice.operators.agent_call import (
    IceGenerateAIAgentCallOperator,
    IceStartAIAgentOutboundCallOperator,
)
from airflow_provider_ice.operators.analytics import IceSessionAnalyticsOperator
from airflow_provider_ice.operators.call_log import IceFetchCallLogOperator
from airflow_provider_ice.sensors.agent_instance import IceAIAgentInstanceSensor

pytestmark = pytest.mark.integration

AGENT = "adversarial-agent"
NAIVE = datetime(2026, 1, 1, 12, 0)
AWARE = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
UNSERIALISABLE = {"customer": object()}


def context() -> dict[str, Any]:
    """A first try's context: enough for the operators to get to their first request."""
    ti = SimpleNamespace(
        dag_id="adversarial", run_id="run-1", task_id="task", map_index=-1, try_number=1, xcom_push=print
    )
    return {"ti": ti, "dag_run": None, "task_state_store": None}


def generate(**kwargs: Any) -> Callable[[], Any]:
    kwargs.setdefault("agent_id", AGENT)
    return lambda: IceGenerateAIAgentCallOperator(task_id="call", **kwargs).execute(context())  # type: ignore[arg-type]


def outbound(**kwargs: Any) -> Callable[[], Any]:
    kwargs = {"agent_id": AGENT, "called_number": "+8613800000000", "caller_number": "05718000000", **kwargs}
    return lambda: IceStartAIAgentOutboundCallOperator(task_id="call", **kwargs).execute(context())  # type: ignore[arg-type]


def sensor(**kwargs: Any) -> Callable[[], Any]:
    def run() -> Any:
        task = IceAIAgentInstanceSensor(
            task_id="wait", poke_interval=0.01, timeout=5, deferrable=False, **kwargs
        )
        return task.execute(context())  # type: ignore[arg-type]

    return run


def fetch(tmp: Path, **kwargs: Any) -> Callable[[], Any]:
    kwargs.setdefault("agent_id", AGENT)
    kwargs.setdefault("correlation_id", "af-adversarial")
    kwargs.setdefault("destination", str(tmp) + "/")
    return lambda: IceFetchCallLogOperator(task_id="fetch", **kwargs).execute(context())  # type: ignore[arg-type]


def analytics(tmp: Path, **kwargs: Any) -> Callable[[], Any]:
    kwargs = {"agent_ids": AGENT, "start_time": AWARE, "end_time": "2026-01-02T12:00:00Z", **kwargs}
    return lambda: IceSessionAnalyticsOperator(task_id="sessions", destination=str(tmp), **kwargs).execute(
        context()  # type: ignore[arg-type]
    )


def hook(method: str, *args: Any, **kwargs: Any) -> Callable[[], Any]:
    def run() -> Any:
        result = getattr(IceHook(), method)(*args, **kwargs)
        return list(result) if method == "list_ai_agent_instances" else result

    return run


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


def _nothing_reached(emulator: IceEmulator) -> None:
    state = emulator.state()
    assert state["request_counts"] == {}, f"a request reached the emulator: {state['request_counts']}"
    assert state["calllog_downloads"] == {}
    assert state["calllog_denied"] == 0


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
    _nothing_reached(ice_connection)
    assert not any(tmp_path.iterdir()), "nothing may be written for a refused input"


# -- the connection ------------------------------------------------------------------------------


def _conn(emulator: IceEmulator, **changes: Any) -> str:
    conn = json.loads(emulator.airflow_conn_json())
    extra = {**conn["extra"], **changes.pop("extra", {})}
    conn.update(changes)
    conn["extra"] = {k: v for k, v in extra.items() if v is not None}
    return json.dumps({k: v for k, v in conn.items() if v is not None})


CONNECTIONS: dict[str, tuple[dict[str, Any], str, tuple[str, ...]]] = {
    "endpoint-ftp-scheme": (
        {"extra": {"endpoint": "ftp://ice.cn-shanghai.aliyuncs.com"}},
        "endpoint",
        ("https://",),
    ),
    "endpoint-ws-scheme": ({"extra": {"endpoint": "ws://127.0.0.1:1"}}, "endpoint", ("https://",)),
    "endpoint-with-path": (
        {"extra": {"endpoint": "https://ice.example.com/api"}},
        "endpoint",
        ("scheme://host",),
    ),
    "endpoint-bad-port": ({"extra": {"endpoint": "http://127.0.0.1:99999"}}, "endpoint", ("port",)),
    "region-not-a-region": ({"extra": {"endpoint": None, "region": "Shanghai!"}}, "region", ("cn-shanghai",)),
    "no-credentials": ({"login": None, "password": None}, "credentials", ("AccessKey",)),
    "only-access-key-id": ({"password": None}, "credentials", ("half", "secret")),
    "only-access-key-secret": ({"login": None}, "credentials", ("half", "AccessKey ID")),
    "blank-secret": ({"password": "   "}, "credentials", ("half",)),
    "timeout-not-a-number": ({"extra": {"timeout": "soon"}}, "timeout", ("seconds",)),
    "timeout-zero": ({"extra": {"timeout": 0}}, "timeout", ("between 0 and 3600",)),
    "max-retries-99": ({"extra": {"max_retries": 99}}, "max_retries", ("0 and 20",)),
    "ca-bundle-missing": (
        {"extra": {"endpoint": "https://127.0.0.1:1", "verify": "/nonexistent/ca.pem"}},
        "verify",
        ("CA bundle",),
    ),
}


@pytest.mark.parametrize(
    ("changes", "parameter", "allowed"), list(CONNECTIONS.values()), ids=list(CONNECTIONS)
)
@pytest.mark.parametrize("entry", ["hook", "generate-operator", "sensor"])
def test_bad_connection_fails_before_any_request(
    ice_emulator: IceEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    changes: dict[str, Any],
    parameter: str,
    allowed: tuple[str, ...],
    entry: str,
) -> None:
    for name in (
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", _conn(ice_emulator, **dict(changes)))
    call = {
        "hook": hook("describe_ai_agent_instance", "i-1"),
        "generate-operator": generate(),
        "sensor": sensor(agent_id=AGENT, channel_id="c"),
    }[entry]
    if entry == "sensor":
        # The sensor counts polling errors; a configuration error must fail at once, not be retried.
        with pytest.raises(AirflowFailException) as caught:
            call()
        message = str(caught.value)
    else:
        with pytest.raises(IceValidationError) as validation:
            call()
        assert validation.value.parameter == parameter
        # A task fails without retries (the hook, outside a task, raises the plain error).
        assert isinstance(validation.value, AirflowFailException) is (entry != "hook")
        message = str(validation.value)
    assert parameter in message
    for words in allowed:
        assert words in message, f"{words!r} missing from {message!r}"
    _nothing_reached(ice_emulator)


def test_bare_host_means_https_and_plain_http_call_log_urls_are_refused(
    ice_emulator: IceEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Plain http only for an endpoint written ``http://``: a bare host is HTTPS, and a connection
    that is not explicitly http refuses an ``http://`` CallLogUrl before downloading anything."""
    import io

    from airflow_provider_ice.api.download import download_call_log
    from airflow_provider_ice.api.errors import CallLogUrlError

    host = ice_emulator.url.removeprefix("http://")
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", _conn(ice_emulator, extra={"endpoint": host}))
    ice_hook = IceHook()
    assert ice_hook.endpoint == f"https://{host}"
    assert ice_hook.get_conn().endpoint == f"https://{host}"
    assert ice_hook.allows_plain_http is False
    plain_url = f"{ice_emulator.url}/_calllogs/i-1.json?Expires=9999999999&OSSAccessKeyId=x&Signature=y"
    with pytest.raises(CallLogUrlError, match="scheme 'http' is not allowed; allowed: https"):
        download_call_log(plain_url, io.BytesIO(), allow_http=ice_hook.allows_plain_http)
    _nothing_reached(ice_emulator)
