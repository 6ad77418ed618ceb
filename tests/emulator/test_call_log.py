"""CallLogUrl: OSS-style signed and expiring; the document parses with the shared schema."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from airflow_provider_ice.api.call_log import parse_call_log
from airflow_provider_ice.api.errors import error_from_response
from airflow_provider_ice.emulator import IceEmulator
from tests.emulator.conftest import FakeClock, send, signed

AGENT = "agent-logs"


@pytest.fixture
def emulator(ice_emulator_factory: Callable[..., IceEmulator], clock: FakeClock) -> IceEmulator:
    return ice_emulator_factory(
        clock=clock, user_join_delay=2, call_duration=60, calllog_url_ttl=300, seed=11
    )


def _api(emulator: IceEmulator, action: str, params: dict[str, Any]) -> dict[str, Any]:
    response = send(emulator, signed(emulator, action, params))
    assert response.status_code == 200, response.text
    return response.json()


def _finished_call(emulator: IceEmulator, clock: FakeClock, **params: Any) -> tuple[str, str]:
    instance_id = _api(emulator, "GenerateAIAgentCall", {"AIAgentId": AGENT, **params})["InstanceId"]
    clock.advance(3600)
    return instance_id, _url(emulator, instance_id)


def _url(emulator: IceEmulator, instance_id: str) -> str:
    return _api(emulator, "DescribeAIAgentInstance", {"InstanceId": instance_id})["Instance"]["CallLogUrl"]


def _oss_error(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/xml")
    return error_from_response(response.status_code, response.content, dict(response.headers)).code or ""


def test_url_is_oss_style_and_serves_a_parsable_call_log(emulator: IceEmulator, clock: FakeClock) -> None:
    instance_id, url = _finished_call(emulator, clock, SessionId="s-1", UserData='{"k": 1}')
    parts = urlsplit(url)
    assert parts.path == f"/_calllogs/{instance_id}.json"
    query = parse_qs(parts.query)
    assert set(query) == {"Expires", "OSSAccessKeyId", "Signature"}
    assert int(query["Expires"][0]) == int(clock.now + 300)
    response = httpx.get(url)
    assert response.status_code == 200
    log = parse_call_log(response.content)
    assert (log.instance_id, log.agent_id, log.session_id, log.user_data) == (
        instance_id,
        AGENT,
        "s-1",
        '{"k": 1}',
    )
    assert log.user_joined is True
    assert log.end_reason == "UserHangup"
    assert log.duration_ms == 62_000
    assert log.start_time is not None
    assert log.end_time is not None
    assert (log.end_time - log.start_time).total_seconds() == 62
    roles = [turn.role for turn in log.turns]
    assert roles[0] == "agent"
    assert "user" in roles
    assert all(0 <= (t.begin_ms or 0) <= (t.end_ms or 0) <= 62_000 for t in log.turns)
    assert all(a.end_ms <= b.begin_ms for a, b in zip(log.turns, log.turns[1:], strict=False))  # type: ignore[operator]
    assert log.metrics.first_response_latency_ms is not None
    assert 450 <= log.metrics.first_response_latency_ms <= 1200
    assert emulator.state()["calllog_downloads"] == {instance_id: 1}
    assert emulator.state()["instances"][0]["CallLogDownloads"] == 1


def test_call_log_is_deterministic(emulator: IceEmulator, clock: FakeClock) -> None:
    instance_id, url = _finished_call(emulator, clock)
    first = httpx.get(url).content
    assert httpx.get(_url(emulator, instance_id)).content == first
    assert emulator.state()["calllog_downloads"] == {instance_id: 2}


def test_no_show_call_log_has_no_user_turns(emulator: IceEmulator, clock: FakeClock) -> None:
    _, url = _finished_call(emulator, clock, UserData=json.dumps({"EmulatorScenario": {"NoShow": True}}))
    log = parse_call_log(httpx.get(url).content)
    assert log.user_joined is False
    assert log.end_reason == "UserOnlineTimeout"
    assert [t for t in log.turns if t.role == "user"] == []
    assert log.metrics.average_response_latency_ms is None


def test_greeting_comes_from_agent_config(emulator: IceEmulator, clock: FakeClock) -> None:
    _, url = _finished_call(emulator, clock, AgentConfig={"Greeting": "Welcome to Acme."})
    assert parse_call_log(httpx.get(url).content).turns[0].text == "Welcome to Acme."


def test_expired_url_gets_oss_403(emulator: IceEmulator, clock: FakeClock) -> None:
    _, url = _finished_call(emulator, clock)
    clock.advance(300)
    assert httpx.get(url).status_code == 200  # valid up to and including Expires
    clock.advance(1)
    response = httpx.get(url)
    assert response.status_code == 403
    assert _oss_error(response) == "AccessDenied"
    assert "<Message>Request has expired.</Message>" in response.text
    assert emulator.state()["calllog_denied"] == 1


@pytest.mark.parametrize(
    "tamper",
    [
        lambda url: url.replace("Expires=", "Expires=9"),
        lambda url: url.replace("Signature=", "Signature=A"),
        lambda url: url.replace("/_calllogs/", "/_calllogs/f"),
        lambda url: url.split("&Signature=")[0],
    ],
    ids=["expires", "signature", "instance", "no-signature"],
)
def test_tampered_url_gets_oss_403(
    emulator: IceEmulator, clock: FakeClock, tamper: Callable[[str], str]
) -> None:
    _, url = _finished_call(emulator, clock)
    response = httpx.get(tamper(url))
    assert response.status_code == 403
    assert _oss_error(response) in ("SignatureDoesNotMatch", "AccessDenied")
    assert emulator.state()["calllog_downloads"] == {}


def test_unknown_object_after_reset_is_404(emulator: IceEmulator, clock: FakeClock) -> None:
    _, url = _finished_call(emulator, clock)
    emulator.reset()
    response = httpx.get(url)
    assert response.status_code == 404
    assert _oss_error(response) == "NoSuchKey"


def _instance_state(emulator: IceEmulator, instance_id: str) -> dict[str, Any]:
    return next(i for i in emulator.state()["instances"] if i["InstanceId"] == instance_id)


def test_expire_first_urls_stay_expired_until_one_download_is_refused(
    emulator: IceEmulator, clock: FakeClock
) -> None:
    emulator.set_faults(calllog_expire_first=True)
    instance_id, first = _finished_call(emulator, clock)
    second = _url(emulator, instance_id)  # a poll listed it again before anyone downloaded
    other_id, other_url = _finished_call(emulator, clock)
    assert _instance_state(emulator, instance_id)["CallLogExpiredRefusals"] == 0
    # Both URLs listed before any download are expired, however long the TTL.
    for url in (second, first):
        query = parse_qs(urlsplit(url).query)
        assert int(query["Expires"][0]) < clock.now
    response = httpx.get(second)
    assert (response.status_code, _oss_error(response)) == (403, "AccessDenied")
    assert _instance_state(emulator, instance_id)["CallLogExpiredRefusals"] == 1
    # After one refused download, the next listed URL works; the earlier ones stay expired.
    assert httpx.get(_url(emulator, instance_id)).status_code == 200
    assert httpx.get(first).status_code == 403
    state = _instance_state(emulator, instance_id)
    assert (state["CallLogExpiredRefusals"], state["CallLogDownloads"]) == (2, 1)
    # Per instance: the other call's URLs are still expired until its own refusal.
    assert httpx.get(other_url).status_code == 403
    assert httpx.get(_url(emulator, other_id)).status_code == 200
    assert emulator.state()["faults_injected"]["calllog_expired"] == {"CallLogDownload": 3}


def test_expired_refusals_are_forgotten_on_reset(emulator: IceEmulator, clock: FakeClock) -> None:
    emulator.set_faults(calllog_expire_first=True)
    instance_id, url = _finished_call(emulator, clock)
    assert httpx.get(url).status_code == 403
    emulator.reset()
    emulator.set_faults(calllog_expire_first=True)
    instance_id, url = _finished_call(emulator, clock)
    assert httpx.get(url).status_code == 403  # expired again: the refusal record was cleared
    assert _instance_state(emulator, instance_id)["CallLogExpiredRefusals"] == 1


def test_without_expire_first_urls_are_valid_and_no_refusal_is_counted(
    emulator: IceEmulator, clock: FakeClock
) -> None:
    instance_id, url = _finished_call(emulator, clock)
    assert httpx.get(url).status_code == 200
    assert _instance_state(emulator, instance_id)["CallLogExpiredRefusals"] == 0
    assert emulator.state()["faults_injected_total"]["calllog_expired"] == 0


def test_download_faults_503_and_truncation(emulator: IceEmulator, clock: FakeClock) -> None:
    _, url = _finished_call(emulator, clock)
    emulator.set_faults(calllog_error_rate=1.0)
    response = httpx.get(url)
    assert (response.status_code, _oss_error(response)) == (503, "ServiceUnavailable")
    emulator.set_faults(calllog_error_rate=0.0, calllog_truncate_rate=1.0)
    truncated = httpx.get(url)
    assert truncated.status_code == 200
    with pytest.raises(ValueError, match="not complete JSON"):
        parse_call_log(truncated.content)
    emulator.set_faults(calllog_truncate_rate=0.0)
    assert parse_call_log(httpx.get(url).content).instance_id
