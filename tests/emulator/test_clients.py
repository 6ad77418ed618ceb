"""The project's IceClient/AsyncIceClient and the official SDK get the same answers from the emulator."""

from __future__ import annotations

import json
from typing import Any

import pytest
from alibabacloud_ice20201109 import models as ice
from Tea.exceptions import TeaException

from airflow_provider_ice.api.client import AsyncIceClient, IceClient
from airflow_provider_ice.api.errors import (
    IceApiError,
    IceNotFoundError,
    IceOutcomeUnknownError,
    IceTransportError,
)
from airflow_provider_ice.emulator import IceEmulator
from tests.emulator.conftest import sdk_client

AGENT = "agent-compare"


def _ours(emulator: IceEmulator, **kwargs: Any) -> IceClient:
    return IceClient(emulator.credentials, endpoint=emulator.url, **kwargs)


def _without_volatile(data: dict[str, Any]) -> dict[str, Any]:
    # Each read hands out a freshly signed CallLogUrl and a new RequestId.
    return {k: v for k, v in data.items() if k not in ("RequestId", "CallLogUrl")}


def _sdk_raw(sdk: Any, action: str, query: dict[str, Any]) -> dict[str, Any]:
    """The SDK's raw body for an action (its typed models drop and add fields)."""
    from alibabacloud_tea_openapi import models as api
    from alibabacloud_tea_util.models import RuntimeOptions

    params = api.Params(
        action=action,
        version="2020-11-09",
        protocol="HTTP",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    return sdk.call_api(params, api.OpenApiRequest(query=query), RuntimeOptions())["body"]


# The user joins late, so both clients see "Created" even on a loaded machine (0.2 s was not enough).
@pytest.mark.ice_emulator(user_join_delay=30)
def test_same_answers_from_both_clients(ice_emulator: IceEmulator) -> None:
    sdk = sdk_client(ice_emulator)
    with _ours(ice_emulator) as ours:
        user_data = {"AirflowCorrelationId": "af-compare", "text": "a b+c&d"}
        created = ours.generate_ai_agent_call(
            AGENT, user_data=user_data, session_id="s-42", agent_config={"Greeting": "Hi"}
        )
        query = {"InstanceId": created.instance_id}
        sdk_view = _sdk_raw(sdk, "DescribeAIAgentInstance", query)["Instance"]
        our_view = ours.call_api("DescribeAIAgentInstance", query)["Instance"]
        assert _without_volatile(our_view) == _without_volatile(sdk_view)
        assert json.loads(our_view["UserData"]) == user_data
        assert our_view["SessionId"] == "s-42"
        assert our_view["RuntimeConfig"]["ChannelId"] == created.channel_id
        typed = ours.describe_ai_agent_instance(created.instance_id)
        sdk_typed = sdk.describe_aiagent_instance(
            ice.DescribeAIAgentInstanceRequest(instance_id=created.instance_id)
        ).body
        assert typed.status == sdk_typed.instance.status == "Created"
        assert typed.user_data == sdk_typed.instance.user_data

        query = {"AIAgentId": AGENT, "PageSize": "10"}  # the SDK's raw query takes strings
        sdk_list = _sdk_raw(sdk, "ListAIAgentInstance", query)["Instances"]
        our_list = ours.call_api("ListAIAgentInstance", query)["Instances"]
        assert [_without_volatile(i) for i in our_list] == [_without_volatile(i) for i in sdk_list]
        assert len(our_list) == 1

        ours.stop_ai_agent_instance(created.instance_id)
        sdk.stop_aiagent_instance(ice.StopAIAgentInstanceRequest(instance_id=created.instance_id))
        assert ours.describe_ai_agent_instance(created.instance_id).status == "Finished"
        assert ice_emulator.state()["request_counts"]["StopAIAgentInstance"] == 2


def test_same_errors_from_both_clients(ice_emulator: IceEmulator) -> None:
    sdk = sdk_client(ice_emulator)
    with pytest.raises(TeaException) as sdk_error:
        sdk.describe_aiagent_instance(ice.DescribeAIAgentInstanceRequest(instance_id="missing"))
    with _ours(ice_emulator, max_retries=0) as ours, pytest.raises(IceNotFoundError) as our_error:
        ours.describe_ai_agent_instance("missing")
    assert our_error.value.code == sdk_error.value.code == "InvalidInstanceId.NotFound"
    assert our_error.value.http_status == sdk_error.value.data["statusCode"] == 404


def test_outbound_call_through_our_client(ice_emulator: IceEmulator) -> None:
    with _ours(ice_emulator) as ours:
        started = ours.start_ai_agent_outbound_call(
            AGENT, called_number="13800000000", caller_number="057100000000"
        )
        info = ours.describe_ai_agent_instance(started.instance_id).call_info
    assert info is not None
    assert info.callee_number == "13800000000"


def test_our_client_sees_the_lost_response_as_outcome_unknown(ice_emulator: IceEmulator) -> None:
    ice_emulator.set_faults(slow_create_rate=1.0, slow_create_delay=2.0)
    with _ours(ice_emulator, timeout=0.3, max_retries=2) as ours, pytest.raises(IceOutcomeUnknownError):
        ours.generate_ai_agent_call(AGENT)
    # Never retried blindly: exactly one create reached the service, and it did create.
    assert ice_emulator.state()["request_counts"] == {"GenerateAIAgentCall": 1}
    assert len(ice_emulator.state()["instances"]) == 1


def test_wrong_secret_from_our_client(ice_emulator: IceEmulator) -> None:
    from airflow_provider_ice.api.signing import Credentials

    client = IceClient(
        Credentials(ice_emulator.access_key_id, "wrong"), endpoint=ice_emulator.url, max_retries=0
    )
    with client, pytest.raises(IceApiError) as caught:
        client.list_ai_agent_instances_page(AGENT)
    assert caught.value.code == "SignatureDoesNotMatch"


async def test_async_client_matches_sync_client(ice_emulator: IceEmulator) -> None:
    ice_emulator.seed_history(AGENT, 250, 1_700_000_000, 1_700_086_400)
    with _ours(ice_emulator) as ours:
        sync_items = [
            i.to_wire() for i in ours.list_ai_agent_instances(AGENT, start_time="2023-11-01T00:00:00Z")
        ]
    async with AsyncIceClient(ice_emulator.credentials, endpoint=ice_emulator.url) as client:
        async_items = [
            i.to_wire()
            async for i in client.list_ai_agent_instances(AGENT, start_time="2023-11-01T00:00:00Z")
        ]
    assert len(sync_items) == 250
    assert [i["UserData"] for i in async_items] == [i["UserData"] for i in sync_items]


# --- the async client's default sender (aiohttp directly) against real emulator faults ----------


def _async_ours(emulator: IceEmulator, **kwargs: Any) -> AsyncIceClient:
    client = AsyncIceClient(emulator.credentials, endpoint=emulator.url, backoff_base=0.01, **kwargs)
    from airflow_provider_ice.api.senders import AiohttpSender

    assert isinstance(client._sender, AiohttpSender), "these tests are about the aiohttp sender"
    return client


async def test_async_dropped_create_is_outcome_unknown_and_never_repeated(ice_emulator: IceEmulator) -> None:
    ice_emulator.set_faults(drop_rate=1.0, drop_after_execute=True)
    async with _async_ours(ice_emulator, max_retries=3) as client:
        with pytest.raises(IceOutcomeUnknownError) as raised:
            await client.generate_ai_agent_call(AGENT)
    assert isinstance(raised.value.cause, IceTransportError)
    assert raised.value.cause.sent is True
    assert ice_emulator.state()["request_counts"] == {"GenerateAIAgentCall": 1}
    assert len(ice_emulator.state()["instances"]) == 1


async def test_async_slow_create_times_out_as_outcome_unknown(ice_emulator: IceEmulator) -> None:
    ice_emulator.set_faults(slow_create_rate=1.0, slow_create_delay=2.0)
    async with _async_ours(ice_emulator, timeout=0.3, max_retries=2) as client:
        with pytest.raises(IceOutcomeUnknownError):
            await client.generate_ai_agent_call(AGENT)
    assert ice_emulator.state()["request_counts"] == {"GenerateAIAgentCall": 1}


async def test_async_reads_are_retried_after_drops_then_the_pool_recovers(ice_emulator: IceEmulator) -> None:
    ice_emulator.seed_history(AGENT, 3, 1_700_000_000, 1_700_086_400)
    ice_emulator.set_faults(drop_rate=1.0)
    async with _async_ours(ice_emulator, max_retries=2) as client:
        with pytest.raises(IceTransportError) as raised:
            await client.list_ai_agent_instances_page(AGENT, start_time="2023-11-01T00:00:00Z")
        assert raised.value.sent is True
        assert ice_emulator.state()["request_counts"]["ListAIAgentInstance"] == 3  # 1 + 2 retries
        ice_emulator.set_faults(drop_rate=0.0)
        page = await client.list_ai_agent_instances_page(AGENT, start_time="2023-11-01T00:00:00Z")
    assert len(page.instances) == 3
