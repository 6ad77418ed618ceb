"""IceClient / AsyncIceClient behaviour over scripted httpx transports."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpx
import pytest

from airflow_provider_ice.api.client import AsyncIceClient, IceClient
from airflow_provider_ice.api.errors import (
    IceApiError,
    IceAuthError,
    IceInvalidParameterError,
    IceNotFoundError,
    IceOutcomeUnknownError,
    IceResponseError,
    IceServerError,
    IceThrottlingError,
    IceTransportError,
    IceValidationError,
)
from airflow_provider_ice.api.signing import (
    MAX_QUERY_LENGTH,
    Credentials,
    expected_signature,
    parse_authorization,
)

from .fakes import CREDENTIALS, ENDPOINT, SECRET, Script, assert_signed, error, instance, local_server, ok

GENERATED = {"RequestId": "r", "InstanceId": "inst-1", "ChannelId": "ch-1", "Token": "artc-token-xyz"}


def make_client(script: Script, **kwargs: Any) -> tuple[IceClient, list[float]]:
    client = IceClient(CREDENTIALS, endpoint=ENDPOINT, transport=script.sync, **kwargs)
    sleeps: list[float] = []
    client._sleep = sleeps.append
    return client, sleeps


def make_async_client(script: Script, **kwargs: Any) -> tuple[AsyncIceClient, list[float]]:
    client = AsyncIceClient(CREDENTIALS, endpoint=ENDPOINT, transport=httpx.MockTransport(script), **kwargs)
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    client._sleep = record
    return client, sleeps


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


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "Throttling.User", IceThrottlingError),
        (429, "Throttling", IceThrottlingError),
        (404, "InvalidAccessKeyId.NotFound", IceAuthError),
        (400, "SignatureDoesNotMatch", IceAuthError),
        (403, "Forbidden.RAM", IceAuthError),
        (400, "InvalidTimeStamp.Expired", IceAuthError),
        (400, "InvalidParameter", IceInvalidParameterError),
        (400, "MissingParameter.AIAgentId", IceInvalidParameterError),
        (404, "InstanceNotFound", IceNotFoundError),
        (400, "Instance.NotExist", IceNotFoundError),
        (500, "InternalError", IceServerError),
        (503, "ServiceUnavailable", IceServerError),
        (409, "Conflict.Something", IceApiError),
    ],
)
def test_error_classes(status: int, code: str, cls: type[IceApiError]) -> None:
    script = Script(error(status, code, "the reason"))
    client, _ = make_client(script, max_retries=0)
    with pytest.raises(cls) as raised:
        client.describe_ai_agent_instance("i-1")
    exc = raised.value
    assert type(exc) is cls
    assert (exc.code, exc.message, exc.request_id, exc.http_status) == (code, "the reason", "req-err", status)
    assert exc.recommend == "https://next.api"
    assert exc.action == "DescribeAIAgentInstance"


def test_xml_error_body() -> None:
    body = (
        b"<?xml version='1.0' encoding='UTF-8'?><Error><RequestId>x-1</RequestId>"
        b"<Code>Forbidden.RAM</Code><Message>no permission</Message></Error>"
    )
    script = Script(httpx.Response(403, content=body, headers={"content-type": "text/xml"}))
    client, _ = make_client(script)
    with pytest.raises(IceAuthError) as raised:
        client.describe_ai_agent_instance("i-1")
    assert (raised.value.code, raised.value.request_id) == ("Forbidden.RAM", "x-1")


def test_html_error_page_gives_status_and_excerpt() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    script = Script(httpx.Response(502, content=page, headers={"content-type": "text/html"}))
    client, _ = make_client(script, max_retries=0)
    with pytest.raises(IceServerError) as raised:
        client.describe_ai_agent_instance("i-1")
    assert "502" in str(raised.value)
    assert "Bad Gateway" in str(raised.value)
    assert "text/html" in str(raised.value)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"<html>proxy login</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, json=[1, 2]),
        httpx.Response(200, content=b""),
        httpx.Response(200, json={"Instances": "not-a-list"}),
        httpx.Response(200, json={"Instances": [{"Status": 5, "RuntimeConfig": "x"}]}),
    ],
    ids=["html", "json-list", "empty", "instances-string", "bad-item"],
)
def test_malformed_success_bodies_are_response_errors(response: httpx.Response) -> None:
    client, _ = make_client(Script(response))
    with pytest.raises(IceResponseError) as raised:
        client.list_ai_agent_instances_page("agent")
    assert raised.value.action == "ListAIAgentInstance"


def test_describe_with_wrong_instance_type_is_response_error() -> None:
    client, _ = make_client(Script(ok({"Instance": "oops"})))
    with pytest.raises(IceResponseError):
        client.describe_ai_agent_instance("i")


def test_unreadable_generate_success_is_outcome_unknown() -> None:
    """A 2xx without InstanceId: the call most likely exists; the caller must look it up."""
    script = Script(ok({"RequestId": "r", "Token": "leaky-token-value"}))
    client, _ = make_client(script)
    with pytest.raises(IceOutcomeUnknownError) as raised:
        client.generate_ai_agent_call("agent")
    assert isinstance(raised.value.cause, IceResponseError)
    assert "leaky-token-value" not in str(raised.value)
    assert len(script.requests) == 1


def test_error_messages_carry_no_secrets() -> None:
    echoed = '{"Code":"InvalidParameter","Message":"bad Token=abcdef0123456789 in https://x/?Signature=deadbeef0011"}'
    script = Script(
        httpx.Response(400, content=echoed.encode(), headers={"content-type": "application/json"})
    )
    client, _ = make_client(script)
    with pytest.raises(IceInvalidParameterError) as raised:
        client.describe_ai_agent_instance("i")
    text = str(raised.value)
    assert "abcdef0123456789" not in text
    assert "deadbeef0011" not in text
    assert SECRET not in text


def test_transport_error_message_names_action_not_secrets() -> None:
    client, _ = make_client(Script(httpx.ConnectError("refused")), max_retries=0)
    with pytest.raises(IceTransportError) as raised:
        client.describe_ai_agent_instance("i")
    assert "DescribeAIAgentInstance" in str(raised.value)
    assert "ConnectError" in str(raised.value)
    assert SECRET not in str(raised.value)


# --- validation happens before any request ----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"agent_id": ""}, "AIAgentId"),
        ({"agent_id": "a", "expire": True}, "Expire"),
        ({"agent_id": "a", "expire": "abc"}, "Expire"),
        ({"agent_id": "a", "expire": 604801}, "Expire"),
        ({"agent_id": "a", "user_id": "u" * 65}, "UserId"),
        ({"agent_id": "a", "user_data": {"x": object()}}, "UserData"),
        ({"agent_id": "a", "agent_config": "not json"}, "AgentConfig"),
        ({"agent_id": "a", "agent_config": [1]}, "AgentConfig"),
    ],
)
def test_generate_validation_before_request(kwargs: dict[str, Any], parameter: str) -> None:
    script = Script(ok(GENERATED))
    client, _ = make_client(script)
    agent_id = kwargs.pop("agent_id")
    with pytest.raises(IceValidationError) as raised:
        client.generate_ai_agent_call(agent_id, **kwargs)
    assert raised.value.parameter == parameter
    assert parameter in str(raised.value)
    assert script.requests == []


def test_listing_validates_when_called_not_when_iterated() -> None:
    script = Script(ok({"Instances": []}))
    client, _ = make_client(script)
    with pytest.raises(IceValidationError, match="PageSize"):
        client.list_ai_agent_instances("agent", page_size=0)
    with pytest.raises(IceValidationError, match="naive"):
        client.list_ai_agent_instances("agent", start_time="2025-01-01T00:00:00")
    with pytest.raises(IceValidationError, match="PageNumber"):
        client.list_ai_agent_instances_page("agent", page_number=101)
    assert script.requests == []


def test_outbound_validates_phone_numbers() -> None:
    script = Script(ok({"InstanceId": "i"}))
    client, _ = make_client(script)
    with pytest.raises(IceValidationError, match="CalledNumber"):
        client.start_ai_agent_outbound_call("a", called_number="call me", caller_number="0571")
    assert script.requests == []
    client.start_ai_agent_outbound_call("a", called_number="+86 138-0000-0000", caller_number="05712345678")
    assert script.params()["CalledNumber"] == "+8613800000000"


# --- wire details -------------------------------------------------------------------------------


def test_generate_wire_parameters_and_signature() -> None:
    script = Script(ok(GENERATED))
    client, _ = make_client(script)
    result = client.generate_ai_agent_call(
        "agent-1",
        user_id="u1",
        user_data={"AirflowCorrelationId": "af-1", "名": "值"},
        session_id="s-1",
        expire=0,
        agent_config={"Greeting": "hi *", "UserOnlineTimeout": 60},
        template_config={"VoiceChat": {"Greeting": "x"}},
        chat_sync_config={"IMAIAgentId": "im", "ReceiverId": "r"},
    )
    assert result.instance_id == "inst-1"
    assert result.token is not None
    assert "artc-token-xyz" not in repr(result)
    assert script.params() == {
        "AIAgentId": "agent-1",
        "UserId": "u1",
        "UserData": '{"AirflowCorrelationId":"af-1","名":"值"}',
        "SessionId": "s-1",
        "Expire": "0",
        "AgentConfig": '{"Greeting":"hi *","UserOnlineTimeout":60}',
        "TemplateConfig": '{"VoiceChat":{"Greeting":"x"}}',
        "ChatSyncConfig": '{"IMAIAgentId":"im","ReceiverId":"r"}',
    }
    request = script.requests[0]
    assert request.method == "POST"
    assert request.url.path == "/"
    assert request.headers["host"] == "ice.cn-shanghai.aliyuncs.com"
    assert request.headers["user-agent"].startswith("airflow-provider-ice/0.")
    assert request.content == b""
    assert_signed(request)


def test_long_parameters_move_to_a_signed_form_body() -> None:
    script = Script(ok(GENERATED))
    client, _ = make_client(script)
    prompt = "Answer politely. " * (MAX_QUERY_LENGTH // 10)
    client.generate_ai_agent_call("agent-1", agent_config={"LlmConfig": {"LlmSystemPrompt": prompt}})
    request = script.requests[0]
    assert request.url.query == b""
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert prompt.strip() in httpx.QueryParams(request.content.decode())["AgentConfig"]
    assert "content-type" in request.headers["authorization"]


def test_sts_token_is_sent_and_signed() -> None:
    script = Script(ok({"Instance": {}}))
    client = IceClient(
        Credentials("STS.id", "sts-secret", "sts-token-value"), endpoint=ENDPOINT, transport=script.sync
    )
    client.describe_ai_agent_instance("i")
    request = script.requests[0]
    assert request.headers["x-acs-security-token"] == "sts-token-value"
    assert request.headers["x-acs-accesskey-id"] == "STS.id"
    assert "x-acs-security-token" in request.headers["authorization"]
    assert_signed(request, "sts-secret")


def test_timeouts_reach_the_transport() -> None:
    script = Script(ok({"Instance": {}}))
    client, _ = make_client(script, timeout=7.5, connect_timeout=1.5)
    client.describe_ai_agent_instance("i")
    timeout = script.requests[0].extensions["timeout"]
    assert timeout["connect"] == 1.5
    assert timeout["read"] == 7.5
    default = IceClient(CREDENTIALS, endpoint=ENDPOINT)
    assert (default.timeout.connect, default.timeout.read) == (5.0, 10.0)


def test_secrets_are_reported_for_masking() -> None:
    body = {
        "Instance": {
            "CallLogUrl": "https://oss/x.json?Signature=abc",
            "RuntimeConfig": {"AuthToken": "auth-token-1"},
        }
    }
    seen: list[str] = []
    client = IceClient(
        Credentials("id", "the-secret", "the-sts-token"),
        endpoint=ENDPOINT,
        transport=Script(ok(body)).sync,
        on_secret=seen.append,
    )
    instance_ = client.describe_ai_agent_instance("i")
    assert seen == ["the-secret", "the-sts-token", "https://oss/x.json?Signature=abc", "auth-token-1"]
    assert "auth-token-1" not in repr(instance_)
    assert "Signature=abc" not in repr(instance_)


# --- endpoint and TLS ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("ice.cn-beijing.aliyuncs.com", "https://ice.cn-beijing.aliyuncs.com"),
        ("https://ice.cn-beijing.aliyuncs.com/", "https://ice.cn-beijing.aliyuncs.com"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("HTTPS://Example.com:8443", "https://example.com:8443"),
    ],
)
def test_endpoint_forms(given: str, url: str) -> None:
    assert IceClient(CREDENTIALS, endpoint=given).endpoint == url


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://ice.example.com",
        "ws://x",
        "https://ice.example.com/path",
        "",
        "https://user:pw@h",
        "http://h:99999",
    ],
)
def test_bad_endpoints_are_rejected(bad: str) -> None:
    with pytest.raises(IceValidationError) as raised:
        IceClient(CREDENTIALS, endpoint=bad)
    assert raised.value.parameter == "endpoint"


def test_verify_false_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        IceClient(CREDENTIALS, endpoint=ENDPOINT, verify=False)
    assert "verification is DISABLED" in caplog.text


def test_ca_bundle_path(tmp_path: Any) -> None:
    client = IceClient(CREDENTIALS, endpoint=ENDPOINT, verify=certifi.where())
    assert isinstance(client._verify, ssl.SSLContext)
    with pytest.raises(IceValidationError, match="does not exist"):
        IceClient(CREDENTIALS, endpoint=ENDPOINT, verify=str(tmp_path / "missing.pem"))


@pytest.mark.parametrize(("name", "value"), [("timeout", 0), ("connect_timeout", -1), ("max_retries", 99)])
def test_bad_client_settings(name: str, value: Any) -> None:
    with pytest.raises(IceValidationError, match=name):
        IceClient(CREDENTIALS, endpoint=ENDPOINT, **{name: value})


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
