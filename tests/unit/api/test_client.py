"""IceClient / AsyncIceClient retries, the async twin and real aiohttp sockets, over scripted transports."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from airflow_provider_ice.api.client import AsyncIceClient
from airflow_provider_ice.api.errors import (
    IceOutcomeUnknownError,
    IceServerError,
    IceThrottlingError,
    IceTransportError,
    IceValidationError,
)
from airflow_provider_ice.api.signing import (
    expected_signature,
    parse_authorization,
)

from .fakes import CREDENTIALS, ENDPOINT, SECRET, Script, assert_signed, error, instance, local_server, ok
from .scripted_clients import GENERATED, make_async_client, make_client

# --- retries -----------------------------------------------------------------------------------


def test_read_retries_throttling_and_5xx_with_fresh_signatures() -> None:
    script = Script(
        error(400, "Throttling.User"),
        error(503, "ServiceUnavailable"),
        httpx.ReadTimeout("slow"),
        ok({"RequestId": "r", "Instance": {"Status": "Executing"}}),
    )
    client, sleeps = make_client(script)
    assert client.describe_ai_agent_instance("i-1").status == "Executing"
    assert len(script.requests) == 4
    assert len(set(script.nonces)) == 4, "every attempt must carry a new nonce"
    assert len({r.headers["authorization"] for r in script.requests}) == 4
    for request in script.requests:
        assert_signed(request)
    assert len(sleeps) == 3


def test_retries_stop_after_max_retries() -> None:
    script = Script(error(429, "Throttling"))
    client, sleeps = make_client(script, max_retries=2)
    with pytest.raises(IceThrottlingError):
        client.stop_ai_agent_instance("i-1")
    assert len(script.requests) == 3
    assert len(sleeps) == 2


def test_max_retries_zero_sends_once() -> None:
    script = Script(error(500, "InternalError"))
    client, _ = make_client(script, max_retries=0)
    with pytest.raises(IceServerError):
        client.describe_ai_agent_instance("i-1")
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-acs-retry-after": "1500"}, 1.5),
        ({"Retry-After": "2"}, 2.0),
        ({"x-acs-retry-after": "900000"}, 60.0),
    ],
)
def test_retry_after_is_honoured(headers: dict[str, str], expected: float) -> None:
    script = Script(error(400, "Throttling.Api", **headers), ok({"Instance": {}}))
    client, sleeps = make_client(script)
    client.describe_ai_agent_instance("i-1")
    assert sleeps == [expected]


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    script = Script(error(503, "ServiceUnavailable"))
    client, sleeps = make_client(script, max_retries=6, backoff_base=1.0, backoff_cap=8.0)
    with pytest.raises(IceServerError):
        client.describe_ai_agent_instance("i-1")
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert len(sleeps) == len(ceilings)
    for wait, ceiling in zip(sleeps, ceilings, strict=True):
        assert ceiling / 2 <= wait <= ceiling


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset by peer"),
        httpx.WriteTimeout("write timed out"),
        error(500, "InternalError"),
        error(502, "BadGateway"),
    ],
    ids=["read-timeout", "dropped", "reset", "write-timeout", "500", "502"],
)
def test_generate_is_never_retried_blindly(failure: Any) -> None:
    script = Script(failure, ok(GENERATED))
    client, sleeps = make_client(script)
    with pytest.raises(IceOutcomeUnknownError) as raised:
        client.generate_ai_agent_call("agent-1")
    assert len(script.requests) == 1, "a second GenerateAIAgentCall could place a second call"
    assert sleeps == []
    assert raised.value.action == "GenerateAIAgentCall"
    assert "look the instance up" in str(raised.value)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect"),
        error(400, "Throttling.User"),
    ],
    ids=["refused", "connect-timeout", "throttled"],
)
def test_generate_retries_when_certainly_not_sent(failure: Any) -> None:
    script = Script(failure, ok(GENERATED))
    client, _ = make_client(script)
    assert client.generate_ai_agent_call("agent-1").instance_id == "inst-1"
    assert len(script.requests) == 2
    assert len(set(script.nonces)) == 2


def test_generate_connect_errors_exhausted_stay_transport_errors() -> None:
    script = Script(httpx.ConnectError("refused"))
    client, _ = make_client(script, max_retries=1)
    with pytest.raises(IceTransportError) as raised:
        client.generate_ai_agent_call("agent-1")
    assert raised.value.sent is False
    assert len(script.requests) == 2


def test_outbound_call_is_creating_too() -> None:
    script = Script(httpx.ReadTimeout("t"), ok({"InstanceId": "i"}))
    client, _ = make_client(script)
    with pytest.raises(IceOutcomeUnknownError):
        client.start_ai_agent_outbound_call(
            "agent", called_number="+8613800000000", caller_number="05712345678"
        )
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    ("action", "retried"),
    [
        ("ListAIAgentDialogues", True),
        ("GetAIAgentConcurrency", True),
        ("DescribeAIAgentInstance", True),
        ("StopAIAgentInstance", True),
        ("QuerySmarttagJob", True),
        ("StartAIAgentInstance", False),
        ("UpdateAIAgentInstance", False),
        ("SubmitSomething", False),
    ],
)
def test_call_api_retries_only_read_actions_after_timeout(action: str, retried: bool) -> None:
    script = Script(httpx.ReadTimeout("t"), ok({"RequestId": "r", "Value": 1}))
    client, _ = make_client(script)
    if retried:
        assert client.call_api(action, {"X": "y"}) == {"RequestId": "r", "Value": 1}
        assert len(script.requests) == 2
    else:
        with pytest.raises(IceOutcomeUnknownError):
            client.call_api(action, {"X": "y"})
        assert len(script.requests) == 1


def test_call_api_returns_unknown_fields_and_sends_params() -> None:
    script = Script(ok({"RequestId": "r", "Dialogues": [{"Text": "hi"}], "Undocumented": True}))
    client, _ = make_client(script)
    data = client.call_api("ListAIAgentDialogues", {"SessionId": "s", "StartTime": 1, "PageSize": 10})
    assert data["Undocumented"] is True
    assert script.params() == {"SessionId": "s", "StartTime": "1", "PageSize": "10"}
    assert script.actions() == ["ListAIAgentDialogues"]


@pytest.mark.parametrize(
    ("action", "params"), [("", {}), ("not an action", {}), ("listThings", {}), ("List", [1])]
)
def test_call_api_rejects_bad_input_before_sending(action: str, params: Any) -> None:
    script = Script(ok())
    client, _ = make_client(script)
    with pytest.raises(IceValidationError):
        client.call_api(action, params)
    assert script.requests == []


# --- async twin ---------------------------------------------------------------------------------


async def test_async_retries_with_fresh_nonces() -> None:
    script = Script(
        error(400, "Throttling.User"), httpx.ConnectError("refused"), ok({"Instance": {"Status": "Created"}})
    )
    client, sleeps = make_async_client(script)
    async with client:
        assert (await client.describe_ai_agent_instance("i")).status == "Created"
    assert len(set(script.nonces)) == 3
    assert len(sleeps) == 2


async def test_async_generate_not_retried_after_timeout() -> None:
    script = Script(httpx.ReadTimeout("t"), ok(GENERATED))
    client, _ = make_async_client(script)
    async with client:
        with pytest.raises(IceOutcomeUnknownError):
            await client.generate_ai_agent_call("agent")
    assert len(script.requests) == 1


async def test_async_call_api_and_listing() -> None:
    script = Script(ok({"Instances": [instance(1), instance(2)]}))
    client, _ = make_async_client(script)
    async with client:
        assert [i.user_data async for i in client.list_ai_agent_instances("agent")] == [
            '{"n": 1}',
            '{"n": 2}',
        ]
        assert (await client.call_api("GetAIAgentConcurrency", {"AIAgentId": "a"}))["Instances"]
        stop = await client.stop_ai_agent_instance("i")
        assert stop.request_id is None


async def test_async_default_sender_is_aiohttp_and_an_httpx_transport_replaces_it() -> None:
    from airflow_provider_ice.api.senders import AiohttpSender, HttpxAsyncSender

    client = AsyncIceClient(CREDENTIALS, endpoint=ENDPOINT)
    try:
        assert isinstance(client._sender, AiohttpSender)
    finally:
        await client.aclose()
    mocked, _ = make_async_client(Script(ok()))
    assert isinstance(mocked._sender, HttpxAsyncSender)
    await mocked.aclose()


# --- real sockets through aiohttp: a dropped connection is not "connection refused" --------------


async def _server_that_drops(counter: list[int]) -> asyncio.base_events.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counter.append(1)
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_aiohttp_dropped_connection_after_send_is_outcome_unknown() -> None:
    """A server disconnect after the request went out is not "connection refused": outcome unknown."""
    counter: list[int] = []
    server = await _server_that_drops(counter)
    port = server.sockets[0].getsockname()[1]
    try:
        async with AsyncIceClient(
            CREDENTIALS, endpoint=f"http://127.0.0.1:{port}", backoff_base=0.01
        ) as client:
            with pytest.raises(IceOutcomeUnknownError) as raised:
                await client.generate_ai_agent_call("agent")
            assert isinstance(raised.value.cause, IceTransportError)
            assert raised.value.cause.sent is True
    finally:
        server.close()
        await server.wait_closed()
    assert len(counter) == 1


async def test_aiohttp_connection_refused_counts_as_not_sent() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with AsyncIceClient(
        CREDENTIALS, endpoint=f"http://127.0.0.1:{port}", max_retries=1, backoff_base=0.01
    ) as client:
        with pytest.raises(IceTransportError) as raised:
            await client.generate_ai_agent_call("agent")
    assert raised.value.sent is False


async def test_aiohttp_requests_sign_every_common_header() -> None:
    """aiohttp adds its own content-type to a POST; ours must be the one sent, and signed."""
    answer = {"Instance": {"Status": "Finished"}, "InstanceId": "i-1"}
    with local_server(lambda _: (200, answer)) as (host, captured):
        async with AsyncIceClient(CREDENTIALS, endpoint=f"http://{host}") as client:
            assert (await client.describe_ai_agent_instance("i")).status == "Finished"
            await client.generate_ai_agent_call(
                "a", agent_config={"LlmConfig": {"LlmSystemPrompt": "x" * 9000}}
            )
    for sent in captured:
        headers = sent["headers"]
        auth = parse_authorization(headers["authorization"])
        assert "content-type" in auth.signed_headers
        assert headers["content-type"] == "application/x-www-form-urlencoded"
        assert hashlib.sha256(sent["body"]).hexdigest() == headers["x-acs-content-sha256"]
        assert auth.signature == expected_signature(
            SECRET,
            method="POST",
            path="/",
            raw_query=urlsplit(sent["target"]).query,
            headers=headers,
            signed_headers=auth.signed_headers,
        )
    assert captured[1]["body"].startswith(b"AIAgentId=a&AgentConfig=")
