"""The emulator's quotas (account QPS per action, agent concurrent calls), their control plane and
tally, and the unsigned mode of the benchmark floors."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from alibabacloud_ice20201109 import models as ice
from Tea.exceptions import TeaException

from airflow_provider_ice.api.client import IceClient
from airflow_provider_ice.api.errors import (
    CONCURRENCY_LIMIT_CODE,
    IceAuthError,
    IceConcurrencyLimitError,
    IceThrottlingError,
)
from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.emulator.cli import build_parser, config_from_args
from airflow_provider_ice.emulator.config import EmulatorConfig, QuotaConfig
from tests.emulator.conftest import sdk_client, send, signed

LIST = "ListAIAgentInstance"
GENERATE = "GenerateAIAgentCall"
OUTBOUND = "StartAIAgentOutboundCall"


def _list(emulator: IceEmulator) -> httpx.Response:
    return send(emulator, signed(emulator, LIST, {"AIAgentId": "agent-q"}))


def _client(emulator: IceEmulator) -> IceClient:
    return IceClient(emulator.credentials, endpoint=emulator.url, max_retries=0)


def test_qps_quota_answers_the_gateways_throttling(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    # One request per 5 s: a bucket of one token (at least one request's worth).
    emulator = ice_emulator_factory(qps=0.2)
    assert _list(emulator).status_code == 200
    refused = _list(emulator)
    assert refused.status_code == 400
    body = refused.json()
    assert body["Code"] == "Throttling.User"
    assert body["Message"] == "Request was denied due to user flow control."
    assert {"RequestId", "HostId", "Recommend"} <= set(body)
    # The milliseconds until the bucket holds a token again: at most 5 s.
    assert 0 < int(refused.headers["x-acs-retry-after"]) <= 5000
    with pytest.raises(TeaException) as caught:
        sdk_client(emulator).list_aiagent_instance(ice.ListAIAgentInstanceRequest(aiagent_id="agent-q"))
    assert type(caught.value).__name__ == "ThrottlingException"
    state = emulator.state()
    assert state["quota_refusals"]["throttled"] == {LIST: 2}
    assert state["error_counts"]["Throttling.User"] == 2
    assert state["quotas"] == {"qps": 0.2, "action_qps": {}, "agent_concurrency": None}


def test_quota_is_per_action_with_overrides(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    emulator = ice_emulator_factory(qps=0.2, action_qps={GENERATE: None, "DescribeAIAgentInstance": 3})
    with _client(emulator) as client:
        for _ in range(5):
            client.generate_ai_agent_call("agent-q")  # exempt
        client.list_ai_agent_instances_page("agent-q")
        with pytest.raises(IceThrottlingError) as caught:
            client.list_ai_agent_instances_page("agent-q")
    assert caught.value.code == "Throttling.User"
    assert caught.value.retry_after is not None
    assert emulator.state()["quota_refusals"]["throttled"] == {LIST: 1}


def test_agent_concurrency_limit_refuses_and_creates_nothing(
    ice_emulator_factory: Callable[..., IceEmulator],
) -> None:
    emulator = ice_emulator_factory(agent_concurrency=2, call_duration=60)
    with _client(emulator) as client:
        first = client.generate_ai_agent_call("agent-full")
        client.start_ai_agent_outbound_call(
            "agent-full", called_number="+8613800000000", caller_number="10086"
        )
        with pytest.raises(IceConcurrencyLimitError) as caught:
            client.generate_ai_agent_call("agent-full")
        assert caught.value.code == CONCURRENCY_LIMIT_CODE
        assert caught.value.http_status == 400
        with pytest.raises(IceConcurrencyLimitError):
            client.start_ai_agent_outbound_call(
                "agent-full", called_number="+8613800000001", caller_number="10086"
            )
        client.generate_ai_agent_call("another-agent")  # the limit is per agent
        # Not retried by the client: one request per refused call.
        assert emulator.state()["request_counts"][GENERATE] == 3
        state = emulator.state("agent-full")
        assert len(state["instances"]) == 2
        assert state["active_calls"] == {"agent-full": 2, "another-agent": 1}
        assert state["quota_refusals"]["agent_concurrency"] == {GENERATE: 1, OUTBOUND: 1}
        # A call that ends frees its slot at once.
        client.stop_ai_agent_instance(first.instance_id)
        client.generate_ai_agent_call("agent-full")
    assert len(emulator.state("agent-full")["instances"]) == 3


def test_calls_ending_on_their_own_free_their_slots(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    clock = [1000.0]
    emulator = ice_emulator_factory(
        agent_concurrency=1, user_join_delay=1, call_duration=5, clock=lambda: clock[0]
    )
    with _client(emulator) as client:
        client.generate_ai_agent_call("agent-one")
        clock[0] += 5.9
        with pytest.raises(IceConcurrencyLimitError):
            client.generate_ai_agent_call("agent-one")
        clock[0] += 0.2  # joined at +1, talked 5 s: Finished at +6
        client.generate_ai_agent_call("agent-one")
    assert emulator.state()["active_calls"] == {"agent-one": 1}


def test_quotas_change_at_run_time_over_http(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    emulator = ice_emulator_factory(agent_concurrency=5)
    base = f"{emulator.url}/_emulator/quotas"
    assert httpx.get(base).json() == {"qps": None, "action_qps": {}, "agent_concurrency": 5}
    changed = httpx.post(base, json={"action_qps": {LIST: 1}})
    assert changed.json() == {"qps": None, "action_qps": {LIST: 1}, "agent_concurrency": 5}
    assert [_list(emulator).status_code for _ in range(2)] == [200, 400]
    replaced = httpx.post(f"{base}?replace=1", json={"qps": 50})
    assert replaced.json() == {"qps": 50, "action_qps": {}, "agent_concurrency": None}
    for bad in ({"qps": 0}, {"agent_concurrency": 0}, {"action_qps": {"Nope": 1}}, {"qpss": 1}):
        answer = httpx.post(base, json=bad)
        assert answer.status_code == 400, bad
        assert answer.json()["Code"] == "InvalidParameter"
    # reset: back to the configured quotas, tallies cleared.
    httpx.post(f"{emulator.url}/_emulator/reset")
    state = emulator.state()
    assert state["quotas"]["agent_concurrency"] == 5
    assert state["quota_refusals"] == {"throttled": {}, "agent_concurrency": {}}


def test_quotas_are_off_by_default(ice_emulator: IceEmulator) -> None:
    with _client(ice_emulator) as client:
        for _ in range(30):
            client.generate_ai_agent_call("agent-free")
            client.list_ai_agent_instances_page("agent-free")
    state = ice_emulator.state()
    assert state["quotas"] == {"qps": None, "action_qps": {}, "agent_concurrency": None}
    assert state["quota_refusals"] == {"throttled": {}, "agent_concurrency": {}}


def test_cli_and_python_config() -> None:
    args = build_parser().parse_args(
        ["--qps", "20", "--action-qps", f"{LIST}=5", "--agent-concurrency", "3", "--allow-unsigned"]
    )
    config = config_from_args(args)
    assert config.quotas == QuotaConfig(qps=20, action_qps={LIST: 5}, agent_concurrency=3)
    assert config.allow_unsigned is True
    assert config_from_args(build_parser().parse_args([])).quotas == QuotaConfig()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--action-qps", "Nope=3"])
    mapped = EmulatorConfig.from_mapping({"qps": 7, "agent_concurrency": 2, "throttle_rate": 0.1})
    assert (mapped.quotas.qps, mapped.quotas.agent_concurrency, mapped.faults.throttle_rate) == (7, 2, 0.1)
    with pytest.raises(ValueError, match="agent_concurrency"):
        QuotaConfig(agent_concurrency=-1)


def test_unsigned_requests_get_the_same_page_only_when_allowed(
    ice_emulator_factory: Callable[..., IceEmulator],
) -> None:
    params = {"Action": LIST, "Version": "2020-11-09", "AIAgentId": "agent-u", "PageSize": "10"}
    strict = ice_emulator_factory()
    strict.seed_history("agent-u", 3, 1, 2)
    assert httpx.post(strict.url, params=params).status_code >= 400
    lenient = ice_emulator_factory(allow_unsigned=True)
    lenient.seed_history("agent-u", 3, 1, 2)
    unsigned = httpx.post(lenient.url, params=params)
    assert unsigned.status_code == 200
    with IceClient(lenient.credentials, endpoint=lenient.url) as client:
        page = client.call_api(LIST, {"AIAgentId": "agent-u", "PageSize": 10})
    assert len(json.loads(unsigned.content)["Instances"]) == len(page["Instances"]) == 3
    # A signed request is still verified: a wrong secret is refused.
    bad = IceClient(
        type(lenient.credentials)(lenient.access_key_id, "wrong-secret"), endpoint=lenient.url, max_retries=0
    )
    with bad, pytest.raises(IceAuthError):
        bad.list_ai_agent_instances_page("agent-u")
