"""The official SDK (unchanged) works against the emulator for every action."""

from __future__ import annotations

import json
import time

import pytest
from alibabacloud_ice20201109 import models as ice
from Tea.exceptions import TeaException

from airflow_provider_ice.emulator import IceEmulator
from tests.emulator.conftest import sdk_client

AGENT = "39f8e0bc005e4f309379701645f4abcd"


def test_generate_describe_list_stop_round_trip(ice_emulator: IceEmulator) -> None:
    client = sdk_client(ice_emulator)
    user_data = json.dumps({"AirflowCorrelationId": "af-1", "note": "spaces and +plus & ~tilde*"})
    generated = client.generate_aiagent_call(
        ice.GenerateAIAgentCallRequest(
            aiagent_id=AGENT,
            user_data=user_data,
            session_id="session-1",
            agent_config=ice.AIAgentConfig(greeting="Hello there!", user_online_timeout=30),
        )
    ).body
    assert len(generated.instance_id) == 32
    assert generated.channel_id
    assert generated.aiagent_user_id
    assert generated.token
    assert generated.user_id.startswith("user-")

    described = client.describe_aiagent_instance(
        ice.DescribeAIAgentInstanceRequest(instance_id=generated.instance_id)
    ).body.instance
    assert described.status == "Created"
    assert described.user_data == user_data
    assert described.session_id == "session-1"
    assert described.runtime_config.channel_id == generated.channel_id
    assert described.runtime_config.agent_user_id == generated.aiagent_user_id
    assert described.agent_config.greeting == "Hello there!"
    assert described.call_log_url is None

    listed = client.list_aiagent_instance(ice.ListAIAgentInstanceRequest(aiagent_id=AGENT)).body.instances
    assert [item.user_data for item in listed] == [user_data]
    assert listed[0].runtime_config.channel_id == generated.channel_id

    stop = client.stop_aiagent_instance(ice.StopAIAgentInstanceRequest(instance_id=generated.instance_id))
    assert stop.body.request_id
    finished = client.describe_aiagent_instance(
        ice.DescribeAIAgentInstanceRequest(instance_id=generated.instance_id)
    ).body.instance
    assert finished.status == "Finished"
    assert finished.call_log_url.startswith(f"{ice_emulator.url}/_calllogs/{generated.instance_id}.json?")
    counts = ice_emulator.state()["request_counts"]
    assert counts == {
        "GenerateAIAgentCall": 1,
        "DescribeAIAgentInstance": 2,
        "ListAIAgentInstance": 1,
        "StopAIAgentInstance": 1,
    }


def test_outbound_call_and_call_info(ice_emulator: IceEmulator) -> None:
    client = sdk_client(ice_emulator)
    started = client.start_aiagent_outbound_call(
        ice.StartAIAgentOutboundCallRequest(
            aiagent_id=AGENT, called_number="13800000000", caller_number="057188880000", user_data="x"
        )
    ).body
    time.sleep(1.4)  # join 0.2 s + call 1 s (the fixture's short timings)
    info = client.describe_aiagent_instance(
        ice.DescribeAIAgentInstanceRequest(instance_id=started.instance_id)
    ).body.instance
    assert info.status == "Finished"
    assert info.call_info.callee_number == "13800000000"
    assert info.call_info.caller_number == "057188880000"
    assert info.call_info.call_duration == 1
    assert info.call_info.hangup_role == 1


def test_start_ai_agent_instance_keeps_runtime_config(ice_emulator: IceEmulator) -> None:
    client = sdk_client(ice_emulator)
    runtime = ice.AIAgentRuntimeConfig(channel_id="my-channel", agent_user_id="my-agent", auth_token="tok")
    started = client.start_aiagent_instance(
        ice.StartAIAgentInstanceRequest(aiagent_id=AGENT, runtime_config=runtime)
    ).body
    described = client.describe_aiagent_instance(
        ice.DescribeAIAgentInstanceRequest(instance_id=started.instance_id)
    ).body.instance
    assert described.runtime_config.channel_id == "my-channel"
    assert described.runtime_config.agent_user_id == "my-agent"


@pytest.mark.parametrize(
    ("request_model", "code", "status"),
    [
        (ice.DescribeAIAgentInstanceRequest(instance_id="missing"), "InvalidInstanceId.NotFound", 404),
        (ice.ListAIAgentInstanceRequest(aiagent_id=AGENT, page_size=101), "InvalidParameter", 400),
        (ice.ListAIAgentInstanceRequest(aiagent_id=AGENT, page_number=0), "InvalidParameter", 400),
        (ice.GenerateAIAgentCallRequest(aiagent_id=AGENT, expire=604801), "InvalidParameter", 400),
        (ice.GenerateAIAgentCallRequest(aiagent_id=AGENT, user_id="u" * 65), "InvalidParameter", 400),
        (ice.StartAIAgentOutboundCallRequest(aiagent_id=AGENT, called_number="1"), "MissingParameter", 400),
    ],
)
def test_service_errors_reach_the_sdk(
    ice_emulator: IceEmulator, request_model: object, code: str, status: int
) -> None:
    client = sdk_client(ice_emulator)
    method = {
        ice.DescribeAIAgentInstanceRequest: client.describe_aiagent_instance,
        ice.ListAIAgentInstanceRequest: client.list_aiagent_instance,
        ice.GenerateAIAgentCallRequest: client.generate_aiagent_call,
        ice.StartAIAgentOutboundCallRequest: client.start_aiagent_outbound_call,
    }[type(request_model)]
    with pytest.raises(TeaException) as caught:
        method(request_model)
    assert caught.value.code == code
    assert caught.value.data["statusCode"] == status
    assert caught.value.data["Recommend"].startswith("https://api.aliyun.com/troubleshoot?q=" + code)


def test_wrong_secret_is_rejected_for_the_sdk(ice_emulator: IceEmulator) -> None:
    client = sdk_client(ice_emulator, access_key_secret="not-the-secret")
    with pytest.raises(TeaException) as caught:
        client.list_aiagent_instance(ice.ListAIAgentInstanceRequest(aiagent_id=AGENT))
    assert caught.value.code == "SignatureDoesNotMatch"


def test_sts_token_is_checked(ice_emulator_factory) -> None:  # type: ignore[no-untyped-def]
    emulator = ice_emulator_factory(security_token="sts-token-1")
    good = sdk_client(emulator, security_token="sts-token-1")
    assert good.list_aiagent_instance(ice.ListAIAgentInstanceRequest(aiagent_id=AGENT)).body.instances == []
    bad = sdk_client(emulator, security_token="sts-token-2")
    with pytest.raises(TeaException) as caught:
        bad.list_aiagent_instance(ice.ListAIAgentInstanceRequest(aiagent_id=AGENT))
    assert caught.value.code == "InvalidSecurityToken.MismatchWithAccessKey"
    missing = sdk_client(emulator)
    with pytest.raises(TeaException) as caught:
        missing.list_aiagent_instance(ice.ListAIAgentInstanceRequest(aiagent_id=AGENT))
    assert caught.value.code == "InvalidSecurityToken.Missing"
