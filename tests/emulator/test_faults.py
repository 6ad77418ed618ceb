"""Fault injection: throttling, 5xx, dropped connections, latency, slow create; seeded and targeted."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from alibabacloud_ice20201109 import models as ice
from Tea.exceptions import TeaException

from airflow_provider_ice.emulator import FaultConfig, IceEmulator
from tests.emulator.conftest import sdk_client, send, signed

LIST = "ListAIAgentInstance"
GENERATE = "GenerateAIAgentCall"
PARAMS = {"AIAgentId": "agent-f"}


def _call(emulator: IceEmulator, action: str = LIST, timeout: float = 5.0) -> httpx.Response:
    return send(emulator, signed(emulator, action, PARAMS), timeout=timeout)


def test_throttling_answers_like_the_gateway(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    emulator = ice_emulator_factory(throttle_rate=1.0, retry_after_ms=1500)
    response = _call(emulator)
    assert response.status_code == 400
    assert response.json()["Code"] == "Throttling.User"
    assert response.headers["x-acs-retry-after"] == "1500"
    # The SDK turns it into its ThrottlingException with retry_after from the header.
    with pytest.raises(TeaException) as caught:
        sdk_client(emulator).list_aiagent_instance(ice.ListAIAgentInstanceRequest(aiagent_id="agent-f"))
    assert type(caught.value).__name__ == "ThrottlingException"
    assert caught.value.code == "Throttling.User"
    assert caught.value.retry_after == 1500


def test_throttling_can_use_429(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    emulator = ice_emulator_factory(throttle_rate=1.0, throttle_status=429)
    assert _call(emulator).status_code == 429


def test_throttled_create_creates_nothing(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    emulator = ice_emulator_factory(throttle_rate=1.0)
    assert _call(emulator, GENERATE).status_code == 400
    assert emulator.state()["instances"] == []


def test_server_errors_are_500_or_503(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    emulator = ice_emulator_factory(error_rate=1.0, seed=5)
    answers = {(r.status_code, r.json()["Code"]) for r in (_call(emulator, GENERATE) for _ in range(20))}
    assert answers == {(500, "InternalError"), (503, "ServiceUnavailable")}
    assert emulator.state()["instances"] == []
    assert (
        emulator.state()["error_counts"]["InternalError"]
        + emulator.state()["error_counts"]["ServiceUnavailable"]
        == 20
    )


def test_dropped_connection_after_execution(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    emulator = ice_emulator_factory(drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        _call(emulator, GENERATE)
    # The response was lost on the way back: the instance exists.
    assert len(emulator.state()["instances"]) == 1


def test_dropped_connection_before_execution(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    emulator = ice_emulator_factory(drop_rate=1.0, drop_after_execute=False)
    with pytest.raises(httpx.RemoteProtocolError):
        _call(emulator, GENERATE)
    assert emulator.state()["instances"] == []


def test_slow_create_creates_then_answers_too_late(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    emulator = ice_emulator_factory(slow_create_rate=1.0, slow_create_delay=2.0)
    with pytest.raises(httpx.ReadTimeout):
        _call(emulator, GENERATE, timeout=0.3)
    assert len(emulator.state()["instances"]) == 1
    # Reads are never "slow creates".
    assert _call(emulator, LIST, timeout=1.0).status_code == 200


def test_latency_delays_api_calls_and_downloads(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    emulator = ice_emulator_factory(latency=0.3)
    started = time.perf_counter()
    assert _call(emulator).status_code == 200
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    httpx.get(f"{emulator.url}/_calllogs/unknown.json?Expires=1&Signature=x")
    assert time.perf_counter() - started >= 0.3


def test_faults_are_deterministic_under_a_seed(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    def outcomes(seed: int) -> list[int]:
        emulator = ice_emulator_factory(seed=seed, throttle_rate=0.3, error_rate=0.2)
        return [_call(emulator).status_code for _ in range(30)]

    first = outcomes(42)
    assert first == outcomes(42)
    assert first != outcomes(43)
    assert {200, 400} <= set(first)


def test_faults_can_target_actions(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    emulator = ice_emulator_factory(throttle_rate=1.0, actions=["GenerateAIAgentCall"])
    assert _call(emulator, LIST).status_code == 200
    assert _call(emulator, GENERATE).json()["Code"] == "Throttling.User"


def test_faults_change_at_run_time_over_http(ice_emulator: IceEmulator) -> None:
    assert _call(ice_emulator).status_code == 200
    answer = httpx.post(f"{ice_emulator.url}/_emulator/faults", json={"error_rate": 1.0})
    assert answer.json()["error_rate"] == 1.0
    assert _call(ice_emulator).status_code in (500, 503)
    # Control endpoints are never faulted.
    assert httpx.get(f"{ice_emulator.url}/_emulator/state").status_code == 200
    assert httpx.get(f"{ice_emulator.url}/_emulator/health").json() == {"ok": True}
    cleared = httpx.post(f"{ice_emulator.url}/_emulator/faults?replace=1", json={})
    assert cleared.json()["error_rate"] == 0.0
    assert _call(ice_emulator).status_code == 200
    bad = httpx.post(f"{ice_emulator.url}/_emulator/faults", json={"error_rate": 2})
    assert bad.status_code == 400
    assert "error_rate" in bad.json()["Message"]


def test_set_faults_python_api(ice_emulator: IceEmulator) -> None:
    assert ice_emulator.set_faults(throttle_rate=1.0).throttle_rate == 1.0
    assert _call(ice_emulator).status_code == 400
    assert ice_emulator.set_faults(FaultConfig()).throttle_rate == 0.0
    with pytest.raises(TypeError, match="unknown fault setting"):
        ice_emulator.set_faults(throttle=1.0)
    with pytest.raises(ValueError, match="actions"):
        ice_emulator.set_faults(actions=["NoSuchAction"])
