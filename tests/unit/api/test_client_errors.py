"""IceClient errors: typed error classes, unreadable answers, no secrets, validation before any request."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

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

from .fakes import SECRET, Script, error, ok
from .scripted_clients import GENERATED, make_client

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
