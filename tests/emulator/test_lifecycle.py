"""Created → Executing → Finished, computed from timestamps under an injected clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_ice.emulator import IceEmulator
from tests.emulator.conftest import FakeClock, send, signed

AGENT = "agent-life"


@pytest.fixture
def emulator(ice_emulator_factory: Callable[..., IceEmulator], clock: FakeClock) -> IceEmulator:
    return ice_emulator_factory(
        clock=clock, user_join_delay=5, call_duration=30, user_online_timeout=60, max_idle_time=600
    )


def _ok(emulator: IceEmulator, action: str, params: dict[str, Any]) -> dict[str, Any]:
    response = send(emulator, signed(emulator, action, params))
    assert response.status_code == 200, response.text
    return response.json()


def _generate(emulator: IceEmulator, **params: Any) -> str:
    return _ok(emulator, "GenerateAIAgentCall", {"AIAgentId": AGENT, **params})["InstanceId"]


def _describe(emulator: IceEmulator, instance_id: str) -> dict[str, Any]:
    return _ok(emulator, "DescribeAIAgentInstance", {"InstanceId": instance_id})["Instance"]


def test_normal_call_goes_through_every_status(emulator: IceEmulator, clock: FakeClock) -> None:
    instance_id = _generate(emulator)
    created = _describe(emulator, instance_id)
    assert created["Status"] == "Created"
    assert created["GmtCreate"] == "2026-01-01T10:00:00.000+00:00"
    assert created["GmtModified"] == created["GmtCreate"]
    assert "CallLogUrl" not in created
    clock.advance(4.9)
    assert _describe(emulator, instance_id)["Status"] == "Created"
    clock.advance(0.1)
    executing = _describe(emulator, instance_id)
    assert executing["Status"] == "Executing"
    assert executing["GmtModified"] == "2026-01-01T10:00:05.000+00:00"
    clock.advance(29.9)
    assert _describe(emulator, instance_id)["Status"] == "Executing"
    clock.advance(0.1)
    finished = _describe(emulator, instance_id)
    assert finished["Status"] == "Finished"
    assert finished["GmtModified"] == "2026-01-01T10:00:35.000+00:00"
    assert finished["CallLogUrl"].startswith(emulator.url)
    [state] = emulator.state()["instances"]
    assert (state["Status"], state["EndReason"], state["UserJoined"]) == ("Finished", "UserHangup", True)


def test_no_show_finishes_after_the_calls_user_online_timeout(
    emulator: IceEmulator, clock: FakeClock
) -> None:
    user_data = json.dumps({"EmulatorScenario": {"NoShow": True}})
    instance_id = _generate(emulator, UserData=user_data, AgentConfig={"UserOnlineTimeout": 20})
    clock.advance(19)
    assert _describe(emulator, instance_id)["Status"] == "Created"  # the user never joined
    clock.advance(1)
    assert _describe(emulator, instance_id)["Status"] == "Finished"
    [state] = emulator.state()["instances"]
    assert (state["EndReason"], state["UserJoined"]) == ("UserOnlineTimeout", False)


def test_no_show_uses_the_default_timeout_without_agent_config(
    emulator: IceEmulator, clock: FakeClock
) -> None:
    instance_id = _generate(emulator, UserData=json.dumps({"EmulatorScenario": {"NoShow": True}}))
    clock.advance(59)
    assert _describe(emulator, instance_id)["Status"] == "Created"
    clock.advance(1)
    assert _describe(emulator, instance_id)["Status"] == "Finished"


def test_no_show_rate_is_seeded(ice_emulator_factory: Callable[..., IceEmulator], clock: FakeClock) -> None:
    def no_shows(seed: int) -> list[bool]:
        emulator = ice_emulator_factory(clock=FakeClock(clock.now), no_show_rate=0.5, seed=seed)
        for _ in range(20):
            _generate(emulator)
        emulator.config.clock.advance(10_000)  # type: ignore[attr-defined]
        return [not s["UserJoined"] for s in emulator.state()["instances"]]

    first = no_shows(3)
    assert first == no_shows(3)
    assert 3 <= sum(first) <= 17


def test_idle_user_finishes_after_max_idle_time(emulator: IceEmulator, clock: FakeClock) -> None:
    user_data = json.dumps({"EmulatorScenario": {"Idle": True}})
    instance_id = _generate(emulator, UserData=user_data, AgentConfig={"MaxIdleTime": 100})
    clock.advance(5)
    assert _describe(emulator, instance_id)["Status"] == "Executing"
    clock.advance(99.9)  # far beyond call_duration: an idle user does not hang up
    assert _describe(emulator, instance_id)["Status"] == "Executing"
    clock.advance(0.1)
    assert _describe(emulator, instance_id)["Status"] == "Finished"
    assert emulator.state()["instances"][0]["EndReason"] == "MaxIdleTime"


def test_scenario_can_script_timings(emulator: IceEmulator, clock: FakeClock) -> None:
    user_data = json.dumps({"EmulatorScenario": {"UserJoinDelay": 1, "CallDuration": 2}, "other": 1})
    instance_id = _generate(emulator, UserData=user_data)
    clock.advance(1)
    assert _describe(emulator, instance_id)["Status"] == "Executing"
    clock.advance(2)
    assert _describe(emulator, instance_id)["Status"] == "Finished"


def test_stop_finishes_at_once_and_is_idempotent(emulator: IceEmulator, clock: FakeClock) -> None:
    instance_id = _generate(emulator)
    clock.advance(10)
    assert _describe(emulator, instance_id)["Status"] == "Executing"
    first = _ok(emulator, "StopAIAgentInstance", {"InstanceId": instance_id})
    assert set(first) == {"RequestId"}
    stopped = _describe(emulator, instance_id)
    assert stopped["Status"] == "Finished"
    assert stopped["GmtModified"] == "2026-01-01T10:00:10.000+00:00"
    clock.advance(5)
    _ok(emulator, "StopAIAgentInstance", {"InstanceId": instance_id})
    assert _describe(emulator, instance_id)["GmtModified"] == "2026-01-01T10:00:10.000+00:00"
    assert emulator.state()["instances"][0]["EndReason"] == "Stopped"


def test_stop_after_natural_end_keeps_the_end_reason(emulator: IceEmulator, clock: FakeClock) -> None:
    instance_id = _generate(emulator)
    clock.advance(100)
    _ok(emulator, "StopAIAgentInstance", {"InstanceId": instance_id})
    assert emulator.state()["instances"][0]["EndReason"] == "UserHangup"


def test_stop_and_describe_unknown_instance(emulator: IceEmulator) -> None:
    for action in ("StopAIAgentInstance", "DescribeAIAgentInstance"):
        response = send(emulator, signed(emulator, action, {"InstanceId": "0" * 32}))
        assert (response.status_code, response.json()["Code"]) == (404, "InvalidInstanceId.NotFound")
        response = send(emulator, signed(emulator, action, {}))
        assert (response.status_code, response.json()["Code"]) == (400, "MissingParameter")


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"Expire": -1}, "Expire"),
        ({"Expire": "soon"}, "Expire"),
        ({"UserId": "u" * 65}, "UserId"),
        ({"AgentConfig": "{not json"}, "AgentConfig"),
        ({"AgentConfig": "[1, 2]"}, "AgentConfig"),
        ({"TemplateConfig": "3"}, "TemplateConfig"),
        ({"ChatSyncConfig": "null"}, "ChatSyncConfig"),
    ],
)
def test_generate_validates_like_the_service(
    emulator: IceEmulator, params: dict[str, Any], parameter: str
) -> None:
    response = send(emulator, signed(emulator, "GenerateAIAgentCall", {"AIAgentId": AGENT, **params}))
    assert response.status_code == 400
    body = response.json()
    assert body["Code"] == "InvalidParameter"
    assert parameter in body["Message"]
    assert emulator.state()["instances"] == []


def test_generate_accepts_the_boundaries(emulator: IceEmulator) -> None:
    _generate(emulator, Expire=0, UserId="u" * 64)
    body = _ok(emulator, "GenerateAIAgentCall", {"AIAgentId": AGENT, "Expire": 604800, "UserId": "me"})
    assert body["UserId"] == "me"
    assert set(body) == {"RequestId", "InstanceId", "ChannelId", "AIAgentUserId", "UserId", "Token"}


def test_avatar_agents_get_an_avatar_user(emulator: IceEmulator) -> None:
    body = _ok(
        emulator,
        "GenerateAIAgentCall",
        {"AIAgentId": AGENT, "AgentConfig": {"AvatarConfig": {"AvatarId": "a"}}},
    )
    assert body["AvatarUserId"].startswith("avatar-")


def test_outbound_requires_both_numbers(emulator: IceEmulator) -> None:
    response = send(
        emulator, signed(emulator, "StartAIAgentOutboundCall", {"AIAgentId": AGENT, "CalledNumber": "138"})
    )
    assert response.json()["Code"] == "MissingParameter"
    assert "CallerNumber" in response.json()["Message"]
    response = send(
        emulator,
        signed(
            emulator,
            "StartAIAgentOutboundCall",
            {"AIAgentId": AGENT, "CalledNumber": "call me", "CallerNumber": "0571"},
        ),
    )
    assert response.json()["Code"] == "InvalidParameter"


def test_outbound_call_info_follows_the_lifecycle(emulator: IceEmulator, clock: FakeClock) -> None:
    params = {"AIAgentId": AGENT, "CalledNumber": "13800000000", "CallerNumber": "057100000000"}
    instance_id = _ok(emulator, "StartAIAgentOutboundCall", params)["InstanceId"]
    ringing = _describe(emulator, instance_id)["CallInfo"]
    assert ringing == {"Status": "1", "CallerNumber": "057100000000", "CalleeNumber": "13800000000"}
    clock.advance(35)
    done = _describe(emulator, instance_id)["CallInfo"]
    assert done["Status"] == "4"
    assert done["CallStartTime"] == "2026-01-01T10:00:05.000+00:00"
    assert done["CallEndTime"] == "2026-01-01T10:00:35.000+00:00"
    assert (done["CallDuration"], done["HangupRole"]) == (30, 1)


def test_reset_forgets_everything(emulator: IceEmulator) -> None:
    _generate(emulator)
    emulator.reset()
    state = emulator.state()
    assert state["instances"] == []
    assert state["request_counts"] == {}
    reset = httpx.post(f"{emulator.url}/_emulator/reset")
    assert reset.json() == {"ok": True}
